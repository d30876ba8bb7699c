import { z } from 'zod';
import { LIST_OPERATORS, OPERATORS, PRESENCE_OPERATORS, VALUE_OPERATORS, type Condition } from '../criteria.js';
import { rangeProblems } from '../numbers.js';
import { cronProblems, DEFAULT_SCHEDULE_MODES, DURATION_HINT, parseDuration, SCHEDULE_MODES, timeZoneProblem } from '../schedule.js';
import { isServiceKind, SERVICE_KINDS, type ServiceSpec } from '../services.js';
import { CANONICAL_ATTRIBUTES, isAttributePath, USER_TYPES } from '../user.js';

/** Names end up in workflow ids and CLI arguments: keep them to a URL- and shell-safe alphabet. */
const name = z
  .string({ error: 'expected a name (a string)' })
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, {
    error: 'a name is 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit',
  });

/** Secrets never sit in configuration: it names the environment variable that holds them. */
const envName = z
  .string()
  .regex(/^[A-Z_][A-Z0-9_]*$/, { error: 'expected the name of an environment variable, e.g. LDAP_BIND_PASSWORD' });

const REGEX_FLAGS = /^[ims]*$/;

type Issue = { path: (string | number)[]; message: string };

/** Validates a raw condition tree, collecting every problem with its path below the condition. */
function conditionIssues(raw: unknown, path: (string | number)[] = []): Issue[] {
  const issue = (message: string, at: (string | number)[] = path): Issue[] => [{ path: at, message }];
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return issue('expected a condition: {attribute, op, value}, {all: [...]}, {any: [...]} or {not: {...}}');
  }
  const record = raw as Record<string, unknown>;
  const keys = Object.keys(record);
  for (const combinator of ['all', 'any'] as const) {
    if (combinator in record) {
      const extra = keys.filter((k) => k !== combinator);
      if (extra.length > 0) return issue(`unknown key "${extra[0]}" next to "${combinator}"`, [...path, extra[0]!]);
      const list = record[combinator];
      if (!Array.isArray(list)) return issue(`"${combinator}" takes a list of conditions`, [...path, combinator]);
      return list.flatMap((c, i) => conditionIssues(c, [...path, combinator, i]));
    }
  }
  if ('not' in record) {
    const extra = keys.filter((k) => k !== 'not');
    if (extra.length > 0) return issue(`unknown key "${extra[0]}" next to "not"`, [...path, extra[0]!]);
    return conditionIssues(record.not, [...path, 'not']);
  }
  const problems: Issue[] = [];
  const { attribute, op } = record;
  if (typeof attribute !== 'string') {
    problems.push(...issue('a condition needs "attribute" (or all/any/not)', [...path, 'attribute']));
  } else if (!isAttributePath(attribute)) {
    problems.push(
      ...issue(
        `unknown attribute "${attribute}" (one of ${CANONICAL_ATTRIBUTES.join(', ')}, or attributes.<source attribute>)`,
        [...path, 'attribute'],
      ),
    );
  }
  if (typeof op !== 'string' || !(OPERATORS as readonly string[]).includes(op)) {
    problems.push(...issue(`unknown operator ${JSON.stringify(op)} (one of ${OPERATORS.join(', ')})`, [...path, 'op']));
    return problems;
  }
  const allowed = new Set(['attribute', 'op']);
  if ((VALUE_OPERATORS as readonly string[]).includes(op)) {
    allowed.add('value');
    if (typeof record.value !== 'string') problems.push(...issue(`"${op}" needs a string "value"`, [...path, 'value']));
    if (op === 'regex') {
      allowed.add('flags');
      if (typeof record.value === 'string') {
        try {
          new RegExp(record.value, `u${typeof record.flags === 'string' && REGEX_FLAGS.test(record.flags) ? record.flags : ''}`);
        } catch (error) {
          problems.push(...issue(`regular expression does not compile: ${(error as Error).message}`, [...path, 'value']));
        }
      }
      if (record.flags !== undefined && (typeof record.flags !== 'string' || !REGEX_FLAGS.test(record.flags))) {
        problems.push(...issue('regex flags may be any of "i", "m", "s"', [...path, 'flags']));
      }
    }
  } else if ((LIST_OPERATORS as readonly string[]).includes(op)) {
    allowed.add('values');
    const values = record.values;
    if (!Array.isArray(values) || values.length === 0 || values.some((v) => typeof v !== 'string')) {
      problems.push(...issue(`"${op}" needs "values": a non-empty list of strings`, [...path, 'values']));
    }
  } else if (!(PRESENCE_OPERATORS as readonly string[]).includes(op)) {
    problems.push(...issue(`unknown operator "${op}"`, [...path, 'op']));
  }
  for (const key of keys) {
    if (!allowed.has(key)) problems.push(...issue(`unknown key "${key}" for operator "${op}"`, [...path, key]));
  }
  return problems;
}

export const conditionSchema = z.unknown().superRefine((raw, ctx) => {
  for (const { path, message } of conditionIssues(raw)) ctx.addIssue({ code: 'custom', message, path });
}) as unknown as z.ZodType<Condition>;

const numberRangeSchema = z
  .strictObject({ from: z.string(), to: z.string() })
  .superRefine((range, ctx) => {
    for (const message of rangeProblems(range)) ctx.addIssue({ code: 'custom', message });
  });

const criteriaSchema = z.strictObject({
  name,
  description: z.string().optional(),
  usage: z.enum(['move', 'ftp'], { error: 'usage is "move" (places users at a site) or "ftp" (chooses a profile)' }),
  when: conditionSchema,
});

const serviceSchema = z
  .looseObject({ kind: z.string() })
  .superRefine((service, ctx) => {
    if (!isServiceKind(service.kind)) {
      ctx.addIssue({
        code: 'custom',
        path: ['kind'],
        message: `unknown service kind "${service.kind}" (one of ${Object.keys(SERVICE_KINDS).join(', ')})`,
      });
      return;
    }
    const { kind: _kind, ...settings } = service;
    const parsed = SERVICE_KINDS[service.kind].safeParse(settings);
    if (!parsed.success) for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, code: 'custom' } as never);
  })
  .transform((service): ServiceSpec => {
    const { kind, ...settings } = service;
    const kindName = kind as ServiceSpec['kind'];
    return { kind: kindName, settings: SERVICE_KINDS[kindName].parse(settings) as Record<string, unknown> };
  });

const profileSchema = z.strictObject({
  name,
  description: z.string().optional(),
  role: z.string().min(1).optional(),
  line: z.strictObject({ numberFrom: z.enum(['site', 'customer']) }).optional(),
  services: z.array(serviceSchema).default([]),
});

const ftpCriteriaSchema = z.strictObject({
  name,
  rules: z
    .array(z.strictObject({ criteria: name, profile: name, role: z.string().min(1).optional() }))
    .min(1, { error: 'FTP criteria need at least one rule' }),
});

const moveCriteriaSchema = z.partialRecord(z.enum(USER_TYPES), name);

/** A string that `problem` accepts (null), else refused with what `problem` says. */
const checkedString = (problem: (value: string) => string | null) =>
  z.string().superRefine((value, ctx) => {
    const found = problem(value);
    if (found) ctx.addIssue({ code: 'custom', message: found });
  });

const siteSchema = z.strictObject({
  name,
  displayName: z.string().optional(),
  moveCriteria: moveCriteriaSchema.default({}),
  defaultRole: z.string().min(1).optional(),
  /** The site's language tag: templates name it as siteLocale (a SCIM target's locale, say). */
  locale: checkedString(localeProblem).optional(),
  /** The site's IANA time zone: templates name it as siteTimeZone. */
  timeZone: checkedString(timeZoneProblem).optional(),
  numberRanges: z.array(numberRangeSchema).default([]),
});

/** A BCP 47 language tag (en-US, de-CH, fr); null when fine, else why not. */
export function localeProblem(tag: string): string | null {
  try {
    Intl.getCanonicalLocales(tag);
    return null;
  } catch {
    const hint = /^[a-z]{2,3}_[A-Za-z]{2}$/.test(tag) ? ` (write it with a hyphen: "${tag.replace('_', '-')}")` : '';
    return `"${tag}" is not a language tag such as en-US, de-CH or fr${hint}`;
  }
}

const attributeMapSchema = z.record(z.string().min(1), z.string().min(1)).superRefine((map, ctx) => {
  for (const [source, target] of Object.entries(map)) {
    if (!isAttributePath(target)) {
      ctx.addIssue({
        code: 'custom',
        path: [source],
        message: `maps to unknown attribute "${target}" (one of ${CANONICAL_ATTRIBUTES.join(', ')}, or attributes.<name>)`,
      });
    }
  }
});

const duration = z.string({ error: `expected a duration: ${DURATION_HINT}` }).refine((text) => parseDuration(text) !== null, {
  error: `expected a duration: ${DURATION_HINT}`,
});

/** When a source syncs on its own (a Temporal Schedule per source, reconciled by `config apply`). */
const scheduleSchema = z
  .strictObject({
    every: duration.optional(),
    cron: z.string().min(1).optional(),
    modes: z
      .array(z.enum(SCHEDULE_MODES, { error: `a mode is one of ${SCHEDULE_MODES.join(', ')}` }))
      .min(1, { error: 'a schedule needs at least one mode' })
      .refine((modes) => new Set(modes).size === modes.length, { error: 'each mode once' })
      .default([...DEFAULT_SCHEDULE_MODES]),
    timeZone: z.string().default('UTC'),
    jitter: duration.optional(),
    paused: z.boolean().default(false),
  })
  // Runs even when a key failed to parse (a typo next to a bad cron hides nothing): values are checked by type first.
  .superRefine(
    (schedule, ctx) => {
      const problem = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: path ? [path] : [], message });
      const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
      if ((schedule.every === undefined) === (schedule.cron === undefined)) {
        problem('', 'a schedule has exactly one of "every" (an interval, e.g. 15m) and "cron" (e.g. "*/15 * * * *")');
      }
      const every = text(schedule.every) === undefined ? null : parseDuration(schedule.every!);
      // Under a minute, runs would queue behind each other and every one would re-read the source.
      if (every !== null && every < 60_000) problem('every', `a schedule runs at most once a minute; "${schedule.every}" is shorter`);
      const jitter = text(schedule.jitter) === undefined ? null : parseDuration(schedule.jitter!);
      if (every !== null && jitter !== null && jitter >= every) problem('jitter', `jitter must be shorter than the interval (${schedule.every})`);
      const cron = text(schedule.cron);
      if (cron !== undefined) for (const message of cronProblems(cron)) problem('cron', `cron "${cron}": ${message}`);
      const zone = text(schedule.timeZone) === undefined ? null : timeZoneProblem(schedule.timeZone);
      if (zone) problem('timeZone', zone);
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null && !Array.isArray(payload.value) },
  );

/** An https:// URL: tokens and personal data never travel in the clear (and MSAL refuses anything else). */
const httpsUrl = z.url({ protocol: /^https$/, error: 'expected an https:// URL' });

const sourceCommon = {
  name,
  userType: z.enum(USER_TYPES),
  attributeMap: attributeMapSchema.default({}),
  /** Import disabled and locked accounts too (Entra accountEnabled false, AD ACCOUNTDISABLE, ppolicy lock, disabledWhen). */
  includeDisabled: z.boolean().default(false),
  /** Which records are inactive, over the mapped user (a CSV/HR export's status column, say); adds to what the adapter detects. */
  disabledWhen: conditionSchema.optional(),
  /** Sync on a Temporal Schedule: `every` or `cron`, the modes each run does (one read of the source). */
  schedule: scheduleSchema.optional(),
};

/** What every source has whatever its type: checked on its own when the type is unknown, so that it hides nothing. */
export const sourceCommonSchema = z.object(sourceCommon);

const sourceSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({
      ...sourceCommon,
      type: z.literal('csv'),
      path: z.string().min(1),
      delimiter: z
        .string()
        .refine((d) => d.length === 1 && !['"', '\r', '\n'].includes(d), {
          error: (issue) => `a delimiter is one character other than a quote or a line break (",", ";", "\\t" or "|"), not ${JSON.stringify(issue.input)}`,
        })
        .default(','),
      /** The column that identifies a user across syncs (the employee number, say). */
      externalId: z.string().min(1),
    }),
    z.strictObject({
      ...sourceCommon,
      type: z.literal('ldap'),
      url: z.string().regex(/^ldaps?:\/\//, { error: 'expected an ldap:// or ldaps:// URL' }),
      bindDn: z.string().min(1),
      passwordEnv: envName,
      baseDn: z.string().min(1),
      scope: z.enum(['base', 'one', 'sub']).default('sub'),
      /** Default by preset: `(objectClass=inetOrgPerson)`, or AD's `(&(objectCategory=person)(objectClass=user))`. */
      filter: z.string().min(1).optional(),
      preset: z.enum(['openldap', 'activeDirectory']).default('openldap'),
      pageSize: z.number().int().min(1).max(10_000).default(500),
      startTls: z.boolean().default(false),
      caFile: z.string().optional(),
      timeoutMs: z.number().int().min(100).default(10_000),
    }),
    z.strictObject({
      ...sourceCommon,
      type: z.literal('entra'),
      tenantId: z.string().min(1),
      clientId: z.string().min(1),
      /** The client secret's variable; or clientCertificateFile (exactly one of the two). */
      clientSecretEnv: envName.optional(),
      /** A PEM file with the private key and the certificate registered with the app, relative to the configuration file. */
      clientCertificateFile: z.string().min(1).optional(),
      /** The variable holding the passphrase of an encrypted private key in clientCertificateFile. */
      clientCertificatePasswordEnv: envName.optional(),
      /** Send the certificate chain with each assertion (subject name and issuer authentication). */
      sendCertificateChain: z.boolean().optional(),
      authorityUrl: httpsUrl.default('https://login.microsoftonline.com'),
      graphUrl: httpsUrl.default('https://graph.microsoft.com'),
      /** CA certificates (PEM) to trust instead of the system's for the authority and Graph, relative to the configuration file. */
      caFile: z.string().min(1).optional(),
    }),
  ],
  { error: 'source type is one of csv, ldap, entra' },
);

const smtpSchema = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(587),
  security: z.enum(['none', 'starttls', 'tls']).default('starttls'),
  username: z.string().optional(),
  passwordEnv: envName.optional(),
  /** PEM file of the CA that signed the server's certificate, when it is not one the system trusts (starttls, tls). */
  caFile: z.string().min(1).optional(),
});

/**
 * A sender, as a From header has it: an address, or a name and the address in angle brackets
 * ("IT <it@example.com>"). Anything else would be refused by the mail server for every message.
 */
const sender = z.string().refine(
  (value) => {
    const found = /^\s*(?:[^<>]*<([^<>\s]+)>|([^<>\s]+))\s*$/.exec(value);
    const address = found?.[1] ?? found?.[2];
    return address !== undefined && z.email().safeParse(address).success;
  },
  { error: 'expected a sender address: it@example.com, or a name and the address in angle brackets: "IT <it@example.com>"' },
);

/** An email the pipeline sends: off by default; the subject a template; the HTML a template file, else a built-in one. */
const emailSchema = (subject: string) =>
  z
    .strictObject({
      enabled: z.boolean().default(false),
      from: sender.optional(),
      subject: z.string().default(subject),
      /** An HTML template file, relative to the configuration file; a built-in one otherwise. */
      template: z.string().optional(),
    })
    .default({ enabled: false, subject });

const THRESHOLD_FORMS = 'deleteThreshold is a count (50) or a percentage of the source\'s users ("10%")';
const deleteThresholdSchema = z.union([z.number(), z.string()], { error: THRESHOLD_FORMS }).superRefine((threshold, ctx) => {
  const wellFormed = typeof threshold === 'number' ? Number.isInteger(threshold) && threshold >= 0 : /^\d{1,3}(\.\d+)?%$/.test(threshold);
  if (!wellFormed) ctx.addIssue({ code: 'custom', message: `${THRESHOLD_FORMS}, not ${JSON.stringify(threshold)}` });
  // A share above the whole source could never be reached: the safeguard would silently be off.
  else if (typeof threshold === 'string' && Number.parseFloat(threshold) > 100) {
    ctx.addIssue({ code: 'custom', message: 'deleteThreshold is a share of the source\'s users: at most "100%"' });
  }
});

const settingsSchema = z.strictObject({
  flowThrough: z
    .strictObject({
      enabled: z.boolean().default(false),
      addSync: z.boolean().default(false),
      updateSync: z.boolean().default(false),
      criteria: name.optional(),
    })
    .default({ enabled: false, addSync: false, updateSync: false }),
  numberAssignmentOnMove: z.enum(['assign-new', 'keep-existing']).default('assign-new'),
  updateSyncProfile: name.optional(),
  preventDuplicateNumbers: z.boolean().default(true),
  numberCooling: z
    .strictObject({ enabled: z.boolean().default(false), days: z.number().int().min(0).max(3650).default(30) })
    .default({ enabled: false, days: 30 }),
  welcomeEmail: emailSchema('Welcome, {{firstName}}'),
  /** Tells a user who moved site their new site and number (once per move; welcomeEmail.from sends it unless it has its own). */
  movedEmail: emailSchema('You have moved to {{site}}'),
  smtp: smtpSchema.optional(),
  deleteThreshold: deleteThresholdSchema.optional(),
  /** Who hears when something needs a person: a target push that failed for good (one email per failure episode). */
  notifications: z
    .strictObject({
      to: z.array(z.email({ error: 'expected an email address' })).min(1, { error: 'notifications need at least one address in "to"' }),
      from: sender,
    })
    .optional(),
});

/** How a target takes part in a user's pipeline (SPEC §4, COmanage Registry's provisioning modes). */
export const TARGET_MODES = ['automatic', 'enrollment', 'manual', 'queue', 'queue-on-error', 'disabled'] as const;
export type TargetMode = (typeof TARGET_MODES)[number];

/** A field's name: what the target calls it (an LDAP attribute, a SCIM field, a JSON key). */
const fieldName = z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,62}$/, { error: 'a field name is letters, digits, ".", "_" or "-", starting with a letter' });

/** What every target kind shares: its place in the pipeline, who it applies to, retries and the data filter. */
const targetCommon = {
  name,
  description: z.string().optional(),
  mode: z.enum(TARGET_MODES, { error: `mode is one of ${TARGET_MODES.join(', ')}` }).default('automatic'),
  /** The provisioning group: only users matching it are provisioned; a user who stops matching is deprovisioned here. */
  group: conditionSchema.optional(),
  /** Between tries of a failed push (a queued job's, or an automatic push's); "0s": never retry. */
  retryInterval: duration.default('15m'),
  /** Retries after the first try before the push fails for good; 0: retry forever. */
  maxRetries: z.number().int().min(0).max(1000).default(3),
  /** Data filter: field → template over the user (`{{number}}`, `{{site}}`, `{{firstName}} {{lastName}}`); replaces the kind's defaults. */
  fields: z.record(fieldName, z.string()).optional(),
  /** Data filter: only these fields (of the kind's defaults or `fields`). */
  include: z.array(fieldName).min(1).optional(),
  /** Data filter: never these fields. */
  exclude: z.array(fieldName).optional(),
  /** How the user's number is written: E.164 as in the inventory (`+13125550100`; an extension as it is), its digits only, or its last `extensionDigits` digits. */
  numberFormat: z.enum(['e164', 'digits', 'extension']).default('e164'),
  extensionDigits: z.number().int().min(1).max(15).default(4),
  timeoutMs: z.number().int().min(100).max(600_000).default(10_000),
};

const targetSchema = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({
      ...targetCommon,
      kind: z.literal('ldap'),
      url: z.string().regex(/^ldaps?:\/\//, { error: 'expected an ldap:// or ldaps:// URL' }),
      bindDn: z.string().min(1),
      passwordEnv: envName,
      startTls: z.boolean().default(false),
      caFile: z.string().optional(),
      /** `user`: write to each user's own entry, found by its stable id; `managed`: entries of flowthru's own under baseDn. */
      entry: z.enum(['user', 'managed']).default('user'),
      /** Where users' entries are searched (user), or where flowthru creates its entries (managed). */
      baseDn: z.string().min(1),
      /** entry user: the attribute holding the user's stable id, matched against their external id (default entryUUID; AD: objectGUID). */
      idAttribute: z.string().min(1).optional(),
      /** entry managed: the naming attribute of created entries, its value the field of the same name (default uid). */
      rdnAttribute: z.string().min(1).optional(),
      /** entry managed: object classes of created entries (default [inetOrgPerson]). */
      objectClasses: z.array(z.string().min(1)).min(1).optional(),
    }),
    z.strictObject({
      ...targetCommon,
      kind: z.literal('scim'),
      /** The SCIM service's base URL, e.g. https://scim.example.com/scim/v2 (POST {url}/Users). */
      url: z.url(),
      tokenEnv: envName.optional(),
      /** What a deprovision does: DELETE the resource, or PATCH it to active: false. */
      deprovision: z.enum(['delete', 'deactivate']).default('delete'),
    }),
    z.strictObject({
      ...targetCommon,
      kind: z.literal('webhook'),
      url: z.url(),
      /** The Standard Webhooks signing secret (whsec_…), from the environment. */
      secretEnv: envName,
    }),
  ],
  { error: 'target kind is one of ldap, scim, webhook' },
);

/** The parts of a customer, each validated on its own so one bad item does not hide the rest. */
export const customerParts = {
  settings: settingsSchema,
  numberRanges: numberRangeSchema,
  criteria: criteriaSchema,
  profiles: profileSchema,
  ftpCriteria: ftpCriteriaSchema,
  sources: sourceSchema,
  sites: siteSchema,
  targets: targetSchema,
} as const;

const list = z.array(z.unknown(), { error: 'expected a list' }).default([]);

/**
 * A customer's keys, its lists left unparsed: validate.ts parses each key, then each item, on its
 * own, so that a bad name or an unknown key does not hide the rest of the customer.
 */
export const customerShell = {
  name,
  displayName: z.string().optional(),
  settings: z.unknown().optional(),
  numberRanges: list,
  criteria: list,
  profiles: list,
  ftpCriteria: list,
  sources: list,
  sites: list,
  targets: list,
};

/** The document's top-level keys, parsed one by one like a customer's. */
export const configShell = {
  version: z.literal(1, { error: 'version must be 1' }),
  provider: z.strictObject({ name: z.string().min(1) }).optional(),
  customers: z.array(z.unknown(), { error: 'expected a list of customers' }),
};

const customerSchema = z.strictObject({
  name,
  displayName: z.string().optional(),
  settings: settingsSchema,
  numberRanges: z.array(numberRangeSchema),
  criteria: z.array(criteriaSchema),
  profiles: z.array(profileSchema),
  ftpCriteria: z.array(ftpCriteriaSchema),
  sources: z.array(sourceSchema),
  sites: z.array(siteSchema),
  targets: z.array(targetSchema).default([]),
});

export const configSchema = z.strictObject({
  version: z.literal(1),
  provider: z.strictObject({ name: z.string().min(1) }).optional(),
  customers: z.array(customerSchema),
});

export type Config = z.infer<typeof configSchema>;
export type CustomerConfig = Config['customers'][number];
export type SiteConfig = CustomerConfig['sites'][number];
export type SourceConfig = CustomerConfig['sources'][number];
export type CriteriaConfig = CustomerConfig['criteria'][number];
export type ProfileConfig = CustomerConfig['profiles'][number];
export type FtpCriteriaConfig = CustomerConfig['ftpCriteria'][number];
export type SettingsConfig = CustomerConfig['settings'];
export type SmtpConfig = NonNullable<SettingsConfig['smtp']>;
export type TargetConfig = CustomerConfig['targets'][number];
export type LdapTargetConfig = Extract<TargetConfig, { kind: 'ldap' }>;
export type ScimTargetConfig = Extract<TargetConfig, { kind: 'scim' }>;
export type WebhookTargetConfig = Extract<TargetConfig, { kind: 'webhook' }>;
export type ScheduleConfig = NonNullable<SourceConfig['schedule']>;

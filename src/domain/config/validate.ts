import { checkSync } from 'recheck';
import type { z } from 'zod';
import { isLeaf, type Condition } from '../criteria.js';
import { rangesOverlap, rangeProblems, type NumberRange } from '../numbers.js';
import { cronRestrictsBothDays, parseDuration } from '../schedule.js';
import { SCIM_FIELDS, defaultFields, fieldNames, templateProblem } from '../targets.js';
import { configShell, customerParts, customerShell, sourceCommonSchema, type Config, type CustomerConfig, type SiteConfig, type TargetConfig } from './schema.js';

export type ConfigPath = readonly (string | number)[];

/** One thing wrong with a configuration document, located by its path in the document. */
/** Canonical attributes that say who a person is or how to reach them: never an external id. */
const PERSONAL_ATTRIBUTES: ReadonlySet<string> = new Set(['username', 'email', 'firstName', 'lastName', 'displayName', 'phone', 'mobile']);

export interface ConfigProblem {
  readonly path: ConfigPath;
  readonly message: string;
  /** A warning is reported but does not stop the configuration from being applied; absent: an error. */
  readonly severity?: 'error' | 'warning';
  /** The file that line and column refer to, when it is not the configuration file (a template). */
  readonly file?: string;
  /** 1-based position in the YAML text (or in `file`), when the problem can be traced to one. */
  readonly line?: number;
  readonly column?: number;
}

export const isWarning = (problem: ConfigProblem): boolean => problem.severity === 'warning';

/**
 * `problems` are the errors; warnings never block. A rejected document still comes with the parts
 * that did parse (`partial`), so that checks done outside the domain (files, environment) can run
 * over them too and every problem is reported at once.
 */
export type ValidationResult =
  | { ok: true; config: Config; warnings: ConfigProblem[] }
  | { ok: false; problems: ConfigProblem[]; warnings: ConfigProblem[]; partial?: Config };

/** `customers[0].sites[1].moveCriteria.microsoft` */
export function formatPath(path: ConfigPath): string {
  return path.reduce<string>((out, part) => {
    if (typeof part === 'number') return `${out}[${part}]`;
    return out === '' ? part : `${out}.${part}`;
  }, '');
}

/** `acme.yaml:12:7: customers[0].sites[1]: warning: message` (no "warning: " for an error). */
export function formatProblem(problem: ConfigProblem, file?: string): string {
  const where = [problem.file ?? file, problem.line, problem.column].filter((p) => p !== undefined).join(':');
  const path = formatPath(problem.path);
  return `${where ? `${where}: ` : ''}${path ? `${path}: ` : ''}${isWarning(problem) ? 'warning: ' : ''}${problem.message}`;
}

const SECRET_KEY = /(password|passwd|secret|token|apikey|api_key|privatekey|private_key|credential)/i;

/** A key that holds a secret's value rather than the name of the variable that holds it. */
function isLiteralSecretKey(key: string): boolean {
  return SECRET_KEY.test(key) && !/Env$/.test(key);
}

function secretProblems(node: unknown, path: (string | number)[] = []): ConfigProblem[] {
  if (Array.isArray(node)) return node.flatMap((item, i) => secretProblems(item, [...path, i]));
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([key, value]) =>
    isLiteralSecretKey(key)
      ? [
          {
            path: [...path, key],
            message: `literal secret: configuration names the environment variable that holds it instead (e.g. ${key}Env: ${key
              .replace(/([a-z])([A-Z])/g, '$1_$2')
              .toUpperCase()})`,
          },
        ]
      : secretProblems(value, [...path, key]),
  );
}

function zodProblems(error: z.ZodError, at: ConfigPath = []): ConfigProblem[] {
  return error.issues.flatMap((issue): ConfigProblem[] => {
    const path = [...at, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: [...path, key], message: `unknown key "${key}"` }));
    }
    if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) {
      return [{ path, message: `missing required setting (${issue.message.replace(/^Invalid input: /, '').replace(/, received undefined$/, '')})` }];
    }
    // zod's own enum message ("Invalid option: expected one of "a"|"b"") as the setting's choices.
    if (issue.code === 'invalid_value' && /^Invalid option/.test(issue.message)) {
      const setting = path.findLast((p) => typeof p === 'string') ?? 'the value';
      return [{ path, message: `${setting} is one of ${issue.values.map(String).join(', ')}` }];
    }
    return [{ path, message: issue.message.replace(/^Invalid input: /, '') }];
  });
}

function duplicateNames(items: readonly { name: string }[], path: (string | number)[], what: string): ConfigProblem[] {
  const seen = new Map<string, number>();
  const problems: ConfigProblem[] = [];
  items.forEach((item, index) => {
    const i = pos(item, index);
    const first = seen.get(item.name.toLowerCase());
    if (first === undefined) seen.set(item.name.toLowerCase(), i);
    else problems.push({ path: [...path, i, 'name'], message: `duplicate ${what} name "${item.name}" (also at index ${first})` });
  });
  return problems;
}

/** Patterns whose worst case is worse than quadratic are refused: criteria run on every synced user. */
export function regexProblem(pattern: string, flags = ''): string | null {
  try {
    new RegExp(pattern, `u${flags}`);
  } catch (error) {
    return `regular expression does not compile: ${(error as Error).message}`;
  }
  const diagnostics = checkSync(pattern, `u${flags}`, { timeout: 5_000 });
  if (diagnostics.status === 'vulnerable') {
    const complexity = diagnostics.complexity;
    if (complexity.type === 'exponential' || (complexity.type === 'polynomial' && complexity.degree >= 3)) {
      const witness = diagnostics.attack.pattern;
      return `regular expression is prone to catastrophic backtracking (${complexity.summary}; e.g. on ${witness}); rewrite it without nested or overlapping repetition`;
    }
  } else if (diagnostics.status === 'unknown') {
    return `regular expression could not be proven safe from catastrophic backtracking (${diagnostics.error.kind}); simplify it`;
  }
  return null;
}

function conditionProblems(condition: Condition, path: (string | number)[]): ConfigProblem[] {
  if ('all' in condition) return condition.all.flatMap((c, i) => conditionProblems(c, [...path, 'all', i]));
  if ('any' in condition) return condition.any.flatMap((c, i) => conditionProblems(c, [...path, 'any', i]));
  if ('not' in condition) return conditionProblems(condition.not, [...path, 'not']);
  if (isLeaf(condition) && condition.op === 'regex') {
    const message = regexProblem(condition.value, condition.flags);
    return message ? [{ path: [...path, 'value'], message }] : [];
  }
  return [];
}

type OwnedRange = { range: NumberRange; owner: string | null; path: (string | number)[] };

function numberRangeProblems(customer: CustomerConfig, at: (string | number)[]): ConfigProblem[] {
  const ranges: OwnedRange[] = [
    ...customer.numberRanges.map((range, i) => ({ range, owner: null, path: [...at, 'numberRanges', pos(range, i)] })),
    ...customer.sites.flatMap((site, s) =>
      site.numberRanges.map((range, i) => ({ range, owner: site.name, path: [...at, 'sites', pos(site, s), 'numberRanges', pos(range, i)] })),
    ),
  ].filter((r) => rangeProblems(r.range).length === 0);
  const problems: ConfigProblem[] = [];
  const label = (r: OwnedRange) => `${r.range.from}-${r.range.to} (${r.owner === null ? 'customer pool' : `site ${r.owner}`})`;
  for (const [i, a] of ranges.entries()) {
    for (const b of ranges.slice(i + 1)) {
      // Sites may reuse each other's extensions unless the customer forbids duplicates; the
      // customer pool serves every site, so it may never overlap anything.
      const mayShare = a.owner !== null && b.owner !== null && a.owner !== b.owner && !customer.settings.preventDuplicateNumbers;
      if (!mayShare && rangesOverlap(a.range, b.range)) {
        problems.push({ path: b.path, message: `number range ${label(b)} overlaps ${label(a)}` });
      }
    }
  }
  return problems;
}

const SOURCE_USER_TYPES: Record<string, readonly string[]> = {
  entra: ['microsoft'],
  ldap: ['ldap'],
  csv: ['csv', 'microsoft', 'ldap', 'cucm', 'webex'],
};

/** Where each parsed item stood in the file, since items that failed to parse are left out. */
const positions = new WeakMap<object, number>();
const pos = (item: object, fallback: number) => positions.get(item) ?? fallback;

/** The index in the file of a parsed customer or list item (`fallback` for anything else). */
export const itemIndex = pos;

const drawsFrom = (pool: 'site' | 'customer') => (profile: CustomerConfig['profiles'][number]) => profile.line?.numberFrom === pool;
/** A site with no move criteria at all never receives a user (README "Move order"). */
const receivesUsers = (site: SiteConfig) => Object.values(site.moveCriteria).some((ref) => ref !== undefined);

/**
 * A profile with a line needs a pool to draw from; without one every user it matches is blocked
 * at run time. Pools that failed to parse are not judged (their own problem is already reported).
 */
function lineNumberProblems(customer: CustomerConfig, at: (string | number)[], broken: ReadonlySet<string>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const sitesWithRanges = customer.sites.filter((site) => site.numberRanges.length > 0);
  customer.profiles.forEach((profile, index) => {
    const path = [...at, 'profiles', pos(profile, index), 'line', 'numberFrom'];
    if (drawsFrom('customer')(profile) && customer.numberRanges.length === 0 && !broken.has('numberRanges:*')) {
      problems.push({ path, message: `profile "${profile.name}" takes a number from the customer pool, but the customer has no numberRanges` });
    }
    if (drawsFrom('site')(profile) && customer.sites.length > 0 && sitesWithRanges.length === 0 && !broken.has('sites:*')) {
      problems.push({ path, message: `profile "${profile.name}" takes a number from the user's site, but no site has numberRanges` });
    }
  });
  const fromSite = customer.profiles.filter(drawsFrom('site')).map((p) => `"${p.name}"`);
  if (fromSite.length === 0 || sitesWithRanges.length === 0) return problems;
  customer.sites.forEach((site, index) => {
    // A site whose ranges were all malformed has its own problems already: no guess on top.
    if (site.numberRanges.length > 0 || !receivesUsers(site) || broken.has(`sites:ranges:${site.name}`)) return;
    problems.push({
      severity: 'warning',
      path: [...at, 'sites', pos(site, index), 'numberRanges'],
      message: `site "${site.name}" has no numberRanges: users placed there with profile ${fromSite.join(', ')} (line.numberFrom: site) would be blocked`,
    });
  });
  return problems;
}

/** A schedule Temporal accepts but that probably does not do what its author meant. */
/** An Entra source proves itself with a client secret or a client certificate: exactly one. */
function entraCredentialProblems(source: Extract<CustomerConfig['sources'][number], { type: 'entra' }>, at: (string | number)[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const secret = source.clientSecretEnv !== undefined;
  const certificate = source.clientCertificateFile !== undefined;
  if (secret && certificate) {
    problems.push({ path: [...at, 'clientCertificateFile'], message: 'set clientSecretEnv or clientCertificateFile, not both: the app proves itself with one credential' });
  } else if (!secret && !certificate) {
    problems.push({ path: at, message: 'an entra source needs clientSecretEnv (the variable holding the client secret) or clientCertificateFile (a PEM file with the private key and certificate)' });
  }
  if (!certificate) {
    for (const setting of ['clientCertificatePasswordEnv', 'sendCertificateChain'] as const) {
      if (source[setting] !== undefined) problems.push({ path: [...at, setting], message: `${setting} is used only with clientCertificateFile` });
    }
  }
  return problems;
}

/** TLS settings that would be accepted and do nothing (an LDAP source or target): refused. */
function ldapTlsProblems(ldap: { url: string; startTls: boolean; caFile?: string | undefined }, at: (string | number)[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const ldaps = ldap.url.startsWith('ldaps:');
  if (ldaps && ldap.startTls) problems.push({ path: [...at, 'startTls'], message: 'an ldaps:// URL is TLS from the start: startTls is for ldap:// URLs' });
  if (ldap.caFile !== undefined && !ldaps && !ldap.startTls) {
    problems.push({ path: [...at, 'caFile'], message: 'caFile is used only over TLS: use an ldaps:// URL or startTls: true' });
  }
  return problems;
}

function scheduleWarnings(schedule: CustomerConfig['sources'][number]['schedule'], at: (string | number)[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (schedule?.cron !== undefined && cronRestrictsBothDays(schedule.cron)) {
    problems.push({
      severity: 'warning',
      path: [...at, 'cron'],
      message: 'both day of month and day of week are restricted: Temporal runs only on days that match both (classic cron runs on either)',
    });
  }
  if (schedule?.every !== undefined && schedule.timeZone !== 'UTC') {
    problems.push({ severity: 'warning', path: [...at, 'timeZone'], message: 'an interval ("every") counts from a fixed instant: the time zone changes nothing (it applies to "cron")' });
  }
  return problems;
}

function customerProblems(customer: CustomerConfig, c: number, broken: ReadonlySet<string>): ConfigProblem[] {
  const at: (string | number)[] = ['customers', c];
  const criteria = new Map(customer.criteria.map((k) => [k.name, k]));
  const profiles = new Set(customer.profiles.map((p) => p.name));
  const ftpCriteria = new Set(customer.ftpCriteria.map((f) => f.name));
  const problems: ConfigProblem[] = [
    ...duplicateNames(customer.sites, [...at, 'sites'], 'site'),
    ...duplicateNames(customer.sources, [...at, 'sources'], 'source'),
    ...duplicateNames(customer.criteria, [...at, 'criteria'], 'criteria'),
    ...duplicateNames(customer.profiles, [...at, 'profiles'], 'profile'),
    ...duplicateNames(customer.ftpCriteria, [...at, 'ftpCriteria'], 'FTP criteria'),
    ...numberRangeProblems(customer, at),
  ];

  const criteriaRef = (ref: string, usage: 'move' | 'ftp', path: (string | number)[]) => {
    const found = criteria.get(ref);
    if (!found && broken.has(`criteria:${ref}`)) return;
    if (!found) problems.push({ path, message: `unknown criteria "${ref}"` });
    else if (found.usage !== usage) {
      problems.push({ path, message: `criteria "${ref}" has usage "${found.usage}" but is used here as "${usage}" criteria` });
    }
  };
  const profileRef = (ref: string, path: (string | number)[]) => {
    if (!profiles.has(ref) && !broken.has(`profiles:${ref}`)) problems.push({ path, message: `unknown profile "${ref}"` });
  };

  customer.criteria.forEach((k, i) => problems.push(...conditionProblems(k.when, [...at, 'criteria', pos(k, i), 'when'])));
  customer.sites.forEach((site, index) => {
    const s = pos(site, index);
    for (const [userType, ref] of Object.entries(site.moveCriteria)) {
      if (ref !== undefined) criteriaRef(ref, 'move', [...at, 'sites', s, 'moveCriteria', userType]);
    }
  });
  customer.ftpCriteria.forEach((ftp, index) => {
    const f = pos(ftp, index);
    ftp.rules.forEach((rule, r) => {
      criteriaRef(rule.criteria, 'ftp', [...at, 'ftpCriteria', f, 'rules', r, 'criteria']);
      profileRef(rule.profile, [...at, 'ftpCriteria', f, 'rules', r, 'profile']);
    });
  });
  customer.sources.forEach((source, index) => {
    const s = pos(source, index);
    if (!SOURCE_USER_TYPES[source.type]?.includes(source.userType)) {
      problems.push({
        path: [...at, 'sources', s, 'userType'],
        message: `a ${source.type} source syncs users of type ${SOURCE_USER_TYPES[source.type]?.join(' or ')}, not "${source.userType}"`,
      });
    }
    // disabledWhen runs on every record read, as criteria do: the same regex guard.
    if (source.disabledWhen) problems.push(...conditionProblems(source.disabledWhen, [...at, 'sources', s, 'disabledWhen']));
    problems.push(...scheduleWarnings(source.schedule, [...at, 'sources', s, 'schedule']));
    if (source.type === 'entra') problems.push(...entraCredentialProblems(source, [...at, 'sources', s]));
    if (source.type === 'ldap') problems.push(...ldapTlsProblems(source, [...at, 'sources', s]));
    // The external id names the user's workflow in Temporal (onboard/<customer>/<source>/<id>),
    // which is plaintext there by design: it must be an opaque id, never an email or a name.
    const mappedTo = source.type === 'csv' ? source.attributeMap[source.externalId] : undefined;
    if (source.type === 'csv' && mappedTo !== undefined && PERSONAL_ATTRIBUTES.has(mappedTo)) {
      problems.push({
        path: [...at, 'sources', s, 'externalId'],
        message: `column "${source.externalId}" is the user's ${mappedTo}: the external id names the user's workflow in Temporal, where ids are never encrypted; use an opaque id column (an employee number)`,
      });
    }
  });

  const settings = customer.settings;
  const settingsAt = [...at, 'settings'];
  const ftpRef = settings.flowThrough.criteria;
  if (ftpRef !== undefined && !ftpCriteria.has(ftpRef) && !broken.has(`ftpCriteria:${ftpRef}`)) {
    problems.push({ path: [...settingsAt, 'flowThrough', 'criteria'], message: `unknown FTP criteria "${settings.flowThrough.criteria}"` });
  }
  const { flowThrough } = settings;
  if (ftpRef === undefined && flowThrough.enabled && (flowThrough.addSync || flowThrough.updateSync)) {
    const named = customer.ftpCriteria.map((c) => c.name);
    problems.push({
      severity: 'warning',
      path: [...settingsAt, 'flowThrough'],
      message:
        'no FTP criteria in force (flowThrough.criteria): users are placed at sites but none is given a profile, so each ends unmatched' +
        (settings.updateSyncProfile === undefined ? '' : ' (but for updateSyncProfile after an update\'s move)') +
        (named.length > 0 ? ` (this customer's: ${named.join(', ')})` : ''),
    });
  }
  if (settings.updateSyncProfile !== undefined) profileRef(settings.updateSyncProfile, [...settingsAt, 'updateSyncProfile']);
  if (settings.welcomeEmail.enabled && !settings.welcomeEmail.from) {
    problems.push({ path: [...settingsAt, 'welcomeEmail', 'from'], message: 'a welcome email needs a "from" address' });
  }
  // The pipeline sends only where there is a server: without one, "enabled" would send nothing, silently.
  if (settings.welcomeEmail.enabled && settings.smtp === undefined && !broken.has('settings:*')) {
    problems.push({ path: [...settingsAt, 'welcomeEmail', 'enabled'], message: 'a welcome email needs "smtp" settings (the server that sends it); without them none is sent' });
  }
  if (settings.movedEmail.enabled && !settings.movedEmail.from && !settings.welcomeEmail.from) {
    problems.push({ path: [...settingsAt, 'movedEmail', 'from'], message: 'a moved email needs a "from" address (its own, or welcomeEmail.from)' });
  }
  if (settings.movedEmail.enabled && settings.smtp === undefined && !broken.has('settings:*')) {
    problems.push({ path: [...settingsAt, 'movedEmail', 'enabled'], message: 'a moved email needs "smtp" settings (the server that sends it); without them none is sent' });
  }
  if (settings.smtp?.passwordEnv !== undefined && settings.smtp.username === undefined) {
    problems.push({
      severity: 'warning',
      path: [...settingsAt, 'smtp', 'passwordEnv'],
      message: 'passwordEnv is used only with "username": without one, mail is sent without logging in',
    });
  }
  if (settings.smtp?.caFile !== undefined && settings.smtp.security === 'none') {
    problems.push({ path: [...settingsAt, 'smtp', 'caFile'], message: 'caFile is used only over TLS: set security to starttls or tls' });
  }
  if (settings.notifications && settings.smtp === undefined && !broken.has('settings:*')) {
    problems.push({ path: [...settingsAt, 'notifications'], message: 'notifications need "smtp" settings (the server that sends them); without them none is sent' });
  }
  problems.push(...lineNumberProblems(customer, at, broken));
  problems.push(...duplicateNames(customer.targets, [...at, 'targets'], 'target'));
  customer.targets.forEach((target, index) => problems.push(...targetProblems(target, [...at, 'targets', pos(target, index)])));
  const pushed = customer.targets.filter((t) => t.mode !== 'disabled');
  if (pushed.length > 0 && !settings.notifications && !broken.has('settings:*')) {
    problems.push({
      severity: 'warning',
      path: [...at, 'targets'],
      message: 'targets are configured but settings.notifications is not: a push that fails for good is shown in `flowthru target jobs` and told to nobody',
    });
  }
  return problems;
}

/** What the schema cannot see in a target: its templates, its field names for the kind, its group's regexes. */
function targetProblems(target: TargetConfig, at: (string | number)[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const templates = target.fields ?? defaultFields(target);
  for (const [field, template] of Object.entries(target.fields ?? {})) {
    const problem = templateProblem(template);
    if (problem) problems.push({ path: [...at, 'fields', field], message: problem });
  }
  const known = new Set(Object.keys(templates));
  for (const key of ['include', 'exclude'] as const) {
    (target[key] ?? []).forEach((field, i) => {
      if (!known.has(field)) {
        problems.push({ path: [...at, key, i], message: `unknown field "${field}" (the target's fields are ${[...known].join(', ')})` });
      }
    });
  }
  const written = fieldNames(target);
  if (written.length === 0) problems.push({ path: [...at, 'include'], message: 'the data filter leaves the target no field to write' });
  if (target.group) problems.push(...conditionProblems(target.group, [...at, 'group']));
  if (target.kind === 'scim') {
    const scim = new Set<string>(SCIM_FIELDS);
    for (const field of Object.keys(target.fields ?? {})) {
      if (!scim.has(field)) problems.push({ path: [...at, 'fields', field], message: `a SCIM target has no field "${field}" (one of ${SCIM_FIELDS.join(', ')})` });
    }
    if (!written.includes('userName')) problems.push({ path: [...at, 'fields'], message: 'a SCIM target needs the field "userName"' });
  }
  if (target.kind === 'ldap') {
    const rdn = target.rdnAttribute ?? 'uid';
    if (target.entry === 'managed' && !written.includes(rdn)) {
      problems.push({ path: [...at, 'rdnAttribute'], message: `entries flowthru manages are named by "${rdn}": the target's fields need one of that name` });
    }
    // Settings of the other entry kind would be accepted and do nothing: refused.
    const unused = target.entry === 'user' ? (['rdnAttribute', 'objectClasses'] as const) : (['idAttribute'] as const);
    for (const key of unused) {
      if (target[key] !== undefined) problems.push({ path: [...at, key], message: `${key} does nothing with entry: ${target.entry} (it is for entry: ${target.entry === 'user' ? 'managed' : 'user'})` });
    }
    problems.push(...ldapTlsProblems(target, at));
  }
  if (target.kind === 'scim' || target.kind === 'webhook') {
    const url = new URL(target.url);
    // fetch refuses such a URL, quoting it (and the password) in its error: refused here instead.
    if (url.username !== '' || url.password !== '') {
      problems.push({ path: [...at, 'url'], message: `a user name or password in the URL is refused: ${target.kind === 'scim' ? 'tokenEnv names the bearer token' : 'secretEnv names the signing secret'}` });
    }
    if (target.kind === 'scim' && url.search !== '') problems.push({ path: [...at, 'url'], message: 'the SCIM base URL takes no query string (…/scim/v2)' });
  }
  if (target.retryInterval === '0s' || parseDuration(target.retryInterval) === 0) {
    if (target.maxRetries !== 3) problems.push({ severity: 'warning', path: [...at, 'maxRetries'], message: 'retryInterval 0s never retries: maxRetries does nothing' });
  }
  return problems;
}

type PartName = Exclude<keyof typeof customerParts, 'settings'>;
const LISTS: readonly PartName[] = ['numberRanges', 'criteria', 'profiles', 'ftpCriteria', 'sources', 'sites', 'targets'];

type Shape = Record<string, z.ZodType>;
type Shell<S extends Shape> = { -readonly [K in keyof S]?: z.output<S[K]> };

const isMapping = (raw: unknown): raw is Record<string, unknown> => typeof raw === 'object' && raw !== null && !Array.isArray(raw);

/**
 * Parses a mapping key by key, in the order the document has them: an unknown key or a bad value
 * is reported with its path and the other keys are still parsed, so one mistake hides nothing.
 */
function parseShell<S extends Shape>(shape: S, raw: unknown, at: ConfigPath, expected: string): { data?: Shell<S>; problems: ConfigProblem[] } {
  if (!isMapping(raw)) return { problems: [{ path: at, message: `expected ${expected}` }] };
  const problems: ConfigProblem[] = [];
  const data: Shell<S> = {};
  const parse = (key: keyof S & string) => {
    const parsed = shape[key]!.safeParse(raw[key]);
    if (parsed.success) data[key] = parsed.data as Shell<S>[typeof key];
    else problems.push(...zodProblems(parsed.error, [...at, key]));
  };
  for (const key of Object.keys(raw)) {
    if (Object.hasOwn(shape, key)) parse(key);
    else problems.push({ path: [...at, key], message: `unknown key "${key}"` });
  }
  for (const key of Object.keys(shape)) if (!Object.hasOwn(raw, key)) parse(key);
  return { data, problems };
}

/**
 * An item that failed only for faults that can be set aside, parsed again without them, so that
 * they hide nothing else in it (its references, its other ranges, the settings beside them):
 * unknown keys are dropped, and a site's malformed number ranges are left out (the kept ranges
 * remember their index in the file). Undefined when any other fault remains.
 */
function parseWithoutFaults<T extends z.ZodType>(schema: T, raw: unknown, error: z.ZodError, part?: string): { data: z.output<T>; dropped: boolean } | undefined {
  const inRange = (issue: z.core.$ZodIssue) => part === 'sites' && issue.path[0] === 'numberRanges' && typeof issue.path[1] === 'number';
  if (!error.issues.every((issue) => issue.code === 'unrecognized_keys' || inRange(issue))) return undefined;
  const copy = structuredClone(raw);
  for (const issue of error.issues) {
    if (issue.code !== 'unrecognized_keys') continue;
    let target: unknown = copy;
    for (const key of issue.path) target = isMapping(target) || Array.isArray(target) ? (target as Record<PropertyKey, unknown>)[key as PropertyKey] : undefined;
    if (isMapping(target)) for (const key of issue.keys) delete target[key];
  }
  const faulty = new Set(error.issues.filter(inRange).map((issue) => issue.path[1] as number));
  let kept: number[] = [];
  if (faulty.size > 0 && isMapping(copy) && Array.isArray(copy.numberRanges)) {
    kept = copy.numberRanges.map((_, i) => i).filter((i) => !faulty.has(i));
    copy.numberRanges = kept.map((i) => (copy.numberRanges as unknown[])[i]);
  }
  const again = schema.safeParse(copy);
  if (!again.success) return undefined;
  const ranges = (again.data as { numberRanges?: unknown[] } | null)?.numberRanges;
  if (faulty.size > 0 && ranges) ranges.forEach((range, j) => typeof range === 'object' && range !== null && positions.set(range, kept[j]!));
  return { data: again.data, dropped: faulty.size > 0 };
}

interface ParsedCustomer {
  readonly customer?: CustomerConfig;
  /** False when the customer's name is missing or invalid: it takes no part in the duplicate check. */
  readonly named: boolean;
  readonly problems: ConfigProblem[];
  readonly broken: Set<string>;
}

/**
 * Parses one customer part by part. Items that fail are left out, their problems kept, and their
 * names remembered so that references to them are not reported a second time as unknown
 * (`part:*` marks a part with any failed item, named or not).
 */
function parseCustomer(raw: unknown, at: ConfigPath): ParsedCustomer {
  const shell = parseShell(customerShell, raw, at, 'a customer: a mapping with name, sites, sources, …');
  if (!shell.data) return { named: false, problems: shell.problems, broken: new Set() };
  const problems = [...shell.problems];
  const broken = new Set<string>();
  const parsedSettings = customerParts.settings.safeParse(shell.data.settings ?? {});
  let settingsData = parsedSettings.success ? parsedSettings.data : undefined;
  if (!parsedSettings.success) {
    problems.push(...zodProblems(parsedSettings.error, [...at, 'settings']));
    settingsData = parseWithoutFaults(customerParts.settings, shell.data.settings ?? {}, parsedSettings.error)?.data;
    if (settingsData === undefined) broken.add('settings:*');
  }
  const parts: Record<string, unknown[]> = {};
  for (const part of LISTS) {
    parts[part] = (shell.data[part] ?? []).flatMap((item, i) => {
      const parsed = customerParts[part].safeParse(item);
      const repaired = parsed.success ? undefined : parseWithoutFaults(customerParts[part], item, parsed.error, part);
      const data: unknown = parsed.success ? parsed.data : repaired?.data;
      if (!parsed.success) problems.push(...zodProblems(parsed.error, [...at, part, i]));
      // A site without its malformed ranges is checked on, but not counted as a pool with ranges.
      if (repaired?.dropped) {
        broken.add(`${part}:*`);
        const siteName = (item as { name?: unknown } | null)?.name;
        if (typeof siteName === 'string') broken.add(`${part}:ranges:${siteName}`);
      }
      // A source of an unknown type: what every source has is still checked.
      if (part === 'sources' && !parsed.success && parsed.error.issues.some((issue) => issue.path.length === 1 && issue.path[0] === 'type')) {
        const common = sourceCommonSchema.safeParse(item);
        if (!common.success) problems.push(...zodProblems(common.error, [...at, part, i]));
      }
      if (data !== undefined) {
        if (typeof data === 'object' && data !== null) positions.set(data, i);
        return [data];
      }
      broken.add(`${part}:*`);
      const itemName = (item as { name?: unknown } | null)?.name;
      if (typeof itemName === 'string') broken.add(`${part}:${itemName}`);
      return [];
    });
  }
  const rawName = (raw as { name?: unknown }).name;
  const customer = {
    ...shell.data,
    // A customer whose name is invalid is still checked in full; its name only labels it.
    name: shell.data.name ?? (typeof rawName === 'string' ? rawName : ''),
    settings: settingsData ?? customerParts.settings.parse({}),
    ...parts,
  } as CustomerConfig;
  return { customer, named: shell.data.name !== undefined, problems, broken };
}

/**
 * Validates a parsed YAML document in full: the schema, then references between its parts, then
 * what would fail at run time. Every problem and warning is reported at once, each with its path;
 * nothing here does I/O.
 */
export function validateConfig(document: unknown): ValidationResult {
  if (document === null || document === undefined) {
    return { ok: false, problems: [{ path: [], message: 'the configuration is empty' }], warnings: [] };
  }
  const secrets = secretProblems(document);
  const secretPaths = new Set(secrets.map((s) => formatPath(s.path)));
  const shell = parseShell(configShell, document, [], 'a mapping with "version" and "customers"');
  const problems: ConfigProblem[] = [...shell.problems];
  const customers: CustomerConfig[] = [];
  const named: CustomerConfig[] = [];
  (shell.data?.customers ?? []).forEach((raw, c) => {
    const parsed = parseCustomer(raw, ['customers', c]);
    problems.push(...parsed.problems);
    if (!parsed.customer) return;
    positions.set(parsed.customer, c);
    customers.push(parsed.customer);
    if (parsed.named) named.push(parsed.customer);
    problems.push(...customerProblems(parsed.customer, c, parsed.broken));
  });
  problems.push(...duplicateNames(named, ['customers'], 'customer'));
  const all = [...secrets, ...problems.filter(unique(secretPaths))];
  const errors = all.filter((p) => !isWarning(p));
  const warnings = all.filter(isWarning);
  const config = { version: 1, ...(shell.data?.provider ? { provider: shell.data.provider } : {}), customers } as Config;
  if (errors.length > 0) return { ok: false, problems: errors, warnings, partial: config };
  return { ok: true, config, warnings };
}

/** Drops the schema's "unknown key" where the secret check already said more about that key. */
function unique(secretPaths: ReadonlySet<string>) {
  return (problem: ConfigProblem) => !secretPaths.has(formatPath(problem.path)) || problem.message.startsWith('literal secret');
}

import Handlebars from 'handlebars';
import type { TargetConfig, TargetMode } from './config/schema.js';
import { matches } from './criteria.js';
import { firstUnknownVariable } from './template-variables.js';
import { CANONICAL_ATTRIBUTES, type CanonicalUser, type UserStatus } from './user.js';

/*
 * What a provisioning target sees of a user (its data filter), who it applies to (its provisioning
 * group), and when it hears about them (its mode): pure functions the activities call.
 */

/** Everything a target's field templates can name: the user as synced, and where flowthru put them. */
export interface TargetUserView {
  readonly userId: string;
  readonly externalId: string;
  readonly customer: string;
  readonly source: string | null;
  readonly userType: string;
  readonly status: UserStatus;
  /** Why the user is in that status (blocked, failed, …), else null. */
  readonly reason: string | null;
  readonly site: string | null;
  readonly siteDisplayName: string | null;
  /** The site's `locale` and `timeZone`, where it has them. */
  readonly siteLocale: string | null;
  readonly siteTimeZone: string | null;
  readonly profile: string | null;
  readonly role: string | null;
  /** The user's line, as held in the inventory (E.164 or an extension); null without one. */
  readonly number: string | null;
  /** Services the user holds, by kind. */
  readonly services: readonly string[];
  readonly attributes: CanonicalUser;
}

/** The fields SCIM targets understand (see adapters/targets/scim.ts); others are refused by config validate. */
export const SCIM_FIELDS = [
  'userName',
  'externalId',
  'displayName',
  'givenName',
  'familyName',
  'email',
  'phoneNumber',
  'mobile',
  'title',
  'preferredLanguage',
  'locale',
  'timezone',
  'department',
  'employeeNumber',
  'active',
] as const;

const DISPLAY_NAME = '{{#if displayName}}{{displayName}}{{else}}{{firstName}} {{lastName}}{{/if}}';

/** What each kind writes when the target names no `fields` of its own. */
export function defaultFields(target: TargetConfig): Record<string, string> {
  switch (target.kind) {
    case 'ldap':
      // Write-back to a user's own entry touches as little as it can: the line. A managed entry is a whole person.
      return target.entry === 'user'
        ? { telephoneNumber: '{{number}}' }
        : {
            uid: '{{username}}',
            cn: DISPLAY_NAME,
            sn: '{{#if lastName}}{{lastName}}{{else}}{{username}}{{/if}}',
            givenName: '{{firstName}}',
            displayName: DISPLAY_NAME,
            mail: '{{email}}',
            telephoneNumber: '{{number}}',
            l: '{{site}}',
            employeeNumber: '{{externalId}}',
          };
    case 'scim':
      return {
        userName: '{{#if email}}{{email}}{{else}}{{username}}{{/if}}',
        externalId: '{{externalId}}',
        displayName: DISPLAY_NAME,
        givenName: '{{firstName}}',
        familyName: '{{lastName}}',
        email: '{{email}}',
        phoneNumber: '{{number}}',
        title: '{{title}}',
        department: '{{department}}',
      };
    case 'webhook':
      return {
        externalId: '{{externalId}}',
        username: '{{username}}',
        email: '{{email}}',
        firstName: '{{firstName}}',
        lastName: '{{lastName}}',
        displayName: DISPLAY_NAME,
        department: '{{department}}',
        title: '{{title}}',
        site: '{{site}}',
        profile: '{{profile}}',
        role: '{{role}}',
        number: '{{number}}',
        services: '{{services}}',
        status: '{{status}}',
      };
  }
}

/** The fields a target is configured to write, after include and exclude (names only: for validation and docs). */
export function fieldNames(target: TargetConfig): string[] {
  const names = Object.keys(target.fields ?? defaultFields(target));
  return names.filter((n) => (target.include === undefined || target.include.includes(n)) && !(target.exclude ?? []).includes(n));
}

/** The variables a target's templates may name (besides `attributes.<source attribute>`). */
export const TARGET_TEMPLATE_VARIABLES = [
  ...CANONICAL_ATTRIBUTES,
  'userId',
  'externalId',
  'customer',
  'source',
  'userType',
  'status',
  'site',
  'siteDisplayName',
  'siteLocale',
  'siteTimeZone',
  'profile',
  'role',
  'number',
  'e164',
  'extension',
  'services',
] as const;

/** The source attributes a template names (`attributes.costCentre`): any may be, since what a source has varies by record. */
function namedAttributes(node: unknown, into: Record<string, string> = {}): Record<string, string> {
  if (Array.isArray(node)) for (const child of node) namedAttributes(child, into);
  else if (typeof node === 'object' && node !== null) {
    const path = node as { type?: string; parts?: unknown[] };
    if (path.type === 'PathExpression' && path.parts?.[0] === 'attributes' && typeof path.parts[1] === 'string') into[path.parts[1]] = 'x';
    for (const value of Object.values(node)) if (typeof value === 'object') namedAttributes(value, into);
  }
  return into;
}

const unknownVariableProblem = (name: string) => `"${name}" is not a template variable (one of ${TARGET_TEMPLATE_VARIABLES.join(', ')}, or attributes.<source attribute>)`;

/**
 * What is wrong with a target's template, for `config validate`: it must parse, and name only
 * known variables and Handlebars' built-in helpers (a misspelt `{{nuber}}` would otherwise write
 * nothing, silently, to every user).
 */
export function templateProblem(template: string): string | null {
  try {
    const strict = Handlebars.compile(template, { noEscape: true, strict: true, knownHelpersOnly: true });
    const syntax = Handlebars.parse(template);
    strict({ ...Object.fromEntries(TARGET_TEMPLATE_VARIABLES.map((v) => [v, 'x'])), attributes: namedAttributes(syntax) });
    const known = new Set<string>([...TARGET_TEMPLATE_VARIABLES, 'attributes']);
    const unknown = firstUnknownVariable(syntax, (name) => known.has(name));
    return unknown ? unknownVariableProblem(unknown.name) : null;
  } catch (error) {
    const message = (error as Error).message;
    const unknown = /^"([^"]+)" not defined in/.exec(message);
    const helper = /unknown helper (\S+)/.exec(message);
    if (helper) return `unknown helper "${helper[1]}" (only Handlebars' built-in helpers: if, unless, each, with, lookup)`;
    if (unknown) return unknownVariableProblem(unknown[1]!);
    // Handlebars says where on one line and what it expected on the last: both, without its ASCII-art pointer.
    const lines = message.split('\n').filter((l) => l.trim() !== '' && !/^-*\^$/.test(l));
    return `template does not parse: ${(lines.length > 1 ? `${lines[0]} ${lines.at(-1)}` : lines[0]!).replace(/ - \d+:\d+$/, '')}`;
  }
}

/** A number as the target wants it written. Extensions have no E.164 form: they are written as they are. */
export function formatNumber(number: string | null, format: TargetConfig['numberFormat'], extensionDigits: number): string | null {
  if (number === null) return null;
  const digits = number.replace(/^\+/, '');
  switch (format) {
    case 'e164':
      return number;
    case 'digits':
      return digits;
    case 'extension':
      return digits.slice(-extensionDigits);
  }
}

const compiled = new Map<string, HandlebarsTemplateDelegate>();
function compile(template: string): HandlebarsTemplateDelegate {
  let fn = compiled.get(template);
  if (!fn) {
    // Values go to LDAP, SCIM and JSON, never to HTML: no escaping; a missing value renders empty.
    fn = Handlebars.compile(template, { noEscape: true, strict: false });
    compiled.set(template, fn);
  }
  return fn;
}

/** The values templates see: canonical attributes, source attributes, and flowthru's placement. */
function templateContext(target: TargetConfig, view: TargetUserView): Record<string, unknown> {
  const canonical = Object.fromEntries(CANONICAL_ATTRIBUTES.map((a) => [a, view.attributes[a] ?? '']));
  return {
    ...canonical,
    attributes: view.attributes.attributes ?? {},
    userId: view.userId,
    externalId: view.externalId,
    customer: view.customer,
    source: view.source ?? '',
    userType: view.userType,
    // A target is given the user as provisioned: the pipeline holds them at `provisioning` only until the targets have them.
    status: view.status === 'provisioning' ? 'provisioned' : view.status,
    site: view.site ?? '',
    siteDisplayName: view.siteDisplayName ?? view.site ?? '',
    siteLocale: view.siteLocale ?? '',
    siteTimeZone: view.siteTimeZone ?? '',
    profile: view.profile ?? '',
    role: view.role ?? '',
    number: formatNumber(view.number, target.numberFormat, target.extensionDigits) ?? '',
    e164: view.number ?? '',
    extension: view.number === null ? '' : view.number.replace(/^\+/, '').slice(-target.extensionDigits),
    services: view.services.join(','),
  };
}

/**
 * The target's data filter: its fields (or the kind's defaults) rendered over the user, then
 * include and exclude. An empty rendering is null: the target holds no value for that field.
 */
export function targetFields(target: TargetConfig, view: TargetUserView): Record<string, string | null> {
  const context = templateContext(target, view);
  const out: Record<string, string | null> = {};
  const templates = target.fields ?? defaultFields(target);
  for (const name of fieldNames(target)) {
    const value = compile(templates[name]!)(context).trim();
    out[name] = value === '' ? null : value;
  }
  return out;
}

/** Whether the user is in the target's provisioning group (everyone, when it has none). */
export function inGroup(target: TargetConfig, user: CanonicalUser): boolean {
  return target.group === undefined || matches(target.group, user);
}

/** Statuses in which a user holds what their profile gives: a target should hold them too. */
const HELD: ReadonlySet<UserStatus> = new Set(['provisioning', 'provisioned']);
/** Statuses in which a user holds nothing any more: a target should hold nothing either. */
const GONE: ReadonlySet<UserStatus> = new Set(['deleted', 'unmatched', 'unplaced', 'imported']);

/**
 * What a target should do for the user now: `provision` (hold their current fields), `deprovision`
 * (hold nothing), or `none` (a blocked or failed user keeps what the target has until they are settled).
 */
export function desiredAction(target: TargetConfig, view: TargetUserView): 'provision' | 'deprovision' | 'none' {
  if (GONE.has(view.status)) return 'deprovision';
  if (!inGroup(target, view.attributes)) return 'deprovision';
  if (HELD.has(view.status)) return 'provision';
  return 'none';
}

/** Modes in which the pipeline itself hands the user to the target. */
const PIPELINE_MODES: ReadonlySet<TargetMode> = new Set(['automatic', 'enrollment', 'queue', 'queue-on-error']);

export interface PlannedPush {
  readonly target: string;
  readonly mode: Exclude<TargetMode, 'manual' | 'disabled'>;
  /** Temporal retry policy for the push: the target's interval and count. */
  readonly retryIntervalMs: number;
  readonly maxRetries: number;
  readonly timeoutMs: number;
}

/**
 * The targets a pipeline pass hands the user to, in order: configured order on provision and
 * change, reversed on deprovision (the last system given a user is the first to lose them).
 * Enrollment targets are in every plan: the push itself knows whether the target has had the user
 * (it then hears nothing more until the user leaves).
 */
export function planPushes(targets: readonly TargetConfig[], direction: 'provision' | 'deprovision', retryIntervalMs: (target: TargetConfig) => number): PlannedPush[] {
  const planned = targets
    .filter((t) => PIPELINE_MODES.has(t.mode))
    .map((t) => ({
      target: t.name,
      mode: t.mode as PlannedPush['mode'],
      retryIntervalMs: retryIntervalMs(t),
      maxRetries: t.maxRetries,
      timeoutMs: t.timeoutMs,
    }));
  return direction === 'deprovision' ? planned.reverse() : planned;
}

/**
 * Which event a push is, from what the target last held and what it should hold now: the first
 * push provisions, a different site is a move, anything else a change.
 */
export function targetEvent(
  action: 'provision' | 'deprovision',
  before: { site: string | null; held: boolean },
  site: string | null,
): 'provisioned' | 'changed' | 'moved' | 'deprovisioned' {
  if (action === 'deprovision') return 'deprovisioned';
  if (!before.held) return 'provisioned';
  return before.site !== null && site !== null && before.site !== site ? 'moved' : 'changed';
}

/** A stable JSON text of fields (keys sorted): equal fields, equal text, whatever their order. */
export function fieldsKey(fields: Readonly<Record<string, string | null>> | null): string {
  if (fields === null) return 'null';
  return JSON.stringify(Object.keys(fields).sort().map((k) => [k, fields[k]]));
}

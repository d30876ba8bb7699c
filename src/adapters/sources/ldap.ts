import { randomUUID } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';
import { Client, FilterParser, ResultCodeError, type Entry, type SearchResult } from 'ldapts';
import type { SourceConfig } from '../../domain/config/schema.js';
import { PermanentError } from '../errors.js';
import { ldapTlsOptions, untrustedCertificate } from '../tls.js';
import { compareWatermarkValues, escapeFilterValue, formatObjectGuid, generalizedTimeNanos } from './ldap-escape.js';
import type { RawRecord } from './records.js';

export { escapeDnValue, escapeFilterValue, formatObjectGuid } from './ldap-escape.js';

export type LdapSourceConfig = Extract<SourceConfig, { type: 'ldap' }>;

/**
 * Where a paged read stands. `searchId` names the live search (its connection and paged-results
 * cookie) in this worker; `delivered` counts the entries handed out so far (records and problems),
 * so that a search that is gone can be restarted and fast-forwarded; `since` is the watermark the
 * search started from (a restarted search uses the same filter); `highest` is the highest
 * modifyTimestamp/uSNChanged among the delivered entries.
 */
export interface LdapCursor {
  readonly searchId: string;
  readonly delivered: number;
  readonly since: string | null;
  readonly highest: string | null;
  /** modifyTimestamp sources: when the read began, less the clock margin (the watermark's ceiling). */
  readonly started?: string;
}

export interface LdapWatermark {
  readonly attribute: 'modifyTimestamp' | 'uSNChanged';
  readonly value: string;
}

export interface LdapPage {
  /** Each record's attributes carry `externalId`, the entry's stable id (entryUUID or objectGUID). */
  readonly records: RawRecord[];
  /** Entries that cannot be turned into a record, by DN. */
  readonly problems: { at: string; message: string }[];
  /** Null only when the search is complete. */
  readonly next: LdapCursor | null;
  /** On the last page: the highest modifyTimestamp/uSNChanged of the whole search, to persist after a successful sync. */
  readonly watermark: LdapWatermark | null;
}

export interface LdapReadOptions {
  /** From the previous successful sync: read only entries changed since (>=) this value. */
  readonly watermark?: LdapWatermark | null;
  readonly env?: NodeJS.ProcessEnv;
  readonly heartbeat?: () => void;
  /**
   * modifyTimestamp sources: the watermark is never later than the read's start less this margin
   * (default 5 minutes, for clock skew between us and the server). An entry changed during a long
   * read, after it was delivered, has a timestamp after the start, so the next read sees it again.
   */
  readonly watermarkMarginMs?: number;
}

type Preset = LdapSourceConfig['preset'];

const OPENLDAP_MAP: Record<string, string> = {
  uid: 'username',
  mail: 'email',
  givenName: 'firstName',
  sn: 'lastName',
  cn: 'displayName',
  displayName: 'attributes.displayName',
  departmentNumber: 'department',
  l: 'city',
  st: 'state',
  c: 'country',
  postalCode: 'postalCode',
  title: 'title',
  employeeNumber: 'employeeId',
  telephoneNumber: 'phone',
  mobile: 'mobile',
  manager: 'manager',
  street: 'attributes.street',
  o: 'attributes.o',
  ou: 'attributes.ou',
  employeeType: 'attributes.employeeType',
  preferredLanguage: 'attributes.preferredLanguage',
};

const ACTIVE_DIRECTORY_MAP: Record<string, string> = {
  sAMAccountName: 'username',
  userPrincipalName: 'attributes.userPrincipalName',
  mail: 'email',
  givenName: 'firstName',
  sn: 'lastName',
  displayName: 'displayName',
  department: 'department',
  l: 'city',
  st: 'state',
  // `co` is the country's name (what Entra ID calls country); `c` the ISO 3166 two-letter code.
  co: 'country',
  c: 'attributes.c',
  postalCode: 'postalCode',
  title: 'title',
  employeeID: 'employeeId',
  telephoneNumber: 'phone',
  mobile: 'mobile',
  manager: 'manager',
  company: 'attributes.company',
  physicalDeliveryOfficeName: 'attributes.physicalDeliveryOfficeName',
  streetAddress: 'attributes.streetAddress',
  employeeNumber: 'attributes.employeeNumber',
  ...Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`extensionAttribute${i + 1}`, `attributes.extensionAttribute${i + 1}`])),
};

/**
 * The default attribute map of a preset, onto the canonical attributes of src/domain/user.ts (and
 * `attributes.<name>` for the rest). The configured attributeMap is merged over it: config wins.
 * Only mapped attributes are read from the server.
 */
export function presetAttributeMap(preset: Preset): Record<string, string> {
  return { ...(preset === 'activeDirectory' ? ACTIVE_DIRECTORY_MAP : OPENLDAP_MAP) };
}

/**
 * The preset's stable id (survives renames and moves), change marker for incremental reads, and
 * the attribute that says an account is disabled or locked: AD's userAccountControl (bit 0x2,
 * ACCOUNTDISABLE), OpenLDAP ppolicy's pwdAccountLockedTime (an operational attribute, so only
 * returned when asked for by name; a server without ppolicy returns nothing and nobody is locked).
 */
const PRESET_IDS = {
  openldap: { id: 'entryUUID', watermark: 'modifyTimestamp', kind: 'time', state: 'pwdAccountLockedTime' },
  activeDirectory: { id: 'objectGUID', watermark: 'uSNChanged', kind: 'usn', state: 'userAccountControl' },
} as const;

/** AD's userAccountControl flag of a disabled account. */
const ACCOUNTDISABLE = 0x2;

/** Why the entry's account is disabled or locked, from the preset's state attribute; undefined if it is not. */
function disabledBecause(attribute: string, values: readonly string[] | null): string | undefined {
  const value = values?.[0]?.trim();
  if (value === undefined || value === '') return undefined;
  if (attribute === 'userAccountControl') {
    const flags = Number.parseInt(value, 10);
    return Number.isInteger(flags) && (flags & ACCOUNTDISABLE) !== 0 ? `disabled: userAccountControl ${value} has ACCOUNTDISABLE (0x2)` : undefined;
  }
  // ppolicy sets it when it locks an account (000001010000Z: locked by an administrator, for good).
  return `locked: pwdAccountLockedTime ${value}`;
}

/**
 * Attributes whose values are binary (photos, certificates, SIDs, GUIDs) or secret (password
 * hashes): never requested, never copied into a record or the entry copy even when mapped. A value
 * that is not valid UTF-8 is dropped too, whatever its attribute is called.
 */
const BINARY_ATTRIBUTES = new Set(
  [
    'jpegPhoto',
    'photo',
    'thumbnailPhoto',
    'thumbnailLogo',
    'audio',
    'userCertificate',
    'cACertificate',
    'crossCertificatePair',
    'certificateRevocationList',
    'authorityRevocationList',
    'deltaRevocationList',
    'userSMIMECertificate',
    'userPKCS12',
    'userPassword',
    'unicodePwd',
    'dBCSPwd',
    'supplementalCredentials',
    'objectGUID',
    'objectSid',
    'sIDHistory',
    'tokenGroups',
    'nTSecurityDescriptor',
    'logonHours',
    'msExchMailboxGuid',
    'msExchMailboxSecurityDescriptor',
    'mS-DS-ConsistencyGuid',
    'msDS-KeyCredentialLink',
  ].map((n) => n.toLowerCase()),
);

function isBinaryAttribute(description: string): boolean {
  const lower = description.toLowerCase();
  return BINARY_ATTRIBUTES.has(lower.split(';')[0]!) || /;binary$/.test(lower);
}

/** What one source reads: derived from configuration only, so every worker derives the same plan. */
interface Plan {
  readonly idAttribute: string;
  readonly watermarkAttribute: LdapWatermark['attribute'];
  readonly watermarkKind: 'time' | 'usn';
  /** Says whether the account is disabled or locked (see PRESET_IDS). */
  readonly stateAttribute: string;
  /** Requested attributes, in a fixed order (records list attributes in it: stable hashes). */
  readonly attributes: readonly string[];
  /** Lower-case name → the spelling the attribute map uses, for what the server sends back. */
  readonly spelling: ReadonlyMap<string, string>;
  /** Lower-case names of the attributes that go into a record's attributes (the mapped ones). */
  readonly mapped: ReadonlySet<string>;
}

function planFor(source: LdapSourceConfig): Plan {
  const ids = PRESET_IDS[source.preset];
  // Merged case-insensitively: a configured `givenname` replaces the preset's `givenName`.
  const map = new Map<string, string>();
  for (const name of Object.keys(presetAttributeMap(source.preset))) map.set(name.toLowerCase(), name);
  for (const name of Object.keys(source.attributeMap)) map.set(name.toLowerCase(), name);
  const mapped = new Set([...map.keys()].filter((lower) => !isBinaryAttribute(lower)));
  const spelling = new Map<string, string>([...map].filter(([lower]) => mapped.has(lower)));
  for (const extra of [ids.id, ids.watermark, ids.state]) if (!spelling.has(extra.toLowerCase())) spelling.set(extra.toLowerCase(), extra);
  return {
    idAttribute: ids.id,
    watermarkAttribute: ids.watermark,
    watermarkKind: ids.kind,
    stateAttribute: ids.state,
    attributes: [...spelling.values()],
    spelling,
    mapped,
  };
}

/** The users a preset reads when the source names no filter: people, not groups or computers. */
export function defaultLdapFilter(preset: Preset): string {
  return preset === 'activeDirectory' ? '(&(objectCategory=person)(objectClass=user))' : '(objectClass=inetOrgPerson)';
}

/** The configured filter, parenthesised, AND the watermark condition for an incremental read. */
function filterFor(source: LdapSourceConfig, plan: Plan, since: string | null): string {
  const configured = (source.filter ?? defaultLdapFilter(source.preset)).trim();
  const base = configured.startsWith('(') ? configured : `(${configured})`;
  const filter = since === null ? base : `(&${base}(${plan.watermarkAttribute}>=${escapeFilterValue(since)}))`;
  try {
    // ldapts's parser closes a missing final parenthesis itself; a typo should not pass unnoticed.
    // (Parentheses inside values are always escaped as \28 and \29, so counting them is exact.)
    let depth = 0;
    for (let i = 0; i < base.length; i++) {
      depth += base[i] === '(' ? 1 : base[i] === ')' ? -1 : 0;
      if (depth < 0 || (depth === 0 && i < base.length - 1)) throw new Error('unbalanced parentheses');
    }
    if (depth !== 0) throw new Error('unbalanced parentheses');
    FilterParser.parseString(filter);
  } catch (error) {
    throw new PermanentError(
      'SourceConfiguration',
      `invalid LDAP filter ${JSON.stringify(source.filter)} (source "${source.name}"): ${(error as Error).message}`,
    );
  }
  return filter;
}

/** The incoming watermark when it belongs to this source's kind and is well formed; else a full read. */
function incomingSince(plan: Plan, watermark: LdapWatermark | null | undefined): string | null {
  if (!watermark || watermark.attribute !== plan.watermarkAttribute) return null;
  const value = watermark.value.trim();
  const valid = plan.watermarkKind === 'usn' ? /^\d+$/.test(value) : generalizedTimeNanos(value) !== null;
  return valid ? value : null;
}

function bindPassword(source: LdapSourceConfig, env: NodeJS.ProcessEnv): string {
  const password = env[source.passwordEnv];
  // An empty password would make a simple bind an unauthenticated one (RFC 4513 §5.1.2), which
  // many servers accept and answer with an empty or partial directory: refuse it.
  if (password === undefined || password === '') {
    throw new PermanentError(
      'SourceCredentials',
      `the environment variable ${source.passwordEnv}, which holds the LDAP bind password of source "${source.name}", is ${password === undefined ? 'not set' : 'empty'}`,
    );
  }
  return password;
}

// ---------------------------------------------------------------------------------------------
// Live searches.
//
// An RFC 2696 paged-results cookie is only valid on the connection that started the search, but
// each readLdapPage call is a separate activity call returning one page. So the connection and the
// page iterator stay here between calls, keyed by the cursor's searchId, and are closed when the
// search completes, fails, or sits idle for IDLE_MS. Only the server page being handed out is held
// in memory (at most source.pageSize entries), never the directory.
//
// A call whose search is not here (it ran on another worker, the worker restarted, the connection
// dropped, the search idled out) restarts the search from scratch and skips the first `delivered`
// entries: it re-reads them but does not return them. Servers return a search's entries in a stable
// order (OpenLDAP by entry id, AD by its index), but entries added or deleted meanwhile in front of
// that position shift it: a few entries may then be delivered twice or not at all in this sync.
// For imports that is harmless: they are idempotent upserts by externalId (a repeat is a no-op),
// and an entry missed is read by the next sync. A delete sync could take a missed entry for a
// deleted one: so a restart is reported as a problem that counts as an unidentified record, which
// makes the read incomplete, and an incomplete read offboards nobody.
//
// ldapts ends a paged search at the first page with no entries even if the server sent a cookie;
// OpenLDAP and Active Directory fill every page but the last, so this does not cut reads short.

const IDLE_MS = 5 * 60_000;

/** Reported (as a record that could not be identified, making the read incomplete) when a search restarts mid-read. */
export const RESTARTED_SEARCH =
  'the search was restarted part-way (its connection or cursor was lost); entries added or deleted meanwhile may have shifted it, so this read cannot tell who left the directory (a delete sync offboards nobody)';

interface LiveSearch {
  readonly fingerprint: string;
  readonly client: Client;
  readonly pages: AsyncGenerator<SearchResult>;
  /** The server page being handed out, and the position in it. */
  buffer: Entry[];
  index: number;
  /** Entries consumed from the search since it started (skipped ones included). */
  consumed: number;
  done: boolean;
  busy: boolean;
  timer?: NodeJS.Timeout;
}

const live = new Map<string, LiveSearch>();

async function close(search: LiveSearch): Promise<void> {
  if (search.timer) clearTimeout(search.timer);
  try {
    await search.client.unbind();
  } catch {
    // The connection is gone already: nothing to close.
  }
}

function evict(searchId: string, search: LiveSearch): void {
  if (live.get(searchId) === search) live.delete(searchId);
  void close(search);
}

/** Closes every live search: for worker shutdown and tests. */
export async function closeLdapConnections(): Promise<void> {
  const searches = [...live.values()];
  live.clear();
  await Promise.all(searches.map(close));
}

/** Diagnostics: the live searches of this process and how many entries each holds. */
export function liveLdapSearches(): { searchId: string; buffered: number }[] {
  return [...live].map(([searchId, s]) => ({ searchId, buffered: s.buffer.length - s.index }));
}

/** The next entry of a search, or null when it is complete. Fetches the next server page as needed. */
async function nextEntry(search: LiveSearch, heartbeat?: () => void): Promise<Entry | null> {
  while (search.index >= search.buffer.length) {
    search.buffer = [];
    search.index = 0;
    if (search.done) return null;
    const page = await search.pages.next();
    heartbeat?.();
    if (page.done) search.done = true;
    else search.buffer = page.value.searchEntries;
  }
  search.consumed++;
  return search.buffer[search.index++]!;
}

/** Whether the search has nothing more: looks ahead one server page when the current one is used up. */
async function exhausted(search: LiveSearch, heartbeat?: () => void): Promise<boolean> {
  if (search.index < search.buffer.length) return false;
  const entry = await nextEntry(search, heartbeat);
  if (entry === null) return true;
  search.consumed--;
  search.index--;
  return false;
}

function tlsOptions(source: LdapSourceConfig, host: string): ConnectionOptions {
  return ldapTlsOptions(host, source.caFile, (reason) => new PermanentError('SourceConfiguration', `cannot read caFile ${source.caFile} of source "${source.name}": ${reason}`));
}

async function openSearch(source: LdapSourceConfig, plan: Plan, filter: string, password: string, fingerprint: string): Promise<LiveSearch> {
  const url = new URL(source.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost';
  const secure = url.protocol === 'ldaps:';
  const tls = secure || source.startTls ? tlsOptions(source, host) : undefined;
  // With tlsOptions ldapts connects with TLS from the start: give them only for ldaps://.
  const client = new Client({
    url: source.url,
    timeout: source.timeoutMs,
    connectTimeout: source.timeoutMs,
    ...(secure ? { tlsOptions: tls } : {}),
  });
  let phase: Phase = 'connect';
  try {
    if (source.startTls) {
      phase = 'starttls';
      await client.startTLS(tls);
    }
    phase = 'bind';
    await client.bind(source.bindDn, password);
  } catch (error) {
    await client.unbind().catch(() => undefined);
    throw translate(error, source, phase);
  }
  const pages = client.searchPaginated(source.baseDn, {
    scope: source.scope,
    filter,
    attributes: [...plan.attributes],
    explicitBufferAttributes: plan.idAttribute === 'objectGUID' ? ['objectGUID', 'objectguid', 'OBJECTGUID'] : [],
    paged: { pageSize: source.pageSize },
  });
  return { fingerprint, client, pages, buffer: [], index: 0, consumed: 0, done: false, busy: false };
}

type Phase = 'connect' | 'starttls' | 'bind' | 'search';

/** A failure retrying may fix (the server is down, slow or went away), already worded for the operator. */
class LdapUnavailable extends Error {
  override readonly name = 'LdapUnavailable';
}

/** Active Directory's reasons for result 49, from the `data NNN` of its diagnostic message. */
const AD_BIND_REASONS: Record<string, string> = {
  '525': 'user not found',
  '52e': 'invalid credentials',
  '530': 'logon not permitted at this time',
  '531': 'logon not permitted from this workstation',
  '532': 'password expired',
  '533': 'account disabled',
  '701': 'account expired',
  '773': 'password must be reset',
  '775': 'account locked',
};

/**
 * Turns what ldapts or the network threw into a PermanentError (retrying cannot help: wrong
 * credentials, a wrong base DN, missing rights, an untrusted certificate) or an ordinary Error
 * (the server is down, slow or went away: Temporal retries the activity and the cursor resumes).
 * Messages name the source and the URL, never the password.
 */
function translate(error: unknown, source: LdapSourceConfig, phase: Phase): Error {
  if (error instanceof PermanentError || error instanceof LdapUnavailable) return error;
  const of = `(source "${source.name}")`;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof ResultCodeError) {
    const permanent = (kind: string, text: string) => new PermanentError(kind, `${text} ${of}`);
    switch (error.code) {
      case 49: {
        const reason = AD_BIND_REASONS[/data ([0-9a-f]{3})/i.exec(message)?.[1]?.toLowerCase() ?? ''];
        const detail = reason && reason !== 'invalid credentials' ? ` (Active Directory: ${reason})` : '';
        return permanent('SourceCredentials', `LDAP bind as ${source.bindDn} to ${source.url} failed: invalid credentials${detail}`);
      }
      case 32:
        return permanent(
          'SourceConfiguration',
          `LDAP search on ${source.url} failed: the baseDn ${source.baseDn} does not exist (or ${source.bindDn} may not see it)`,
        );
      case 34:
        return permanent('SourceConfiguration', `LDAP ${phase} on ${source.url} failed: invalid DN syntax (bindDn ${source.bindDn}, baseDn ${source.baseDn})`);
      case 50:
        return permanent('SourceAccess', `LDAP ${phase} on ${source.url} failed: ${source.bindDn} has insufficient access rights to ${source.baseDn}`);
      case 4:
        return permanent(
          'SourceConfiguration',
          `LDAP search on ${source.url} stopped at the server's size limit although it is paged: allow ${source.bindDn} unlimited paged results ` +
            `(OpenLDAP: limits dn.exact="${source.bindDn}" size.prtotal=unlimited)`,
        );
      case 7:
      case 8:
      case 13:
        return permanent(
          'SourceConfiguration',
          `LDAP ${phase} on ${source.url} refused: the server requires a stronger authentication or an encrypted connection (use ldaps:// or startTls): ${message}`,
        );
      case 12:
        return permanent('SourceConfiguration', `LDAP search on ${source.url} failed: the server does not support paged results (RFC 2696): ${message}`);
      case 48:
      case 53:
        if (phase === 'bind') return permanent('SourceCredentials', `LDAP bind as ${source.bindDn} to ${source.url} refused: ${message}`);
        break;
      case 2:
        if (phase === 'starttls') return permanent('SourceConfiguration', `StartTLS on ${source.url} refused by the server: ${message}`);
        break;
    }
    return new LdapUnavailable(`LDAP ${phase} on ${source.url} failed ${of}: ${message}`, { cause: error });
  }
  const code = untrustedCertificate(error);
  if (code !== undefined) {
    return new PermanentError(
      'SourceConfiguration',
      `TLS to ${source.url} failed: the server's certificate is not trusted (${code}: ${message}); ` +
        `set caFile to the CA certificate that issued it ${of}`,
    );
  }
  // Network trouble: refused, unreachable, timed out, closed mid-search.
  const what = phase === 'search' ? 'the search' : phase === 'starttls' ? 'StartTLS' : phase === 'bind' ? 'connecting and binding' : 'connecting';
  return new LdapUnavailable(`LDAP server ${source.url} failed during ${what} ${of}: ${message.replace(/\s+/g, ' ')}`, { cause: error });
}

function textValues(value: Entry[string]): string[] | null {
  const values = Array.isArray(value) ? value : [value];
  if (values.some((v) => typeof v !== 'string')) return null; // not UTF-8: binary
  return (values as string[]).map((v) => v.normalize('NFC'));
}

type Converted =
  | { record: RawRecord; stamp: string | null }
  | { problem: { at: string; message: string }; stamp: string | null };

/** One LDAP entry as a record: mapped textual attributes, `externalId`, and the entry copy. */
function convert(entry: Entry, plan: Plan, source: LdapSourceConfig): Converted {
  const dn = entry.dn;
  const found = new Map<string, Entry[string]>();
  for (const [description, value] of Object.entries(entry)) {
    if (description === 'dn') continue;
    // Only the attributes asked for, under the map's spelling; subtypes (`cn;lang-de`) are left out.
    const name = plan.spelling.get(description.toLowerCase());
    if (name !== undefined) found.set(name, value);
  }

  let externalId: string | null = null;
  let stamp: string | null = null;
  let disabled: string | undefined;
  const attributes: Record<string, string | string[]> = {};
  const copy: Record<string, string | string[]> = { dn };
  for (const name of plan.attributes) {
    const value = found.get(name);
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
    const lower = name.toLowerCase();
    if (lower === plan.idAttribute.toLowerCase()) {
      const first = Array.isArray(value) ? value[0] : value;
      if (plan.idAttribute === 'objectGUID') {
        const bytes = typeof first === 'string' ? Buffer.from(first, 'utf8') : first;
        if (bytes?.length === 16) externalId = formatObjectGuid(bytes);
      } else if (typeof first === 'string' && first.trim() !== '') {
        externalId = first.trim().toLowerCase();
      }
    }
    if (isBinaryAttribute(lower)) continue;
    const texts = textValues(value);
    if (texts === null || texts.length === 0) continue;
    const text = texts.length === 1 ? texts[0]! : texts;
    if (lower === plan.watermarkAttribute.toLowerCase()) stamp = texts[0]!;
    if (lower === plan.stateAttribute.toLowerCase()) disabled = disabledBecause(plan.stateAttribute, texts);
    copy[name] = text;
    // The id and the change marker are not user data: a marker that moves on with every change
    // (logon times move uSNChanged) would make every record look changed.
    if (plan.mapped.has(lower)) attributes[name] = text;
  }
  if (externalId === null) {
    const what = plan.idAttribute === 'objectGUID' ? 'no 16-byte objectGUID' : `no ${plan.idAttribute}`;
    return { problem: { at: dn, message: `${what} (the stable external id) in the entry: is it readable by ${source.bindDn}?` }, stamp: null };
  }
  return { record: { at: dn, attributes: { ...attributes, externalId }, entry: copy, ...(disabled ? { disabled } : {}) }, stamp };
}

function fingerprintOf(source: LdapSourceConfig, plan: Plan, filter: string): string {
  return JSON.stringify([source.url, source.bindDn, source.baseDn, source.scope, filter, plan.attributes, source.pageSize, source.startTls, source.caFile ?? null]);
}

/** The live search for a cursor, if it is here, idle, alive and at the cursor's position. */
function resume(cursor: LdapCursor | null, fingerprint: string): LiveSearch | null {
  if (!cursor) return null;
  const search = live.get(cursor.searchId);
  if (!search) return null;
  if (search.fingerprint !== fingerprint || search.busy || !search.client.isConnected || search.consumed !== cursor.delivered) {
    // A retried call after a lost answer, a concurrent attempt or a dropped connection: start over.
    evict(cursor.searchId, search);
    return null;
  }
  if (search.timer) clearTimeout(search.timer);
  return search;
}

/**
 * Reads the next page of up to `pageSize` entries (records and problems together) of an LDAP
 * source. The first call (cursor null) binds and starts an RFC 2696 paged search of
 * `source.pageSize` entries per server page, so a server's size limit does not truncate it;
 * later calls continue it. With `options.watermark` only entries changed since are read
 * (`modifyTimestamp>=` or `uSNChanged>=`: with >=, entries changed in the same second as the last
 * sync's newest are read again, which is harmless because imports are idempotent; > could miss
 * changes made later within that second). The last page (next null) carries the new watermark:
 * the highest value among the delivered entries, else the incoming one. Once a search has started,
 * its cursor's `since` decides the filter, not `options.watermark`.
 *
 * uSNChanged is a per-domain-controller counter: point an Active Directory source at one DC.
 */
export async function readLdapPage(
  source: LdapSourceConfig,
  cursor: LdapCursor | null,
  pageSize: number,
  options: LdapReadOptions = {},
): Promise<LdapPage> {
  const plan = planFor(source);
  const password = bindPassword(source, options.env ?? process.env);
  const since = cursor ? cursor.since : incomingSince(plan, options.watermark);
  const filter = filterFor(source, plan, since);
  const fingerprint = fingerprintOf(source, plan, filter);
  const searchId = cursor?.searchId ?? randomUUID();
  const limit = Math.max(1, Math.floor(pageSize));

  let delivered = cursor?.delivered ?? 0;
  let highest = cursor?.highest ?? null;
  const started =
    plan.watermarkKind !== 'time'
      ? undefined
      : (cursor?.started ?? new Date(Date.now() - (options.watermarkMarginMs ?? 5 * 60_000)).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z');
  const records: RawRecord[] = [];
  const problems: LdapPage['problems'] = [];

  let search = resume(cursor, fingerprint);
  let resumed = search !== null;
  for (;;) {
    try {
      if (!search) {
        search = await openSearch(source, plan, filter, password, fingerprint);
        search.busy = true;
        live.set(searchId, search);
        // Fast-forward a restarted search to where the cursor stood.
        while (search.consumed < delivered) {
          if ((await nextEntry(search, options.heartbeat)) === null) break;
        }
        // Entries added or deleted meanwhile may have shifted that position: an entry may have been
        // skipped. Fine for imports; but such a read must not tell a delete sync who left.
        if (delivered > 0) problems.push({ at: `search of ${source.baseDn}`, message: RESTARTED_SEARCH });
      }
      search.busy = true;
      while (records.length + problems.length < limit) {
        const entry = await nextEntry(search, options.heartbeat);
        if (entry === null) break;
        delivered++;
        const converted = convert(entry, plan, source);
        if ('record' in converted) records.push(converted.record);
        else problems.push(converted.problem);
        if (converted.stamp !== null && (highest === null || compareWatermarkValues(plan.watermarkKind, converted.stamp, highest) > 0)) {
          highest = converted.stamp;
        }
      }
      const done = await exhausted(search, options.heartbeat);
      if (done) {
        evict(searchId, search);
        let value = highest ?? since;
        // Not past the read's start: what changed while it ran is read again next time (but
        // never back before the watermark this read started from).
        if (highest !== null && started !== undefined && compareWatermarkValues(plan.watermarkKind, highest, started) > 0) {
          value = since !== null && compareWatermarkValues(plan.watermarkKind, since, started) > 0 ? since : started;
        }
        return {
          records,
          problems,
          next: null,
          watermark: value === null ? null : { attribute: plan.watermarkAttribute, value },
        };
      }
      search.busy = false;
      const idle = search;
      search.timer = setTimeout(() => evict(searchId, idle), IDLE_MS);
      search.timer.unref();
      return { records, problems, next: { searchId, delivered, since, highest, ...(started ? { started } : {}) }, watermark: null };
    } catch (error) {
      if (search) evict(searchId, search);
      const translated = translate(error, source, 'search');
      // A search kept from an earlier call may have lost its connection or its cookie: start over
      // once, from where this call stands, before reporting a failure.
      if (resumed && !(translated instanceof PermanentError)) {
        resumed = false;
        search = null;
        continue;
      }
      throw translated;
    }
  }
}

/*
 * The LDAP / Active Directory write-back target (SPEC §4, COmanage Registry's LDAP provisioner).
 *
 * entry `user`: the user already has an entry in the directory (usually the one they were read
 * from). It is found by its stable id (entryUUID, AD's objectGUID), so a renamed or moved entry is
 * still found, and only the attributes this target owns (the keys of the fields) are written.
 *
 * entry `managed`: flowthru keeps entries of its own under baseDn, named `<rdnAttribute>=<value>`.
 * Once created an entry is found by its entryUUID (remembered as the remote id), so a new RDN value
 * renames it; an entry already at the DN (a lost response, lost memory) is adopted, never doubled.
 *
 * Every push reads before it writes and writes only what differs: a repeated push changes nothing.
 * A push binds a connection of its own, and gives it back to a small pool when it is done, so a
 * sync that pushes thousands of users does not connect and bind thousands of times. A pooled
 * connection the server dropped while it sat idle costs nothing: a push whose reused connection
 * fails for a transport reason runs again, once, on a fresh one (a push converges: running it
 * twice is safe).
 */

import type { ConnectionOptions } from 'node:tls';
import { Attribute, Change, Client, EqualityFilter, ResultCodeError, type Entry, type Filter } from 'ldapts';
import type { LdapTargetConfig } from '../../domain/config/schema.js';
import { ldapTlsOptions, untrustedCertificate } from '../tls.js';
import { escapeDnValue, escapeFilterValue, formatObjectGuid, parseObjectGuid } from '../sources/ldap-escape.js';
import { TargetError, type PushResult, type TargetFields, type TargetPlugin, type TargetPush } from './types.js';

export type { LdapTargetConfig } from '../../domain/config/schema.js';

/** The target with its kind-specific defaults filled in (left unset in the configuration so validate can tell a setting that does nothing). */
type Ldap = LdapTargetConfig & { readonly idAttribute: string; readonly rdnAttribute: string; readonly objectClasses: readonly string[] };

export const LDAP_TARGET_DEFAULTS = { idAttribute: 'entryUUID', rdnAttribute: 'uid', objectClasses: ['inetOrgPerson'] } as const;

type Operation = 'bind' | 'starttls' | 'search' | 'add' | 'modify' | 'rename' | 'delete';

/** One push's bound connection and what error messages say about it. */
interface Session {
  readonly config: Ldap;
  readonly push: TargetPush;
  readonly client: Client;
}

/** LDAP result codes by name (RFC 4511 §4.1.9), for messages an operator can look up. */
const RESULT_NAMES: Readonly<Record<number, string>> = {
  1: 'operationsError',
  2: 'protocolError',
  3: 'timeLimitExceeded',
  4: 'sizeLimitExceeded',
  7: 'authMethodNotSupported',
  8: 'strongerAuthRequired',
  10: 'referral',
  11: 'adminLimitExceeded',
  13: 'confidentialityRequired',
  16: 'noSuchAttribute',
  17: 'undefinedAttributeType',
  18: 'inappropriateMatching',
  19: 'constraintViolation',
  20: 'attributeOrValueExists',
  21: 'invalidAttributeSyntax',
  32: 'noSuchObject',
  34: 'invalidDNSyntax',
  48: 'inappropriateAuthentication',
  49: 'invalidCredentials',
  50: 'insufficientAccessRights',
  51: 'busy',
  52: 'unavailable',
  53: 'unwillingToPerform',
  54: 'loopDetect',
  64: 'namingViolation',
  65: 'objectClassViolation',
  66: 'notAllowedOnNonLeaf',
  67: 'notAllowedOnRDN',
  68: 'entryAlreadyExists',
  69: 'objectClassModsProhibited',
  80: 'other',
};

/** Refusals that the same push meets again however often it is retried, by the kind they are reported as. */
const PERMANENT: Readonly<Record<number, string>> = {
  7: 'Configuration',
  8: 'Configuration',
  10: 'Configuration',
  13: 'Configuration',
  17: 'SchemaViolation',
  18: 'SchemaViolation',
  19: 'ConstraintViolation',
  21: 'SchemaViolation',
  34: 'InvalidDn',
  48: 'Unauthorized',
  49: 'Unauthorized',
  50: 'Forbidden',
  64: 'SchemaViolation',
  65: 'SchemaViolation',
  66: 'Conflict',
  67: 'SchemaViolation',
  68: 'Conflict',
  69: 'SchemaViolation',
};

/** The operation, as an error message names it. */
function what(session: Pick<Session, 'config'>, operation: Operation, dn: string): string {
  const { config } = session;
  if (operation === 'bind') return `bind as ${config.bindDn} to ${config.url}`;
  if (operation === 'starttls') return `StartTLS with ${config.url}`;
  return `${operation} of ${dn} on ${config.url}`;
}

/**
 * Turns what ldapts or the network threw into a TargetError: permanent for what retrying cannot
 * fix (credentials, rights, schema, configuration), retryable for a server that is down, busy,
 * slow or went away. Messages name the target, the operation, the DN and the LDAP result, never
 * the password (ldapts never puts it into an error).
 */
function translate(error: unknown, session: Pick<Session, 'config' | 'push'>, operation: Operation, dn: string): TargetError {
  if (error instanceof TargetError) return error;
  const prefix = `LDAP target "${session.push.target}": ${what(session, operation, dn)} failed`;
  const message = (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').trim();
  if (error instanceof ResultCodeError) {
    // ldapts appends " Code: 0x41"; a server without a diagnostic message leaves only that.
    const diagnostic = message.replace(/\s*Code: 0x[0-9a-f]+$/i, '').trim();
    const result = `${RESULT_NAMES[error.code] ?? 'result'} (${error.code})${diagnostic ? `: ${diagnostic}` : ''}`;
    if (error.code === 32 && (operation === 'search' || operation === 'add')) {
      // Searches start at baseDn (or at an entry just found) and entries are added under baseDn.
      return new TargetError(`${prefix}: ${result}; does the base ${session.config.baseDn} exist, and may ${session.config.bindDn} see it?`, {
        retryable: false,
        kind: 'NoSuchBase',
        cause: error,
      });
    }
    const kind = PERMANENT[error.code];
    const hint = error.code === 50 ? ` (${session.config.bindDn} lacks the rights)` : '';
    if (kind !== undefined) return new TargetError(`${prefix}: ${result}${hint}`, { retryable: false, kind, cause: error });
    // 16, 20 and 32 on a write: the entry changed or went away since it was read; a retry reads it again.
    const retryKind = error.code === 16 || error.code === 20 || error.code === 32 ? 'Conflict' : 'Unavailable';
    return new TargetError(`${prefix}: ${result}`, { retryable: true, kind: retryKind, cause: error });
  }
  const code = untrustedCertificate(error);
  if (code !== undefined) {
    return new TargetError(`${prefix}: the server's certificate is not trusted (${code}: ${message}); set caFile to the CA certificate that issued it`, {
      retryable: false,
      kind: 'Configuration',
      cause: error,
    });
  }
  // Refused, reset, unreachable, timed out, closed mid-operation.
  return new TargetError(`${prefix}: ${message || 'connection failed'}`, { retryable: true, kind: 'Unavailable', cause: error });
}

function bindPassword(config: Ldap, push: TargetPush, env: NodeJS.ProcessEnv): string {
  const password = env[config.passwordEnv];
  // An empty password would make a simple bind an unauthenticated one (RFC 4513 §5.1.2).
  if (password === undefined || password === '') {
    throw new TargetError(
      `the environment variable ${config.passwordEnv}, which holds the LDAP bind password of target "${push.target}", is ${password === undefined ? 'not set' : 'empty'}`,
      { retryable: false, kind: 'MissingSecret' },
    );
  }
  return password;
}

function tlsOptions(config: Ldap, push: TargetPush, host: string): ConnectionOptions {
  return ldapTlsOptions(
    host,
    config.caFile,
    (reason) => new TargetError(`cannot read caFile ${config.caFile} of LDAP target "${push.target}": ${reason}`, { retryable: false, kind: 'Configuration' }),
  );
}

/** Cancellation ends the push between operations (and the connection, so a pending one ends too). */
function checkpoint(push: TargetPush): void {
  if (push.signal?.aborted) throw new TargetError(`LDAP target "${push.target}": the push was cancelled`, { retryable: true, kind: 'Cancelled' });
  push.heartbeat?.();
}

/** Runs one LDAP operation of a session, translating its failure. */
async function op<T>(session: Session, operation: Operation, dn: string, run: (client: Client) => Promise<T>): Promise<T> {
  checkpoint(session.push);
  try {
    return await run(session.client);
  } catch (error) {
    throw translate(error, session, operation, dn);
  }
}

/** Bound connections of one target, idle between pushes, and those in use (close() ends them all). */
interface Pool {
  readonly idle: { client: Client; since: number }[];
  readonly open: Set<Client>;
}

/** Idle connections kept per target, and for how long: well under the idle timeouts servers use. */
const POOL_SIZE = 8;
const IDLE_MS = 30_000;

/** Connects and binds a new connection. */
async function connect(config: Ldap, push: TargetPush, password: string): Promise<Client> {
  const url = new URL(config.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost';
  const secure = url.protocol === 'ldaps:';
  const tls = secure || config.startTls ? tlsOptions(config, push, host) : undefined;
  // With tlsOptions ldapts connects with TLS from the start: give them only for ldaps://.
  const client = new Client({
    url: config.url,
    timeout: config.timeoutMs,
    connectTimeout: config.timeoutMs,
    ...(secure ? { tlsOptions: tls } : {}),
  });
  const session: Session = { config, push, client };
  try {
    if (config.startTls) await op(session, 'starttls', config.url, (c) => c.startTLS(tls));
    await op(session, 'bind', config.bindDn, (c) => c.bind(config.bindDn, password));
    return client;
  } catch (error) {
    await client.unbind().catch(() => undefined);
    throw error;
  }
}

/** An idle connection still connected and not idle for long, if the pool has one. */
function takeIdle(pool: Pool): Client | undefined {
  const now = Date.now();
  for (let next = pool.idle.pop(); next; next = pool.idle.pop()) {
    if (next.client.isConnected && now - next.since < IDLE_MS) return next.client;
    void next.client.unbind().catch(() => undefined);
  }
  return undefined;
}

/** Runs `work` on a bound connection (a pooled one, else a new one) and gives it back when it succeeded. */
async function withSession<T>(
  config: Ldap,
  push: TargetPush,
  env: NodeJS.ProcessEnv,
  pool: Pool,
  work: (session: Session) => Promise<T>,
): Promise<T> {
  const password = bindPassword(config, push, env);
  checkpoint(push);
  const pooled = takeIdle(pool);
  const client = pooled ?? (await connect(config, push, password));
  const session: Session = { config, push, client };
  const abort = () => void client.unbind().catch(() => undefined);
  push.signal?.addEventListener('abort', abort, { once: true });
  pool.open.add(client);
  let healthy = false;
  try {
    const result = await work(session);
    healthy = true;
    return result;
  } catch (error) {
    // A connection the server dropped while it sat in the pool: the push runs again on a fresh one.
    if (pooled && error instanceof TargetError && error.kind === 'Unavailable' && !push.signal?.aborted) {
      pool.open.delete(client);
      await client.unbind().catch(() => undefined);
      return withSession(config, push, env, { idle: [], open: pool.open }, work);
    }
    throw error;
  } finally {
    push.signal?.removeEventListener('abort', abort);
    pool.open.delete(client);
    if (healthy && client.isConnected && pool.idle.length < POOL_SIZE) pool.idle.push({ client, since: Date.now() });
    else await client.unbind().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Entries and values.

/** An entry's values of one attribute (its name in any case), as text; [] when it has none. */
function valuesOf(entry: Entry, name: string): string[] {
  const lower = name.toLowerCase();
  const key = Object.keys(entry).find((k) => k !== 'dn' && k.toLowerCase() === lower);
  if (key === undefined) return [];
  const value = entry[key]!;
  return (Array.isArray(value) ? value : [value]).map((v) => (typeof v === 'string' ? v : v.toString('utf8')));
}

/**
 * The fields as the values to hold: an empty string is no value, like null, because most LDAP
 * syntaxes have no empty value (a template over a missing attribute renders as "").
 */
function wanted(fields: TargetFields): [string, string | null][] {
  return Object.entries(fields).map(([name, value]) => [name, value === null || value === '' ? null : value]);
}

/** A field's value by attribute name, whatever the case of either. */
function fieldValue(fields: TargetFields | null, name: string): string | null {
  if (!fields) return null;
  const lower = name.toLowerCase();
  const key = Object.keys(fields).find((k) => k.toLowerCase() === lower);
  const value = key === undefined ? null : fields[key]!;
  return value === '' ? null : value;
}

/**
 * The modifications that bring the owned attributes of an entry to the fields: replace what
 * differs, delete what should have no value; nothing for the attributes that already match.
 */
function changesFor(entry: Entry, fields: TargetFields): { changes: Change[]; names: string[] } {
  const changes: Change[] = [];
  const names: string[] = [];
  for (const [name, value] of wanted(fields)) {
    const current = valuesOf(entry, name);
    if (value === null) {
      if (current.length === 0) continue;
      changes.push(new Change({ operation: 'delete', modification: new Attribute({ type: name, values: [] }) }));
    } else {
      if (current.length === 1 && current[0] === value) continue;
      changes.push(new Change({ operation: 'replace', modification: new Attribute({ type: name, values: [value] }) }));
    }
    names.push(name);
  }
  return { changes, names };
}

/** Writes the changes the entry needs, if any; returns the names of the attributes written. */
async function bringTo(session: Session, entry: Entry, fields: TargetFields): Promise<string[]> {
  const { changes, names } = changesFor(entry, fields);
  if (changes.length > 0) await op(session, 'modify', entry.dn, (c) => c.modify(entry.dn, changes));
  return names;
}

/** The index just past an RFC 4514 escape (`\,` or `\2c`) or ordinary character at `i`. */
function skip(text: string, i: number): number {
  if (text[i] !== '\\') return i + 1;
  return /^[0-9a-f]{2}$/i.test(text.slice(i + 1, i + 3)) ? i + 3 : i + 2;
}

/** Splits text at each `separator` that is not escaped. */
function splitUnescaped(text: string, separator: string, limit = Infinity): string[] {
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i < text.length && parts.length < limit - 1; ) {
    if (text[i] === separator) {
      parts.push(text.slice(start, i));
      start = i + 1;
      i++;
    } else {
      i = skip(text, i);
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/** An RFC 4514 attribute value as text: `\,` and `\2C` escapes undone (hex escapes are UTF-8 bytes). */
function unescapeDnValue(text: string): string {
  const bytes: Buffer[] = [];
  for (let i = 0; i < text.length; ) {
    const next = skip(text, i);
    const piece = text.slice(i, next);
    if (piece.length === 3) bytes.push(Buffer.from(piece.slice(1), 'hex'));
    else bytes.push(Buffer.from(piece.length === 2 ? piece[1]! : piece, 'utf8'));
    i = next;
  }
  return Buffer.concat(bytes).toString('utf8');
}

/** A DN's first RDN as its (type, value) pairs, and the DN of its parent. */
function splitDn(dn: string): { pairs: { type: string; value: string }[]; parent: string } {
  const [rdn, parent = ''] = splitUnescaped(dn, ',', 2);
  const pairs = splitUnescaped(rdn!, '+').map((pair) => {
    const [type = '', value = ''] = splitUnescaped(pair, '=', 2);
    return { type: type.trim(), value: unescapeDnValue(value) };
  });
  return { pairs, parent: parent.trim() };
}

/** The filter that finds an entry by its stable id: AD's objectGUID compares as its 16 bytes. */
function idFilter(session: Session, attribute: string, id: string): Filter | string {
  if (attribute.toLowerCase() !== 'objectguid') return `(${attribute}=${escapeFilterValue(id)})`;
  const bytes = parseObjectGuid(id);
  if (bytes === null) {
    throw new TargetError(`LDAP target "${session.push.target}": the id ${JSON.stringify(id)} is not a GUID, so it cannot be an objectGUID`, {
      retryable: false,
      kind: 'InvalidId',
    });
  }
  // Not as `\xx` filter text: ldapts's filter parser turns each `\xx` into a character and sends it
  // UTF-8-encoded, which changes every byte from 0x80 up. A Buffer goes out as the bytes themselves.
  return new EqualityFilter({ attribute, value: bytes });
}

/** The ldapts option that returns an id attribute as bytes (ldapts matches its names case-sensitively). */
function bufferAttributes(attribute: string): string[] {
  return attribute.toLowerCase() === 'objectguid' ? [attribute, 'objectGUID', 'objectguid', 'OBJECTGUID'] : [];
}

/** An entry's stable id as text: a GUID string for objectGUID, else the value in lower case. */
function idOf(entry: Entry, attribute: string): string | null {
  const lower = attribute.toLowerCase();
  const key = Object.keys(entry).find((k) => k.toLowerCase() === lower);
  const raw = key === undefined ? undefined : entry[key];
  const first = Array.isArray(raw) ? raw[0] : raw;
  if (first === undefined) return null;
  if (lower === 'objectguid') return Buffer.isBuffer(first) && first.length === 16 ? formatObjectGuid(first) : null;
  const text = (typeof first === 'string' ? first : first.toString('utf8')).trim().toLowerCase();
  return text === '' ? null : text;
}

/** The one entry under baseDn with this id, or null. */
async function findById(session: Session, attribute: string, id: string, attributes: string[]): Promise<Entry | null> {
  const { baseDn } = session.config;
  const filter = idFilter(session, attribute, id);
  const { searchEntries } = await op(session, 'search', baseDn, (c) =>
    c.search(baseDn, { scope: 'sub', filter, attributes: unique([...attributes, attribute]), explicitBufferAttributes: bufferAttributes(attribute) }),
  );
  if (searchEntries.length > 1) {
    throw new TargetError(
      `LDAP target "${session.push.target}": ${searchEntries.length} entries under ${baseDn} have ${attribute} ${id} (${searchEntries.map((e) => e.dn).join('; ')}); a stable id must name one entry`,
      { retryable: false, kind: 'Ambiguous' },
    );
  }
  return searchEntries[0] ?? null;
}

/** The entry at a DN, or null when there is none. */
async function readAt(session: Session, dn: string, attributes: string[]): Promise<Entry | null> {
  try {
    const { searchEntries } = await op(session, 'search', dn, (c) =>
      c.search(dn, { scope: 'base', filter: '(objectClass=*)', attributes: unique(attributes) }),
    );
    return searchEntries[0] ?? null;
  } catch (error) {
    if (error instanceof TargetError && (error.cause as ResultCodeError | undefined)?.code === 32) return null;
    throw error;
  }
}

function unique(names: string[]): string[] {
  const seen = new Set<string>();
  return names.filter((n) => !seen.has(n.toLowerCase()) && seen.add(n.toLowerCase()));
}

const list = (names: string[]) => names.join(', ');

// ---------------------------------------------------------------------------------------------
// entry: user — the user's own entry.

async function provisionUser(session: Session): Promise<PushResult> {
  const { config, push } = session;
  const id = push.memory.remoteId ?? push.subject.externalId;
  const entry = await findById(session, config.idAttribute, id, Object.keys(push.subject.fields));
  if (!entry) {
    throw new TargetError(
      `LDAP target "${push.target}": no entry with ${config.idAttribute} ${id} under ${config.baseDn} (deleted, or moved out of the base?)`,
      { retryable: false, kind: 'NoSuchEntry' },
    );
  }
  const written = await bringTo(session, entry, push.subject.fields);
  return {
    remoteId: idOf(entry, config.idAttribute) ?? id,
    changed: written.length > 0,
    summary: written.length > 0 ? `modified ${entry.dn}: ${list(written)}` : `unchanged ${entry.dn}`,
  };
}

/**
 * Removes the values this target wrote that the entry still holds. A value someone changed since
 * is theirs now and stays, and so does a value that names the entry (it is part of its DN).
 */
async function deprovisionUser(session: Session): Promise<PushResult> {
  const { config, push } = session;
  const pushed = wanted(push.memory.pushed ?? {}).filter((pair): pair is [string, string] => pair[1] !== null);
  const id = push.memory.remoteId ?? push.subject.externalId;
  const entry = await findById(session, config.idAttribute, id, pushed.map(([name]) => name));
  // The entry is gone (the user left the directory): nothing of ours is left in it.
  if (!entry) return { remoteId: null, changed: false, summary: `no entry with the user's ${config.idAttribute} under ${config.baseDn}: nothing to remove` };
  const naming = splitDn(entry.dn).pairs;
  const changes: Change[] = [];
  const names: string[] = [];
  for (const [name, value] of pushed) {
    if (!valuesOf(entry, name).includes(value)) continue;
    if (naming.some((p) => p.type.toLowerCase() === name.toLowerCase() && p.value === value)) continue;
    // Deleting the value, not the attribute: a value added beside it meanwhile stays, and if ours
    // went in the meantime the server refuses (noSuchAttribute) and the retry reads again.
    changes.push(new Change({ operation: 'delete', modification: new Attribute({ type: name, values: [value] }) }));
    names.push(name);
  }
  if (changes.length === 0) return { remoteId: null, changed: false, summary: `nothing to remove from ${entry.dn}` };
  await op(session, 'modify', entry.dn, (c) => c.modify(entry.dn, changes));
  return { remoteId: null, changed: true, summary: `removed ${list(names)} from ${entry.dn}` };
}

// ---------------------------------------------------------------------------------------------
// entry: managed — entries of flowthru's own under baseDn.

/** The naming value of a managed entry: the field named like the RDN attribute. */
function rdnValue(session: Session, fields: TargetFields | null): string {
  const { config, push } = session;
  const value = fieldValue(fields, config.rdnAttribute);
  if (value === null) {
    throw new TargetError(
      `LDAP target "${push.target}": the field ${config.rdnAttribute}, which names the entries under ${config.baseDn} (rdnAttribute), has no value for this user`,
      { retryable: false, kind: 'MissingField' },
    );
  }
  return value;
}

const rdnOf = (config: Ldap, value: string) => `${config.rdnAttribute}=${escapeDnValue(value)}`;

/** Whether the entry's DN is named by the RDN attribute with this value. */
function namedBy(dn: string, attribute: string, value: string): boolean {
  const pairs = splitDn(dn).pairs;
  return pairs.length === 1 && pairs[0]!.type.toLowerCase() === attribute.toLowerCase() && pairs[0]!.value === value;
}

/** Adds the entry; false when one is already there (entryAlreadyExists: adopt it instead). */
async function create(session: Session, dn: string, fields: TargetFields): Promise<boolean> {
  const attributes: Record<string, string[]> = { objectClass: [...session.config.objectClasses] };
  for (const [name, value] of wanted(fields)) if (value !== null && name.toLowerCase() !== 'objectclass') attributes[name] = [value];
  try {
    await op(session, 'add', dn, (c) => c.add(dn, attributes));
    return true;
  } catch (error) {
    if (error instanceof TargetError && (error.cause as ResultCodeError | undefined)?.code === 68) return false;
    throw error;
  }
}

/** The entryUUID of the entry at a DN (an operational attribute: only returned when asked for). */
async function uuidAt(session: Session, dn: string): Promise<string> {
  const entry = await readAt(session, dn, ['entryUUID']);
  const uuid = entry ? idOf(entry, 'entryUUID') : null;
  if (uuid === null) {
    throw new TargetError(`LDAP target "${session.push.target}": cannot read the entryUUID of ${dn}: may ${session.config.bindDn} read it?`, {
      retryable: true,
      kind: 'Unavailable',
    });
  }
  return uuid;
}

async function provisionManaged(session: Session): Promise<PushResult> {
  const { config, push } = session;
  const fields = push.subject.fields;
  const value = rdnValue(session, fields);
  const dn = `${rdnOf(config, value)},${config.baseDn}`;
  const attributes = [...Object.keys(fields), config.rdnAttribute, 'entryUUID'];

  let entry = push.memory.remoteId ? await findById(session, 'entryUUID', push.memory.remoteId, attributes) : null;
  let before = '';
  if (entry && !namedBy(entry.dn, config.rdnAttribute, value)) {
    // Renamed in place: an entry someone moved within baseDn stays where they put it.
    const from = entry.dn;
    const to = `${rdnOf(config, value)},${splitDn(from).parent}`;
    // Only the new RDN: ldapts splits a new DN at its first comma not after a backslash, which is
    // wrong for a value ending in an escaped backslash; an escaped RDN alone has no such comma.
    await op(session, 'rename', `${from} to ${to}`, (c) => c.modifyDN(from, rdnOf(config, value)));
    entry = await readAt(session, to, attributes);
    if (!entry) throw new TargetError(`LDAP target "${push.target}": ${to} vanished right after its rename`, { retryable: true, kind: 'Conflict' });
    before = `renamed ${from} to ${entry.dn}`;
  }
  if (!entry) {
    entry = await readAt(session, dn, attributes);
    if (!entry) {
      if (await create(session, dn, fields)) return { remoteId: await uuidAt(session, dn), changed: true, summary: `created ${dn}` };
      // Added meanwhile by someone else, or by an earlier try whose answer was lost.
      entry = await readAt(session, dn, attributes);
      if (!entry) throw new TargetError(`LDAP target "${push.target}": adding ${dn} found an entry there, which then could not be read: it changed meanwhile`, { retryable: true, kind: 'Conflict' });
    }
    before = `adopted existing ${entry.dn}`;
  }
  const written = await bringTo(session, entry, fields);
  const remoteId = idOf(entry, 'entryUUID') ?? (await uuidAt(session, entry.dn));
  const renamed = before.startsWith('renamed');
  let summary: string;
  if (before === '') summary = written.length > 0 ? `modified ${entry.dn}: ${list(written)}` : `unchanged ${entry.dn}`;
  else summary = written.length > 0 ? `${before}; modified ${list(written)}` : renamed ? before : `${before} (unchanged)`;
  return { remoteId, changed: renamed || written.length > 0, summary };
}

async function deprovisionManaged(session: Session): Promise<PushResult> {
  const { config, push } = session;
  let entry = push.memory.remoteId ? await findById(session, 'entryUUID', push.memory.remoteId, []) : null;
  let where = push.memory.remoteId ? `entryUUID ${push.memory.remoteId}` : '';
  if (!entry) {
    const value = fieldValue(push.subject.fields, config.rdnAttribute) ?? fieldValue(push.memory.pushed, config.rdnAttribute);
    if (value !== null) {
      const dn = `${rdnOf(config, value)},${config.baseDn}`;
      entry = await readAt(session, dn, ['entryUUID']);
      where = dn;
    }
  }
  const gone: PushResult = { remoteId: null, changed: false, summary: `already gone: ${where || `no entry under ${config.baseDn}`}` };
  if (!entry) return gone;
  const dn = entry.dn;
  try {
    await op(session, 'delete', dn, (c) => c.del(dn));
  } catch (error) {
    if (error instanceof TargetError && (error.cause as ResultCodeError | undefined)?.code === 32) return { ...gone, summary: `already gone: ${dn}` };
    throw error;
  }
  return { remoteId: null, changed: true, summary: `deleted ${dn}` };
}

// ---------------------------------------------------------------------------------------------

/** The LDAP target of one configuration. `env` holds the bind password under `config.passwordEnv`. */
export function createLdapTarget(configured: LdapTargetConfig, env: NodeJS.ProcessEnv = process.env): TargetPlugin {
  const config: Ldap = {
    ...configured,
    idAttribute: configured.idAttribute ?? LDAP_TARGET_DEFAULTS.idAttribute,
    rdnAttribute: configured.rdnAttribute ?? LDAP_TARGET_DEFAULTS.rdnAttribute,
    objectClasses: configured.objectClasses ?? [...LDAP_TARGET_DEFAULTS.objectClasses],
  };
  const pool: Pool = { idle: [], open: new Set() };
  return {
    provision: (push) => withSession(config, push, env, pool, config.entry === 'user' ? provisionUser : provisionManaged),
    async deprovision(push) {
      // A user entry holds nothing of ours before a first push: no need to reach the server.
      if (config.entry === 'user' && !Object.values(push.memory.pushed ?? {}).some((v) => v !== null && v !== '')) {
        return { remoteId: null, changed: false, summary: 'nothing was written: nothing to remove' };
      }
      return withSession(config, push, env, pool, config.entry === 'user' ? deprovisionUser : deprovisionManaged);
    },
    async close() {
      const clients = [...pool.open, ...pool.idle.map((i) => i.client)];
      pool.open.clear();
      pool.idle.length = 0;
      await Promise.all(clients.map((client) => client.unbind().catch(() => undefined)));
    },
  };
}

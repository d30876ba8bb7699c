/*
 * PostgreSQL errors, classified once: is it worth trying again?
 *
 * SQLSTATE's first two characters name its class. A statement refused for what it carries (bad
 * bytes, a value out of range, a constraint) fails the same way however often it is retried: it is
 * permanent, and the record at fault is reported and skipped. A server restarting, a lost
 * connection, a deadlock, a full disk or a missing grant are the environment's problems: they pass,
 * or an operator fixes them, so the same work is retried and succeeds later.
 */

/** SQLSTATE classes where the statement's own data or shape is at fault. */
const PERMANENT_CLASSES = new Map<string, string>([
  ['21', 'cardinality violation'],
  ['22', 'data exception'],
  ['23', 'integrity constraint violation'],
  ['2F', 'SQL routine exception'],
  ['42', 'syntax error or access rule violation'],
  ['44', 'WITH CHECK OPTION violation'],
  ['54', 'program limit exceeded'],
  ['0A', 'feature not supported'],
  ['P0', 'PL/pgSQL error'],
]);

/** Codes of a permanent class that an operator fixes without touching the data: retried. */
const TRANSIENT_CODES = new Set([
  '42501', // insufficient_privilege: a GRANT fixes it
  '42P01', // undefined_table: a database not migrated yet
]);

/** Operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now). */
const RESTARTING = /^57P0[123]$/;

export type DatabaseErrorClass = 'transient' | 'permanent';

/** The SQLSTATE of a pg error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Whether retrying can help. Errors without a SQLSTATE (a refused or reset connection, a timeout)
 * are transient; an error that is not from the database at all is left to the caller (null).
 */
export function classifyDatabaseError(error: unknown): DatabaseErrorClass | null {
  const code = sqlState(error);
  if (code === undefined) {
    const errno = (error as { code?: unknown } | null)?.code;
    if (typeof errno === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN)$/.test(errno)) return 'transient';
    if (error instanceof Error && /Connection terminated|connection timeout|timeout exceeded when trying to connect/i.test(error.message)) return 'transient';
    return null;
  }
  if (TRANSIENT_CODES.has(code)) return 'transient';
  return PERMANENT_CLASSES.has(code.slice(0, 2)) ? 'permanent' : 'transient';
}

export function isPermanentDatabaseError(error: unknown): boolean {
  return classifyDatabaseError(error) === 'permanent';
}

/**
 * A refusal of the data one record carries (bad bytes, a value out of range or too large, a
 * constraint): the record is at fault, not the statement. A malformed statement (class 42) is a
 * bug, and must fail loudly rather than be blamed on every record it touched.
 */
export function isRecordDatabaseError(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && ['22', '23', '54'].includes(code.slice(0, 2));
}

/** `invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021, data exception)` */
export function describeDatabaseError(error: unknown): string {
  const code = sqlState(error);
  const message = error instanceof Error ? error.message : String(error);
  if (!code) return message;
  const kind = PERMANENT_CLASSES.get(code.slice(0, 2));
  return `${message} (SQLSTATE ${code}${kind ? `, ${kind}` : ''})`;
}

/**
 * One sentence for a person when the database cannot be used at all, or null when the error is
 * something else: the CLI prints this instead of a driver's message.
 */
export function databaseUnavailableMessage(error: unknown, where?: string): string | null {
  const at = where ? ` at ${where}` : '';
  const code = sqlState(error);
  const errno = (error as { code?: unknown } | null)?.code;
  if (code && RESTARTING.test(code)) {
    return `the database${at} restarted or is shutting down (${(error as Error).message}); try again in a moment`;
  }
  if (code === '3D000') return null;
  // 28000 (no such role, or pg_hba refuses it), 28P01 (a wrong password).
  if (code === '28000' || code === '28P01') {
    return `the database${at} refused the login: ${(error as Error).message}; check the user and password in DATABASE_URL`;
  }
  const hostname = (error as { hostname?: unknown }).hostname;
  if (errno === 'ENOTFOUND' && typeof hostname === 'string') return `the database host "${hostname}" is not known (ENOTFOUND): check the host in DATABASE_URL`;
  if (errno === 'EAI_AGAIN' && typeof hostname === 'string') return `the database host "${hostname}" cannot be looked up now (EAI_AGAIN: DNS); try again, or check DATABASE_URL`;
  if (errno === 'ECONNREFUSED' || errno === 'ECONNRESET' || errno === 'ETIMEDOUT' || errno === 'EHOSTUNREACH' || errno === 'ENOTFOUND' || errno === 'EAI_AGAIN') {
    return `the database${at} is unreachable (${String(errno)}): is PostgreSQL running? check DATABASE_URL`;
  }
  if (error instanceof Error && /Connection terminated/i.test(error.message)) {
    return `the database${at} closed the connection (it restarted or is unreachable); try again in a moment`;
  }
  return null;
}

/** What is wrong with a DATABASE_URL before anything connects to it; null when it is a PostgreSQL URL. */
export function databaseUrlProblem(url: string): string | null {
  const example = 'postgres://user@host:5432/database';
  // pg's own forms for a Unix socket: "/var/run/postgresql dbname" and socket:/path?db=name;
  // postgres://user@/db?host=/path has no host for URL to parse, so only the scheme is checked.
  if (url.startsWith('/')) return null;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return `DATABASE_URL is not a URL: expected ${example}`;
  if (!['postgres', 'postgresql', 'socket'].includes(scheme)) return `DATABASE_URL names ${scheme}:, not PostgreSQL: expected ${example}`;
  return null;
}

/** host:port of a DATABASE_URL, for messages (never its user or password); undefined when it names none. */
export function databaseAddress(url: string): string | undefined {
  try {
    const { hostname, port, searchParams } = new URL(url);
    // ?host= overrides the URL's host (a socket directory, or a host name).
    const host = searchParams.get('host') ?? hostname;
    if (host === '' || host.startsWith('/')) return undefined;
    return `${host}:${port || '5432'}`;
  } catch {
    return undefined;
  }
}

import { describe, expect, it } from 'vitest';
import { classifyDatabaseError, databaseAddress, databaseUnavailableMessage, databaseUrlProblem, describeDatabaseError, isRecordDatabaseError } from '../../src/adapters/db/errors.js';

const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('database errors are classified once, by SQLSTATE class', () => {
  it.each([
    ['22021', 'permanent'], // invalid byte sequence (a NUL byte)
    ['22003', 'permanent'], // numeric value out of range
    ['22P05', 'permanent'], // untranslatable character (\u0000 in jsonb)
    ['23505', 'permanent'], // unique violation
    ['23503', 'permanent'], // foreign key violation
    ['54000', 'permanent'], // program limit exceeded (index row too large)
    ['57P01', 'transient'], // admin shutdown: the server restarts
    ['57P03', 'transient'], // cannot connect now: starting up
    ['08006', 'transient'], // connection failure
    ['40001', 'transient'], // serialization failure
    ['40P01', 'transient'], // deadlock
    ['53300', 'transient'], // too many connections
    ['55P03', 'transient'], // lock not available
    ['25006', 'transient'], // read-only transaction: a standby after failover
    ['42501', 'transient'], // insufficient privilege: a GRANT fixes it
    ['XX000', 'transient'],
  ])('SQLSTATE %s is %s', (code, expected) => {
    expect(classifyDatabaseError(pgError(code))).toBe(expected);
  });

  it('network errors are transient; anything else is not the database', () => {
    expect(classifyDatabaseError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe('transient');
    expect(classifyDatabaseError(new Error('Connection terminated unexpectedly'))).toBe('transient');
    expect(classifyDatabaseError(new TypeError('x is undefined'))).toBeNull();
  });

  it('says what was refused, and a restart or outage in one sentence', () => {
    expect(describeDatabaseError(pgError('22021', 'invalid byte sequence for encoding "UTF8": 0x00'))).toBe(
      'invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021, data exception)',
    );
    expect(databaseUnavailableMessage(pgError('57P01', 'terminating connection due to administrator command'))).toMatch(/^the database restarted/);
    expect(databaseUnavailableMessage(pgError('57P03', 'the database system is shutting down'))).toMatch(/restarted or is shutting down/);
    expect(databaseUnavailableMessage(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toMatch(/unreachable/);
    expect(databaseUnavailableMessage(pgError('23505'))).toBeNull();
    expect(databaseUnavailableMessage(pgError('28P01', 'password authentication failed for user "app"'), 'db:5432')).toBe(
      'the database at db:5432 refused the login: password authentication failed for user "app"; check the user and password in DATABASE_URL',
    );
    expect(databaseUnavailableMessage(Object.assign(new Error('getaddrinfo ENOTFOUND dbhost'), { code: 'ENOTFOUND', hostname: 'dbhost' }))).toBe(
      'the database host "dbhost" is not known (ENOTFOUND): check the host in DATABASE_URL',
    );
  });

  it('checks DATABASE_URL before connecting, and names its address without the credentials', () => {
    const sockets = ['postgres:///flowthru?host=/var/run/postgresql', 'postgres://app:secret@/flowthru?host=/var/run/postgresql', 'socket:/var/run/postgresql?db=x', '/var/run/postgresql flowthru'];
    for (const fine of ['postgres://u:p@db:5433/x', 'postgresql://db/x', 'POSTGRES://db/x', ...sockets]) {
      expect(databaseUrlProblem(fine), fine).toBeNull();
    }
    expect(databaseUrlProblem('db:5432/flowthru')).toMatch(/^DATABASE_URL names db:, not PostgreSQL/);
    expect(databaseUrlProblem('')).toMatch(/^DATABASE_URL is not a URL/);
    expect(databaseAddress('postgres://u:secret@db.example:5433/x')).toBe('db.example:5433');
    expect(databaseAddress('postgres://db.example/x')).toBe('db.example:5432');
    expect(databaseAddress('postgres:///x?host=/var/run/postgresql')).toBeUndefined();
    expect(databaseAddress('postgres://u@db.example:5433/x?host=other.example')).toBe('other.example:5433');
  });

  it('blames a record only for what it carries: a malformed statement is a bug, not 39 bad records', () => {
    for (const code of ['22021', '22003', '23505', '23514', '54000']) expect(isRecordDatabaseError(pgError(code)), code).toBe(true);
    // Seen: a boolean parameter sent untyped made every page's statement fail with 42804, and
    // the import reported every record as refused instead of failing loudly.
    for (const code of ['42804', '42601', '42P01', '57P01', '40001']) expect(isRecordDatabaseError(pgError(code)), code).toBe(false);
    expect(isRecordDatabaseError(new Error('no code'))).toBe(false);
  });
});

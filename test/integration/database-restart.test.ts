import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfigFile } from '../../src/adapters/config-file.js';
import { applyConfig } from '../../src/adapters/db/config-store.js';
import { createDatabase } from '../../src/adapters/db/connection.js';
import { migrateToLatest } from '../../src/adapters/db/migrate.js';
import type { Database } from '../../src/adapters/db/schema.js';
import { SmtpSink } from '../../src/adapters/mail/sink.js';
import { dataConverterFromEnv } from '../../src/adapters/temporal/data-converter.js';
import { main } from '../../src/client/cli.js';
import { startSync } from '../../src/client/sync.js';
import { acmeCsv, oneSiteCustomer } from '../support/pipeline.js';
import { PrivatePostgres } from '../support/private-postgres.js';

/*
 * "A database restart delays users, it never fails them": a PostgreSQL of this test's own is
 * restarted (fast shutdown: every session ends with 57P01) while a worker process syncs, and the
 * same worker process must finish the sync with every invariant holding.
 */

const USERS = 150;
const taskQueue = `pg-restart-${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'flowthru-pg-restart-'));
let pgServer: PrivatePostgres;
let db: Kysely<Database>;
let url: string;
let client: Client;
const smtp = new SmtpSink();
let worker: ChildProcess | undefined;
let workerOutput = '';

beforeAll(async () => {
  pgServer = await PrivatePostgres.start();
  const admin = createDatabase(pgServer.url(), { max: 1 });
  await sql`create database flowthru_restart`.execute(admin);
  await admin.destroy();
  url = pgServer.url('flowthru_restart');
  db = createDatabase(url, { max: 4 });
  await migrateToLatest(db);
  await smtp.start(0);
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }), dataConverter: dataConverterFromEnv() });
}, 180_000);

afterAll(async () => {
  worker?.kill('SIGKILL');
  await db?.destroy();
  await client?.connection.close();
  await smtp.stop();
  await pgServer?.stop();
});

async function startWorkerProcess(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/worker-process.ts'], {
    env: { ...process.env, DATABASE_URL: url, TEMPORAL_ADDRESS: inject('temporalAddress'), FLOWTHRU_TASK_QUEUE: taskQueue, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.on('data', (chunk: Buffer) => (workerOutput += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`worker process exited early (${code}): ${workerOutput}`)));
  });
  return child;
}

const count = async (status: string) =>
  Number(
    (
      await db
        .selectFrom('users')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('status', '=', status as never)
        .executeTakeFirstOrThrow()
    ).n,
  );

describe('a PostgreSQL restart in the middle of a sync', () => {
  it('a connection checked out of the pool when the server restarts does not end the process', async () => {
    // The case the outside test hit: a client inside a transaction, between two statements, has no
    // pool listener; the server's 57P01 arrives as an 'error' event on it.
    const pool = createDatabase(url, { max: 2 });
    try {
      const failed = await pool
        .transaction()
        .execute(async (tx) => {
          await sql`select 1`.execute(tx);
          await pgServer.restart();
          await new Promise((resolve) => setTimeout(resolve, 200));
          await sql`select 2`.execute(tx);
        })
        .then(
          () => null,
          (error: unknown) => error,
        );
      expect(failed).toBeInstanceOf(Error);
      // The pool discards the broken connection and the next query connects anew.
      expect((await sql<{ n: number }>`select 3 as n`.execute(pool)).rows[0]?.n).toBe(3);
    } finally {
      await pool.destroy();
    }
  });

  it('delays users and fails none: the same worker process finishes the sync', async () => {
    const csv = join(dir, 'hr.csv');
    writeFileSync(
      csv,
      acmeCsv(Array.from({ length: USERS }, (_, i) => ({ employee_id: `r${i}`, login: `r${i}`, mail: `r${i}@example.com`, given_name: `R${i}` }))),
    );
    const configFile = join(dir, 'config.yaml');
    writeFileSync(
      configFile,
      stringify({ version: 1, customers: [oneSiteCustomer('restart', { csvPath: csv, smtpPort: smtp.port, range: { from: '5000', to: '5999' } })] }),
    );
    const loaded = await loadConfigFile(configFile);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const { version } = await applyConfig(db, loaded.config);

    worker = await startWorkerProcess();
    const handle = await startSync(client, { customer: 'restart', source: 'hr', mode: 'add', configVersion: version, taskQueue, window: 50, pageSize: 40 });
    await expect.poll(() => count('provisioned'), { timeout: 60_000, interval: 100 }).toBeGreaterThanOrEqual(20);
    await pgServer.restart();
    expect(await count('provisioned')).toBeLessThan(USERS);

    const report = await handle.result();
    expect(worker.exitCode, `the worker process died: ${workerOutput}`).toBeNull();
    expect(report.counts).toMatchObject({ seen: USERS, imported: USERS, provisioned: USERS, failed: 0, blocked: 0 });
    expect(await count('provisioned')).toBe(USERS);

    // Every invariant: one number per user, no number twice, the inventory agrees with its holders.
    const held = await db.selectFrom('number_inventory').select(['number', 'user_id', 'status']).where('user_id', 'is not', null).execute();
    expect(held).toHaveLength(USERS);
    expect(held.every((n) => n.status === 'used')).toBe(true);
    expect(new Set(held.map((n) => n.user_id)).size).toBe(USERS);
    expect(new Set(held.map((n) => n.number)).size).toBe(USERS);
    // One welcome per user (a resend across the restart would carry the same Message-ID).
    const ids = new Set(smtp.messages.map((m) => m.messageId));
    expect(ids.size).toBe(USERS);
    const outbox = await db.selectFrom('email_outbox').select('status').execute();
    expect(outbox.filter((m) => m.status === 'sent')).toHaveLength(USERS);
  });

  it('a worker started before PostgreSQL or Temporal is up waits for each, saying why, and starts when they are', async () => {
    const boot = (env: Record<string, string>) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/worker-process.ts'], {
        env: { ...process.env, DATABASE_URL: url, TEMPORAL_ADDRESS: inject('temporalAddress'), FLOWTHRU_TASK_QUEUE: `${taskQueue}-boot`, LOG_LEVEL: 'warn', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const seen = { output: '', exit: null as number | null };
      child.stdout!.on('data', (chunk: Buffer) => (seen.output += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (seen.output += chunk.toString()));
      child.once('exit', (code) => (seen.exit = code));
      return { child, seen };
    };
    const messages = (output: string) => output.split('\n').flatMap((line) => (line.startsWith('{') ? [(JSON.parse(line) as { msg: string }).msg] : []));

    // PostgreSQL down: the worker waits, says why, and starts once it is back.
    await pgServer.pause();
    const first = boot({});
    try {
      await expect.poll(() => messages(first.seen.output).join('\n'), { timeout: 20_000 }).toMatch(/the database at 127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\): is PostgreSQL running\? check DATABASE_URL; the worker tries again in \d+ s/);
      expect(first.seen.exit).toBeNull();
      await pgServer.resume();
      await expect.poll(() => first.seen.output, { timeout: 60_000 }).toContain('ready');
    } finally {
      first.child.kill('SIGTERM');
      await expect.poll(() => first.seen.exit, { timeout: 30_000 }).toBe(0);
    }

    // Temporal not there: the same, and SIGTERM during the wait stops it at once.
    const { createServer } = await import('node:net');
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    const second = boot({ TEMPORAL_ADDRESS: `127.0.0.1:${port}` });
    await expect.poll(() => messages(second.seen.output).join('\n'), { timeout: 20_000 }).toContain(`cannot reach Temporal at 127.0.0.1:${port} (ECONNREFUSED): is it running? check TEMPORAL_ADDRESS; the worker tries again in 1 s`);
    second.child.kill('SIGTERM');
    await expect.poll(() => second.seen.exit, { timeout: 5_000 }).toBe(0);
    expect(second.seen.output).not.toContain('ready');

    // What waiting cannot mend stops it at once.
    const third = boot({ TEMPORAL_ADDRESS: `http://127.0.0.1:${port}` });
    await expect.poll(() => third.seen.exit, { timeout: 20_000 }).toBe(1);
    expect(third.seen.output).toContain(`TEMPORAL_ADDRESS "http://127.0.0.1:${port}" is host:port, without a scheme`);
    expect(third.seen.output).not.toContain('tries again');
  }, 120_000);

  it('the CLI says in one sentence that the database restarted or is unreachable', async () => {
    const saved = process.env.DATABASE_URL;
    const run = async (...args: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['node', 'flowthru', ...args], { out: (l) => out.push(l), err: (l) => err.push(l) });
      return { code, out: out.join('\n'), err: err.join('\n') };
    };
    try {
      await pgServer.stop().catch(() => undefined);
      process.env.DATABASE_URL = url;
      const down = await run('db', 'migrate');
      expect(down.code).toBe(2);
      expect(down.err).toMatch(/^flowthru: the database at 127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\): is PostgreSQL running\? check DATABASE_URL$/);
      const users = await run('users');
      expect(users.err).toMatch(/the database .* is unreachable/);
      expect(users.err.split('\n')).toHaveLength(1);
    } finally {
      process.env.DATABASE_URL = saved;
    }
  });
});

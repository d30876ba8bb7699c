import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker, type WorkerOptions } from '@temporalio/worker';
import { inject } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadConfigFile } from '../../src/adapters/config-file.js';
import { applyConfig } from '../../src/adapters/db/config-store.js';
import { createSmtpMailer, type Mailer } from '../../src/adapters/mail/smtp.js';
import { SmtpSink } from '../../src/adapters/mail/sink.js';
import { dataConverterFromEnv } from '../../src/adapters/temporal/data-converter.js';
import { main } from '../../src/client/cli.js';
import { runSync, startSync, type StartSyncOptions } from '../../src/client/sync.js';
import { createWorker } from '../../src/worker/index.js';
import { onboardWorkflowId } from '../../src/workflows/config.js';
import type { SyncReport } from '../../src/workflows/messages.js';
import { createTestDatabase, type TestDatabase } from './database.js';

Runtime.install({ logger: new DefaultLogger('ERROR') });

/** A customer of a configuration document, loosely typed: tests edit what they need. */
export type Customer = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface RunningWorker {
  readonly worker: Worker;
  stop(): Promise<void>;
}

/** A test file's world: its own database, task queue, SMTP server and files, on the shared Temporal. */
export class PipelineHarness {
  readonly taskQueue = `test-${randomBytes(4).toString('hex')}`;
  readonly smtp = new SmtpSink();
  readonly dir = mkdtempSync(join(tmpdir(), 'flowthru-test-'));
  private workers: RunningWorker[] = [];
  private mailer: Mailer = createSmtpMailer();

  private constructor(
    readonly t: TestDatabase,
    readonly client: Client,
    /** The Temporal server this harness's workers and CLI use. */
    readonly temporalAddress: string,
  ) {}

  /**
   * A harness on the run's database server and Temporal, or on ones of the test's own (a private
   * PostgreSQL it restarts, a Temporal server it kills).
   */
  static async create(options: { database?: TestDatabase; temporalAddress?: string } = {}): Promise<PipelineHarness> {
    const t = options.database ?? (await createTestDatabase());
    const temporalAddress = options.temporalAddress ?? inject('temporalAddress');
    const connection = await Connection.connect({ address: temporalAddress });
    const harness = new PipelineHarness(t, new Client({ connection, dataConverter: dataConverterFromEnv() }), temporalAddress);
    await harness.smtp.start(0);
    return harness;
  }

  get db() {
    return this.t.db;
  }

  async startWorker(tuning: Partial<WorkerOptions> = {}, pipelineTaskQueue?: string): Promise<RunningWorker> {
    const connection = await NativeConnection.connect({ address: this.temporalAddress });
    const worker = await createWorker({
      connection,
      client: this.client,
      dataConverter: dataConverterFromEnv(),
      db: this.t.db,
      mailer: this.mailer,
      namespace: 'default',
      taskQueue: this.taskQueue,
      ...(pipelineTaskQueue ? { pipelineTaskQueue } : {}),
      tuning: { shutdownGraceTime: '1 second', ...tuning },
    });
    const running = worker.run();
    const handle: RunningWorker = {
      worker,
      stop: async () => {
        if (worker.getState() === 'RUNNING') worker.shutdown();
        await running.catch(() => undefined);
        await connection.close();
        this.workers = this.workers.filter((w) => w !== handle);
      },
    };
    this.workers.push(handle);
    return handle;
  }

  /** A worker in a process of its own, on this test's database and task queue, to be killed with SIGKILL. */
  async workerProcess(logLevel = 'warn'): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/worker-process.ts'], {
      env: { ...process.env, DATABASE_URL: this.t.url, TEMPORAL_ADDRESS: this.temporalAddress, FLOWTHRU_TASK_QUEUE: this.taskQueue, LOG_LEVEL: logLevel },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`worker process exited early (${code})`)));
    });
    return child;
  }

  async stopWorkers(): Promise<void> {
    for (const worker of [...this.workers]) await worker.stop();
  }

  /** Writes a configuration document next to the test's files and applies it; returns its version. */
  async apply(document: unknown): Promise<number> {
    const file = join(this.dir, `config-${randomBytes(3).toString('hex')}.yaml`);
    writeFileSync(file, stringify(document));
    const loaded = await loadConfigFile(file);
    if (!loaded.ok) throw new Error(`invalid test configuration: ${JSON.stringify(loaded.problems)}`);
    return (await applyConfig(this.t.db, loaded.config)).version;
  }

  /**
   * The shipped Acme example (examples/acme.yaml) as customer `name`, on this test's SMTP server,
   * with one source, `hr`, reading `<dir>/<name>.csv`; `edit` changes what a test needs.
   */
  acmeCustomer(name: string, edit: (customer: Customer) => void = () => undefined): Customer {
    const customer = parse(readFileSync('examples/acme.yaml', 'utf8')).customers[0] as Customer;
    customer.name = name;
    customer.settings.smtp.port = this.smtp.port;
    customer.settings.welcomeEmail.template = join(process.cwd(), 'examples/templates/welcome.html');
    customer.sources = [{ ...customer.sources[0], path: join(this.dir, `${name}.csv`) }];
    edit(customer);
    return customer;
  }

  /** One user of a customer as a test looks at them: status, reason, where they are, what profile. */
  userRow(customer: string, externalId: string) {
    return this.db
      .selectFrom('users')
      .innerJoin('customers', 'customers.id', 'users.customer_id')
      .leftJoin('sites', 'sites.id', 'users.site_id')
      .leftJoin('user_profiles', 'user_profiles.id', 'users.profile_id')
      .select(['users.id', 'users.status', 'users.role', 'users.status_reason', 'users.attributes', 'sites.name as site', 'user_profiles.name as profile'])
      .where('customers.name', '=', customer)
      .where('users.external_id', '=', externalId)
      .executeTakeFirstOrThrow();
  }

  /** The numbers a user holds, as `number:status`, in order. */
  async numbersOf(userId: string): Promise<string[]> {
    return (await this.db.selectFrom('number_inventory').select(['number', 'status']).where('user_id', '=', userId).orderBy('number').execute()).map((n) => `${n.number}:${n.status}`);
  }

  /** The local activities of a user's pipeline run, by type, in the order of its history. */
  async localActivities(customer: string, source: string, externalId: string): Promise<string[]> {
    const events = (await this.client.workflow.getHandle(onboardWorkflowId(customer, source, externalId)).fetchHistory()).events ?? [];
    return events.flatMap((e) => {
      const marker = e.markerRecordedEventAttributes;
      const data = marker?.details?.data?.payloads?.[0]?.data;
      if (marker?.markerName !== 'core_local_activity' || data == null) return [];
      return [/"activity_type":"(\w+)"|"activityType":"(\w+)"/.exec(Buffer.from(data).toString())?.slice(1).find(Boolean) ?? '?'];
    });
  }

  writeFile(name: string, content: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, content);
    return path;
  }

  syncOptions(customer: string, source: string, configVersion: number, extra: Partial<StartSyncOptions> = {}): StartSyncOptions {
    return { customer, source, mode: 'add', configVersion, taskQueue: this.taskQueue, ...extra };
  }

  sync(customer: string, source: string, configVersion: number, extra: Partial<StartSyncOptions> = {}): Promise<SyncReport> {
    return runSync(this.client, this.syncOptions(customer, source, configVersion, extra));
  }

  startSync(customer: string, source: string, configVersion: number, extra: Partial<StartSyncOptions> = {}) {
    return startSync(this.client, this.syncOptions(customer, source, configVersion, extra));
  }

  /** Runs the CLI against this test's database, Temporal and task queue; returns what it printed. */
  cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    return this.cliWith({}, ...args);
  }

  /** The CLI with this test's services, and `env` over them (TEMPORAL_ADDRESS somewhere else, say). */
  async cliWith(env: Record<string, string>, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const saved = { ...process.env };
    Object.assign(process.env, { DATABASE_URL: this.t.url, TEMPORAL_ADDRESS: this.temporalAddress, FLOWTHRU_TASK_QUEUE: this.taskQueue }, env);
    try {
      const code = await main(['node', 'flowthru', ...args], { out: (l) => out.push(l), err: (l) => err.push(l) });
      return { code, out: out.join('\n'), err: err.join('\n') };
    } finally {
      process.env = saved;
    }
  }

  async close(): Promise<void> {
    await this.stopWorkers();
    this.mailer.close();
    await this.smtp.stop();
    await this.client.connection.close();
    await this.t.drop();
  }
}

/** A CSV export with the Acme example's columns. */
export function acmeCsv(rows: readonly Partial<Record<'employee_id' | 'login' | 'mail' | 'given_name' | 'surname' | 'department' | 'city' | 'title' | 'mobile', string>>[]): string {
  const columns = ['employee_id', 'login', 'mail', 'given_name', 'surname', 'department', 'city', 'title', 'mobile'] as const;
  const quote = (v: string) => (/[",\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
  return [columns.join(','), ...rows.map((row) => columns.map((c) => quote(row[c] ?? '')).join(','))].join('\n') + '\n';
}

/**
 * The smallest customer that runs every step: everyone placed at one site, one profile with a line
 * and a phone, a welcome email. Crash and outage tests use it.
 */
export function oneSiteCustomer(name: string, options: { csvPath: string; smtpPort: number; range: { from: string; to: string } }) {
  return {
    name,
    settings: {
      flowThrough: { enabled: true, addSync: true, criteria: 'ftp' },
      welcomeEmail: { enabled: true, from: 'IT <it@example.com>', subject: 'Welcome {{firstName}}' },
      smtp: { host: '127.0.0.1', port: options.smtpPort, security: 'none' },
    },
    criteria: [
      { name: 'everyone', usage: 'move', when: { all: [] } },
      { name: 'anyone', usage: 'ftp', when: { all: [] } },
    ],
    profiles: [{ name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }] }],
    ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'anyone', profile: 'line' }] }],
    sources: [
      { name: 'hr', type: 'csv', userType: 'csv', path: options.csvPath, externalId: 'employee_id', attributeMap: { employee_id: 'employeeId', login: 'username', mail: 'email', given_name: 'firstName' } },
    ],
    sites: [{ name: 'hq', moveCriteria: { csv: 'everyone' }, numberRanges: [options.range] }],
  };
}

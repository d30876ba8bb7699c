/*
 * flowthru benchmark: N generated users through the full add-sync pipeline (numbers and email
 * included, SMTP a local sink), then an update sync after 100 of them changed (50 moved to another
 * site), the add sync again with two automatic provisioning targets (entries in a real slapd and
 * users in a SCIM server built on scimmy), with three references measured in the same run:
 *   - orchestration ceiling: the same workflows with activities that do nothing;
 *   - Temporal floor: one workflow per user that does nothing at all (200 in flight, start + result);
 *   - no durability: the same adapters and activity code called directly, without Temporal.
 *
 * Every phase runs on a Temporal dev server and a database of its own, started for it, so none
 * pays for another's finished executions. With `--runs K` the phases run K times, in a rotated
 * order each time, and the report gives each rate's median and spread, and the ratios per run.
 *
 *   npm run bench                        # 2,000 users, in-memory Temporal store
 *   npm run bench -- 10000 --runs 3      # 10,000 users, 3 runs
 *   npm run bench -- 2000 --db-file      # Temporal dev server on a file-backed store
 *
 * A measurement, not a test: it prints a report and asserts nothing.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { msToTs } from '@temporalio/common/lib/time.js';
import proto from '@temporalio/proto';
import pg from 'pg';
import { stringify } from 'yaml';
import { createActivities } from '../src/activities/index.js';
import type { Activities, StepInput } from '../src/activities/types.js';
import { loadConfigFile } from '../src/adapters/config-file.js';
import { applyConfig } from '../src/adapters/db/config-store.js';
import { createDatabase } from '../src/adapters/db/connection.js';
import { migrateToLatest } from '../src/adapters/db/migrate.js';
import { ConfigSnapshots } from '../src/adapters/db/snapshots.js';
import { SmtpSink } from '../src/adapters/mail/sink.js';
import { createSmtpMailer } from '../src/adapters/mail/smtp.js';
import { freshPayloadKeyEnv } from '../src/adapters/temporal/codec.js';
import { dataConverterFromEnv } from '../src/adapters/temporal/data-converter.js';
import { runSync } from '../src/client/sync.js';
import { ensureSearchAttributes } from '../src/client/temporal.js';
import { startTemporalDevServer } from '../src/demo/temporal-dev-server.js';
import { createWorker, WORKER_TUNING, workflowSource } from '../src/worker/index.js';
import { DEFAULT_WINDOW } from '../src/workflows/sync-source.js';
import { startSlapd } from '../src/demo/slapd.js';
import { startScimServer } from '../test/support/scim-server.js';

const { values: flags, positionals } = parseArgs({
  args: process.argv.slice(2),
  options: {
    runs: { type: 'string', default: '1' },
    'db-file': { type: 'boolean', default: false },
    temporal: { type: 'string' },
    'worker-processes': { type: 'string', default: '0' },
    phases: { type: 'string', default: 'pipeline,ceiling,floor,direct,targets' },
    progress: { type: 'boolean', default: false },
    statements: { type: 'boolean', default: false },
  },
  allowPositionals: true,
});
const users = Number(positionals[0] ?? 2000);
const runs = Number(flags.runs);
const fileStore = flags['db-file'];
/** An existing Temporal (a cluster: ./dev.sh temporal-cluster start) instead of a dev server per phase; each phase gets a namespace of its own there. */
const externalTemporal = flags.temporal;
/**
 * The pipeline phase's workers as separate processes (`flowthru worker`, from dist/: run
 * `npm run build` first), this many; 0 runs one worker inside the benchmark's process. Separate
 * processes measure scale-out and each worker's own peak memory (VmHWM).
 */
const workerProcesses = Number(flags['worker-processes']);
/** Which phases run (all by default): `--phases pipeline` measures the pipeline alone (scale-out runs). */
const chosenPhases = new Set(flags.phases.split(',').map((p) => p.trim()));
const unknownPhase = [...chosenPhases].find((p) => !['pipeline', 'ceiling', 'floor', 'direct', 'targets'].includes(p));
if (unknownPhase !== undefined || !chosenPhases.has('pipeline')) {
  console.error(`--phases: a comma-separated list of pipeline, ceiling, floor, direct, targets, with pipeline among them${unknownPhase ? ` (not ${unknownPhase})` : ''}`);
  process.exit(2);
}
if (!Number.isInteger(users) || users < 1 || !Number.isInteger(runs) || runs < 1 || !Number.isInteger(workerProcesses) || workerProcesses < 0) {
  console.error('usage: npm run bench -- [USERS] [--runs K] [--db-file | --temporal HOST:PORT] [--worker-processes W] [--phases LIST] [--progress] [--statements]');
  process.exit(2);
}
/**
 * Every minute of the pipeline phase's add sync, a line on stderr: users through so far, and the
 * resident memory now of each worker process (with --worker-processes) or of this process. For
 * long runs (100,000 users): it shows whether memory stays flat while users go through.
 */
const progress = flags.progress;
/** Empty workflows in flight at once in the floor phase. */
const FLOOR_IN_FLIGHT = 200;
const ADMIN_URL = process.env.FLOWTHRU_TEST_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

Runtime.install({ logger: new DefaultLogger('ERROR') });

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Pipeline passes run so far: each pass logs exactly one `create` step. */
async function countPasses(db: ReturnType<typeof createDatabase>): Promise<number> {
  const row = await db.selectFrom('transaction_log').select((eb) => eb.fn.countAll<string>().as('n')).where('kind', '=', 'step').where('action', '=', 'create').executeTakeFirstOrThrow();
  return Number(row.n);
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * Statements sent to PostgreSQL by this process (BEGIN and COMMIT included): every pg client's
 * query counted. With the worker in this process, statements per user is the pipeline's database
 * round trips, the figure that moves when a step's work is merged or its queries batched.
 */
let statements = 0;
/**
 * With --statements, every statement's text (whitespace folded, first 110 characters) and how often
 * this process sent it, printed at the end, most frequent first: where the round trips go.
 */
const statementTexts = flags.statements ? new Map<string, number>() : null;
process.on('exit', () => {
  if (!statementTexts) return;
  console.log('\nstatements sent by this process (all phases), most frequent first:');
  for (const [text, n] of [...statementTexts].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${String(n).padStart(8)}  ${text}`);
});
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  statements++;
  if (statementTexts) {
    const first = args[0];
    const text = (typeof first === 'string' ? first : ((first as { text?: string } | undefined)?.text ?? '?')).replace(/\s+/g, ' ').trim().slice(0, 110);
    statementTexts.set(text, (statementTexts.get(text) ?? 0) + 1);
  }
  return (query as (...a: unknown[]) => unknown).apply(this, args);
} as typeof query;

/** Peak resident memory of this process (client + worker), sampled. */
function memorySampler() {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100);
  return {
    peak: () => peak,
    stop: () => clearInterval(timer),
  };
}

/** Clock ticks per second of /proc's CPU times (USER_HZ): 100 on Linux everywhere but a few exotic builds. */
const TICK_MS = 10;

/** Busy and stolen CPU time of the whole machine (all cores) from /proc/stat, in ms. */
function machineCpu(): { busy: number; steal: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user's)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return { busy: (user + nice + system + irq + softirq) * TICK_MS, steal: steal * TICK_MS };
}

/** CPU time (user + system) of a process and its threads, in ms; 0 once it has gone. */
function processCpu(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    // The command name (field 2) may hold spaces: the fields after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(after[11]) + Number(after[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/**
 * Where a phase's CPU went: the whole machine's busy time, this process's (client, and the worker
 * unless it runs in processes of its own), the Temporal server's, the worker processes', and the
 * rest (PostgreSQL, mostly); and the time the hypervisor stole. CPU per user is steadier than a
 * rate on a machine whose speed drifts: the ratio of two phases' CPU per user is what their rates'
 * ratio would be if both had all the cores, all the time.
 */
interface CpuReading {
  readonly wall: number;
  readonly busy: number;
  readonly steal: number;
  readonly self: number;
  readonly server: number;
  readonly workers: number;
}

function cpuMeter(serverPid: number | undefined, workerPids: () => (number | undefined)[] = () => []) {
  const selfCpu = () => {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1000;
  };
  const read = () => ({ at: performance.now(), ...machineCpu(), self: selfCpu(), server: processCpu(serverPid), workers: workerPids().reduce<number>((sum, pid) => sum + processCpu(pid), 0) });
  const start = read();
  return (): CpuReading => {
    const end = read();
    return { wall: end.at - start.at, busy: end.busy - start.busy, steal: end.steal - start.steal, self: end.self - start.self, server: end.server - start.server, workers: end.workers - start.workers };
  };
}

/** `38.1 ms CPU per user (this process 15.0, Temporal 12.3, rest 10.8); cores 94 % busy, 0 % stolen` */
function describeCpu(cpu: CpuReading, count: number, cores: number): string {
  const per = (ms: number) => (ms / count).toFixed(1);
  const rest = cpu.busy - cpu.self - cpu.server - cpu.workers;
  const parts = [`this process ${per(cpu.self)}`, ...(cpu.workers > 0 ? [`worker processes ${per(cpu.workers)}`] : []), `Temporal ${per(cpu.server)}`, `rest ${per(rest)}`];
  const capacity = cpu.wall * cores;
  return `${per(cpu.busy)} ms CPU per user (${parts.join(', ')}); cores ${((cpu.busy / capacity) * 100).toFixed(0)} % busy, ${((cpu.steal / capacity) * 100).toFixed(0)} % stolen`;
}

interface BenchTargets {
  readonly slapd: { url: string; adminDn: string };
  readonly scimUrl: string;
}

/** Two automatic targets for the customer `targeted`: entries in slapd, users in a SCIM service. */
function targetsFor(targets: BenchTargets) {
  return [
    { name: 'phones', kind: 'ldap', url: targets.slapd.url, bindDn: targets.slapd.adminDn, passwordEnv: 'BENCH_LDAP_PASSWORD', entry: 'managed', baseDn: 'ou=phones,dc=flowthru,dc=test', retryInterval: '1s' },
    { name: 'saas', kind: 'scim', url: targets.scimUrl, tokenEnv: 'BENCH_SCIM_TOKEN', retryInterval: '1s' },
  ];
}

function configFor(dir: string, smtpPort: number, customers: string[], targets?: BenchTargets) {
  return {
    version: 1,
    customers: customers.map((name) => ({
      name,
      ...(name === 'targeted' && targets ? { targets: targetsFor(targets) } : {}),
      settings: {
        flowThrough: { enabled: true, addSync: true, updateSync: true, criteria: 'ftp' },
        welcomeEmail: { enabled: true, from: 'IT <it@bench.example>', subject: 'Welcome {{firstName}}' },
        smtp: { host: '127.0.0.1', port: smtpPort, security: 'none' },
      },
      criteria: [
        { name: 'in-dallas', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Dallas' } },
        { name: 'everyone', usage: 'move', when: { attribute: 'city', op: 'exists' } },
        { name: 'anyone', usage: 'ftp', when: { not: { attribute: 'department', op: 'isEmpty' } } },
      ],
      profiles: [{ name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }, { kind: 'voicemail' }] }],
      ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'anyone', profile: 'line' }] }],
      sources: [
        {
          name: 'hr',
          type: 'csv',
          userType: 'csv',
          path: join(dir, 'users.csv'),
          externalId: 'employee_id',
          attributeMap: { employee_id: 'employeeId', login: 'username', mail: 'email', given_name: 'firstName', department: 'department', city: 'city' },
        },
      ],
      sites: [
        { name: 'branch', moveCriteria: { csv: 'in-dallas' }, numberRanges: [{ from: '2000000', to: String(2000000 + CHANGED) }] },
        { name: 'hq', moveCriteria: { csv: 'everyone' }, numberRanges: [{ from: '1000000', to: String(1000000 + users - 1) }] },
      ],
    })),
  };
}

/** Users changed before the update sync, spread over the file: half move to Dallas, half change department. */
const CHANGED = 100;

function directory(count: number, changed = 0): string {
  const lines = ['employee_id,login,mail,given_name,department,city'];
  const step = Math.max(1, Math.floor(count / Math.max(1, changed)));
  for (let i = 0; i < count; i++) {
    const nth = i % step === 0 ? i / step : -1;
    const change = nth >= 0 && nth < changed ? (nth % 2 === 0 ? 'move' : 'department') : null;
    lines.push(`B${i},user${i},user${i}@bench.example,User${i},${change === 'department' ? 'Research' : 'Engineering'},${change === 'move' ? 'Dallas' : 'Chicago'}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Activities with the real shape that do no work: what Temporal costs on its own. Starting the
 * pipelines and handing their outcomes back to the sync stay real: they are the orchestration.
 */
function noopActivities(): Activities {
  const done = async () => undefined;
  return {
    createLocalUser: async () => ({ flowThrough: true, welcomeEmail: true }),
    moveUser: async () => ({ site: 'hq', moved: true }),
    matchProfile: async () => ({ profile: 'line', numberFrom: 'site' }),
    placeUser: async (input) => ({
      local: { flowThrough: true, welcomeEmail: true },
      placed: { site: 'hq', moved: true },
      matched: { profile: 'line', numberFrom: 'site' },
      ...(input.line ? { line: { number: `n${input.userId}` } } : {}),
    }),
    reserveNumber: async (input) => ({ number: `n${input.userId}` }),
    provisionLine: async (input) => ({ number: `n${input.userId}` }),
    provisionServices: done,
    provisionProfile: async (input) => ({ number: `n${input.userId}` }),
    offboardUser: async () => ({ reason: 'gone' }),
    abandonProvisioning: done,
    finishTargets: done,
    pushToTarget: async () => ({ outcome: 'pushed', summary: 'nothing' }),
    pushFirstTries: async (input) => ({ tries: input.pushes.map((p) => ({ target: p.target, outcome: 'pushed' as const, summary: 'nothing' })), finished: input.finish }),
    enqueueTargetJob: async () => ({ workflowId: 'none' }),
    recordTargetFailure: async () => ({ notified: false }),
    listTargetSubjects: async () => [],
    markTargetCancelled: done,
    sendWelcomeEmail: async () => ({ sent: true }),
    sendMovedEmail: async () => ({ sent: true }),
    readSourcePage: async (input) => {
      const start = Number((input.cursor as { at?: number } | null)?.at ?? 0);
      const end = Math.min(users, start + input.pageSize);
      const targets = Array.from({ length: end - start }, (_, i) => ({ userId: String(start + i), externalId: `N${start + i}` }));
      return { seen: targets.length, imported: targets.length, targets, problems: [], next: end < users ? { at: end } : null };
    },
    startUserPipelines: undefined as never,
    recordOutcome: undefined as never,
    collectOutcomes: undefined as never,
    recordSyncRun: done,
    beginSync: async (input) => ({ configVersion: input.configVersion ?? 1 }),
    planDeletions: async () => ({ deletions: 0 }),
    takeDeletions: async () => [],
  };
}

/** A Temporal dev server, a database with the configuration applied, and a client: what one phase runs on. */
interface World {
  readonly db: ReturnType<typeof createDatabase>;
  readonly client: Client;
  readonly address: string;
  readonly namespace: string;
  readonly databaseUrl: string;
  readonly version: number;
  /** The dev server's process (none with --temporal). */
  readonly serverPid: number | undefined;
  close(): Promise<void>;
}

interface Shared {
  readonly dir: string;
  readonly sink: SmtpSink;
  readonly mailer: ReturnType<typeof createSmtpMailer>;
  readonly dataConverter: ReturnType<typeof dataConverterFromEnv>;
}

async function openWorld(shared: Shared, customers: string[], targets?: BenchTargets): Promise<World> {
  const dbName = `flowthru_bench_${randomBytes(3).toString('hex')}`;
  await admin(`create database "${dbName}"`);
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  const db = createDatabase(dbUrl.toString(), { max: workerProcesses > 0 ? 5 : 20 });
  const temporal = externalTemporal
    ? { address: externalTemporal, pid: undefined, stop: async () => undefined }
    : await startTemporalDevServer({
        port: 20000 + Math.floor(Math.random() * 20000),
        uiPort: 0,
        headless: true,
        ...(fileStore ? { dbFile: join(mkdtempSync(join(shared.dir, 'temporal-')), 'temporal.db') } : {}),
      });
  await migrateToLatest(db);
  const configFile = join(shared.dir, `bench-${dbName}.yaml`);
  writeFileSync(configFile, stringify(configFor(shared.dir, shared.sink.port, customers, targets)));
  const loaded = await loadConfigFile(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const { version } = await applyConfig(db, loaded.config);
  const connection = await Connection.connect({ address: temporal.address });
  const namespace = externalTemporal ? await freshNamespace(connection, dbName.replace(/_/g, '-'), shared) : 'default';
  const client = new Client({ connection, namespace, dataConverter: shared.dataConverter });
  return {
    db,
    client,
    address: temporal.address,
    namespace,
    databaseUrl: dbUrl.toString(),
    version,
    serverPid: temporal.pid,
    async close() {
      await connection.close();
      await db.destroy();
      await temporal.stop();
      await admin(`drop database if exists "${dbName}" with (force)`);
    },
  };
}

/**
 * A namespace of its own on an existing server, with flowthru's search attributes, usable once
 * every service's namespace cache knows both (it is refreshed every 10 s: a start before that is
 * refused with "no mapping defined for search attribute").
 */
async function freshNamespace(connection: Connection, namespace: string, shared: Shared): Promise<string> {
  await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
  for (let i = 0; ; i++) {
    try {
      await ensureSearchAttributes(new Client({ connection, namespace, dataConverter: shared.dataConverter }));
      break;
    } catch (error) {
      if (i > 30) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 11_000));
  return namespace;
}

async function withWorld<T>(shared: Shared, customers: string[], run: (world: World) => Promise<T>, targets?: BenchTargets): Promise<T> {
  const world = await openWorld(shared, customers, targets);
  try {
    return await run(world);
  } finally {
    await world.close();
  }
}

/** Runs a worker on `taskQueue` of the world's server for the duration of `body`. */
async function withWorker<T>(world: World, options: Omit<Parameters<typeof Worker.create>[0], 'connection'>, body: () => Promise<T>): Promise<T> {
  const native = await NativeConnection.connect({ address: world.address });
  const worker = await Worker.create({ ...options, namespace: world.namespace, connection: native });
  const running = worker.run();
  try {
    return await body();
  } finally {
    worker.shutdown();
    await running;
    await native.close();
  }
}

/** `flowthru worker` processes on the world's server, database and `taskQueue`; `stop` returns each one's peak RSS. */
async function startWorkerProcesses(world: World, taskQueue: string, count: number) {
  const children = Array.from({ length: count }, () =>
    spawn(process.execPath, [fileURLToPath(new URL('../bin/flowthru.js', import.meta.url)), 'worker'], {
      env: { ...process.env, DATABASE_URL: world.databaseUrl, TEMPORAL_ADDRESS: world.address, TEMPORAL_NAMESPACE: world.namespace, FLOWTHRU_TASK_QUEUE: taskQueue, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
  // Timed from when every worker polls (both task types), as the in-process worker is.
  for (const [i, taskQueueType] of [proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY].entries()) {
    for (let tries = 0; ; tries++) {
      const { pollers } = await world.client.workflowService.describeTaskQueue({ namespace: world.namespace, taskQueue: { name: taskQueue }, taskQueueType });
      if (new Set(pollers?.map((p) => p.identity)).size >= count) break;
      if (children.some((child) => child.exitCode !== null)) throw new Error('a worker process exited at start (its error is above)');
      if (tries > 120) throw new Error(`the worker processes did not poll ${taskQueue} (${i === 0 ? 'workflow' : 'activity'} tasks) within 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  const memoryOf = (pid: number | undefined, field: 'VmHWM' | 'VmRSS') => {
    const status = pid === undefined ? '' : readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  };
  const peakOf = (pid: number | undefined) => memoryOf(pid, 'VmHWM');
  return {
    /** Each worker process's resident memory now. */
    rss: () => children.map((child) => memoryOf(child.pid, 'VmRSS')),
    pids: () => children.map((child) => child.pid),
    async stop(): Promise<number[]> {
      const peaks = children.map((child) => peakOf(child.pid));
      await Promise.all(
        children.map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null) return resolve();
              child.once('exit', () => resolve());
              child.kill('SIGTERM');
            }),
        ),
      );
      return peaks;
    },
  };
}

interface PipelineResult {
  seconds: number;
  provisioned: number;
  emailed: number;
  latencies: number[];
  peak: number;
  events: number | string;
  syncRuns: number;
  /** With --worker-processes: each worker process's peak RSS. */
  workerPeaks?: number[];
  /** Statements this process sent to PostgreSQL during the add sync (the worker's, when it runs here). */
  statements: number;
  /** Where the add sync's CPU went. */
  cpu: CpuReading;
  update?: { seconds: number; imported: number; passes: number; moved: number; provisioned: number; emailed: number };
}

/** 1. The full pipeline, then (when asked) an update sync after 100 users changed. */
async function pipelinePhase(shared: Shared, withUpdate: boolean): Promise<PipelineResult> {
  return withWorld(shared, ['pipeline'], async (world) => {
    const taskQueue = 'bench-pipeline';
    const processes = workerProcesses > 0 ? await startWorkerProcesses(world, taskQueue, workerProcesses) : undefined;
    const native = processes ? undefined : await NativeConnection.connect({ address: world.address });
    const worker = native
      ? await createWorker({ connection: native, client: world.client, dataConverter: shared.dataConverter, db: world.db, mailer: shared.mailer, namespace: world.namespace, taskQueue })
      : undefined;
    const running = worker?.run();
    let result: PipelineResult | undefined;
    try {
      writeFileSync(join(shared.dir, 'users.csv'), directory(users));
      const memory = memorySampler();
      const statementsBefore = statements;
      const cpu = cpuMeter(world.serverPid, () => processes?.pids() ?? []);
      const started = performance.now();
      const watch = progress
        ? setInterval(() => {
            void countPasses(world.db)
              .then((passes) => {
                const rss = (processes?.rss() ?? [process.memoryUsage().rss]).map((bytes) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`).join(', ');
                const minutes = ((performance.now() - started) / 60_000).toFixed(0);
                console.error(`  ${minutes} min: ${passes} of ${users} users through; resident memory of ${processes ? 'each worker process' : 'this process'}: ${rss}`);
              })
              .catch(() => undefined);
          }, 60_000)
        : undefined;
      const report = await runSync(world.client, { customer: 'pipeline', source: 'hr', mode: 'add', configVersion: world.version, taskQueue }).finally(() => clearInterval(watch));
      const seconds = (performance.now() - started) / 1000;
      const used = cpu();
      const sent = statements - statementsBefore;
      memory.stop();
      const latencies = (
        await world.db
          .selectFrom('transaction_log')
          .select((eb) => [eb.fn.min('started_at').as('first'), eb.fn.max('ended_at').as('last')])
          .where('kind', '=', 'step')
          .groupBy('user_id')
          .execute()
      )
        .map((r) => new Date(r.last as unknown as string).getTime() - new Date(r.first as unknown as string).getTime())
        .sort((a, b) => a - b);
      const sample = await world.client.workflow.getHandle('onboard/pipeline/hr/B7').fetchHistory();
      const description = await world.client.workflow.getHandle('sync/pipeline/hr').describe();
      result = {
        seconds,
        provisioned: report.counts.provisioned,
        emailed: report.counts.emailed,
        latencies,
        peak: memory.peak(),
        statements: sent,
        cpu: used,
        events: sample.events?.length ?? '?',
        // The run the handle describes is the last of the sync's chain; its first run id tells whether it continued as new.
        syncRuns: description.raw.workflowExecutionInfo?.firstRunId === description.runId ? 1 : 2,
      };
      if (withUpdate) {
        writeFileSync(join(shared.dir, 'users.csv'), directory(users, CHANGED));
        const passesBefore = await countPasses(world.db);
        const updateStarted = performance.now();
        const updated = await runSync(world.client, { customer: 'pipeline', source: 'hr', mode: 'update', taskQueue });
        result.update = {
          seconds: (performance.now() - updateStarted) / 1000,
          imported: updated.counts.imported,
          passes: (await countPasses(world.db)) - passesBefore,
          moved: updated.counts.moved,
          provisioned: updated.counts.provisioned,
          emailed: updated.counts.emailed,
        };
        writeFileSync(join(shared.dir, 'users.csv'), directory(users));
      }
      return result;
    } finally {
      if (processes) {
        const peaks = await processes.stop();
        if (result) result.workerPeaks = peaks;
      }
      worker?.shutdown();
      await running;
      await native?.close();
    }
  });
}

/** 1c. The same add sync with two automatic targets (slapd entries and a SCIM service): what pushing costs. */
async function targetsPhase(shared: Shared) {
  const slapd = await startSlapd({ entries: [{ dn: 'ou=phones,dc=flowthru,dc=test', attributes: { objectClass: ['top', 'organizationalUnit'], ou: 'phones' } }], sizeLimit: users + 10 });
  const scim = await startScimServer({ token: 'bench-token' });
  Object.assign(process.env, { BENCH_LDAP_PASSWORD: slapd.adminPassword, BENCH_SCIM_TOKEN: 'bench-token' });
  try {
    return await withWorld(
      shared,
      ['targeted'],
      async (world) => {
        const taskQueue = 'bench-targets';
        const native = await NativeConnection.connect({ address: world.address });
        const worker = await createWorker({ connection: native, client: world.client, dataConverter: shared.dataConverter, db: world.db, mailer: shared.mailer, namespace: world.namespace, taskQueue });
        const running = worker.run();
        try {
          const started = performance.now();
          const statementsBefore = statements;
          const report = await runSync(world.client, { customer: 'targeted', source: 'hr', mode: 'add', configVersion: world.version, taskQueue });
          const seconds = (performance.now() - started) / 1000;
          const sent = statements - statementsBefore;
          const pushes = await world.db.selectFrom('target_state').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'provisioned').executeTakeFirstOrThrow();
          const sample = await world.client.workflow.getHandle('onboard/targeted/hr/B7').fetchHistory();
          return { seconds, provisioned: report.counts.provisioned, pushes: Number(pushes.n), scimUsers: scim.users().length, events: sample.events?.length ?? '?', statements: sent };
        } finally {
          worker.shutdown();
          await running;
          await native.close();
        }
      },
      { slapd, scimUrl: scim.url },
    );
  } finally {
    await scim.close();
    await slapd.close();
  }
}

/** A phase's wall time and where its CPU went. */
interface Timed {
  readonly seconds: number;
  readonly cpu: CpuReading;
}

/** 2. Orchestration ceiling: the same workflows, activities that do nothing (starting pipelines and collecting outcomes stay real). */
async function ceilingPhase(shared: Shared): Promise<Timed> {
  return withWorld(shared, ['ceiling'], async (world) => {
    const taskQueue = 'bench-ceiling';
    const real = createActivities({ db: world.db, snapshots: new ConfigSnapshots(world.db), mailer: shared.mailer, client: world.client, taskQueue });
    return withWorker(
      world,
      {
        taskQueue,
        dataConverter: shared.dataConverter,
        activities: {
          ...noopActivities(),
          startUserPipelines: real.startUserPipelines,
          recordOutcome: real.recordOutcome,
          collectOutcomes: real.collectOutcomes,
          // As the pipeline's welcome does: the outcome the syncs wait for, told by the email's step.
          sendWelcomeEmail: async (input: Parameters<Activities['sendWelcomeEmail']>[0]) => {
            if (!input.report) return { sent: true };
            await real.recordOutcome({ userId: input.userId, syncIds: input.report.syncIds, outcome: { ...input.report.outcome, emailed: true } });
            return { sent: true, reported: true };
          },
        },
        ...workflowSource(),
        ...WORKER_TUNING,
      },
      async () => {
        const cpu = cpuMeter(world.serverPid);
        const started = performance.now();
        await runSync(world.client, { customer: 'ceiling', source: 'hr', mode: 'add', configVersion: world.version, taskQueue });
        return { seconds: (performance.now() - started) / 1000, cpu: cpu() };
      },
    );
  });
}

/** 3. The Temporal floor: one empty workflow per user, FLOOR_IN_FLIGHT at a time, each started and awaited by the client. */
async function floorPhase(shared: Shared): Promise<Timed> {
  return withWorld(shared, ['floor'], async (world) => {
    const taskQueue = 'bench-floor';
    return withWorker(
      world,
      { taskQueue, dataConverter: shared.dataConverter, workflowsPath: fileURLToPath(new URL('./floor-workflows.ts', import.meta.url)), ...WORKER_TUNING },
      async () => {
        let next = 0;
        const cpu = cpuMeter(world.serverPid);
        const started = performance.now();
        await Promise.all(
          Array.from({ length: Math.min(FLOOR_IN_FLIGHT, users) }, async () => {
            for (let i = next++; i < users; i = next++) {
              const handle = await world.client.workflow.start('emptyWorkflow', { taskQueue, workflowId: `floor/${i}`, args: [] });
              await handle.result();
            }
          }),
        );
        return { seconds: (performance.now() - started) / 1000, cpu: cpu() };
      },
    );
  });
}

/** 4. The same adapters and activity code, called directly: no Temporal, no durability. */
async function directPhase(shared: Shared): Promise<Timed> {
  return withWorld(shared, ['direct'], async (world) => {
    const direct = createActivities({ db: world.db, snapshots: new ConfigSnapshots(world.db), mailer: shared.mailer, client: world.client, taskQueue: 'unused' });
    const cpu = cpuMeter(world.serverPid);
    const started = performance.now();
    let cursor = null;
    const concurrency = WORKER_TUNING.maxConcurrentLocalActivityExecutions;
    do {
      const page: Awaited<ReturnType<Activities['readSourcePage']>> = await direct.readSourcePage({ customer: 'direct', source: 'hr', configVersion: world.version, cursor, pageSize: 500, syncId: 'direct' });
      const queue = [...page.targets];
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          for (let target = queue.shift(); target; target = queue.shift()) {
            const ids: StepInput = { userId: target.userId, customer: 'direct', configVersion: world.version, mode: 'add', workflowId: `direct/${target.externalId}`, runId: `direct-${target.externalId}`, attempt: 1 };
            // The add pass's steps as the pipeline takes them: place, line, welcome.
            const { matched } = await direct.placeUser(ids);
            await direct.provisionLine({ ...ids, pool: matched?.numberFrom ?? null });
            await direct.sendWelcomeEmail(ids);
          }
        }),
      );
      cursor = page.next;
    } while (cursor);
    return { seconds: (performance.now() - started) / 1000, cpu: cpu() };
  });
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

type PhaseName = 'pipeline' | 'ceiling' | 'floor' | 'direct';
const PHASES: readonly PhaseName[] = ['pipeline', 'ceiling', 'floor', 'direct'];

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'flowthru-bench-'));
  writeFileSync(join(dir, 'users.csv'), directory(users));
  // A mail server elsewhere costs the pipeline its SMTP conversation only: this one counts.
  const sink = new SmtpSink({ mode: 'count' });
  await sink.start(0);
  // Payloads are encrypted as in production; a key of the run's own when none is set.
  if (!process.env.FLOWTHRU_PAYLOAD_KEYS) Object.assign(process.env, freshPayloadKeyEnv('bench'));
  const shared: Shared = { dir, sink, mailer: createSmtpMailer(), dataConverter: dataConverterFromEnv() };
  const say = (line = '') => console.log(line);
  try {
    const server = externalTemporal
      ? `the Temporal server at ${externalTemporal}, a fresh namespace and database per phase`
      : `Temporal dev server with ${fileStore ? 'a file-backed (SQLite) store' : 'the in-memory store'}, a fresh server and database per phase`;
    say(`flowthru benchmark: ${users} users, ${runs} run${runs === 1 ? '' : 's'}, ${server}`);
    const cores = (await import('node:os')).cpus().length;
    say(`machine: ${cores} cores; client, worker, Temporal and PostgreSQL share them`);
    say(`worker: ${workerProcesses > 0 ? `${workerProcesses} separate process${workerProcesses === 1 ? '' : 'es'} (flowthru worker) in the pipeline phase, ` : ''}${JSON.stringify(WORKER_TUNING)}, sync window ${DEFAULT_WINDOW}`);
    say();

    const rates: Record<PhaseName, number[]> = { pipeline: [], ceiling: [], floor: [], direct: [] };
    /** Machine CPU (ms) per user, by phase and run. */
    const cpuPerUser: Record<PhaseName, number[]> = { pipeline: [], ceiling: [], floor: [], direct: [] };
    let first: PipelineResult | undefined;
    for (let run = 0; run < runs; run++) {
      // Each run starts the rotation one phase further, so no phase always runs on a warmer machine.
      const order = PHASES.map((_, i) => PHASES[(i + run) % PHASES.length]!).filter((phase) => chosenPhases.has(phase));
      say(`run ${run + 1}: ${order.join(', ')}`);
      for (const phase of order) {
        let timed: Timed;
        if (phase === 'pipeline') {
          const result = await pipelinePhase(shared, run === 0);
          first ??= result;
          timed = result;
        } else if (phase === 'ceiling') timed = await ceilingPhase(shared);
        else if (phase === 'floor') timed = await floorPhase(shared);
        else timed = await directPhase(shared);
        const { seconds, cpu } = timed;
        rates[phase].push(users / seconds);
        cpuPerUser[phase].push(cpu.busy / users);
        say(`  ${phase.padEnd(9)} ${(users / seconds).toFixed(1).padStart(7)} users/s  (${seconds.toFixed(1)} s)  ${describeCpu(cpu, users, cores)}`);
      }
    }
    const targeted = chosenPhases.has('targets') ? await targetsPhase(shared) : undefined;
    say();

    const describe = (phase: PhaseName) => {
      const values = rates[phase];
      const spread = values.length > 1 ? `, spread ${Math.min(...values).toFixed(1)}–${Math.max(...values).toFixed(1)}` : '';
      return `${median(values).toFixed(1).padStart(7)} users/s   (median of ${values.length}${spread})`;
    };
    const ratio = (a: PhaseName, b: PhaseName) => {
      const perRun = rates[a].map((rate, i) => (rate / rates[b][i]!) * 100);
      return `${median(perRun).toFixed(0)} %${perRun.length > 1 ? ` (runs: ${perRun.map((r) => r.toFixed(0)).join(', ')} %)` : ''}`;
    };
    const pipeline = first!;
    say(`pipeline          ${describe('pipeline')}; run 1: ${pipeline.provisioned} provisioned, ${pipeline.emailed} emailed`);
    say(`  per-user latency, first step to last (run 1): p50 ${percentile(pipeline.latencies, 50)} ms, p95 ${percentile(pipeline.latencies, 95)} ms`);
    const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
    say(
      pipeline.workerPeaks
        ? `  peak memory of each worker process (${workerProcesses}, on their own), run 1: ${pipeline.workerPeaks.map(mib).join(', ')}; of this process (client): ${mib(pipeline.peak)}`
        : `  peak memory of this process (client + worker) during run 1's add sync: ${mib(pipeline.peak)}`,
    );
    say(`  events per onboardUser history: ${pipeline.events}; sync continued as new: ${pipeline.syncRuns > 1 ? 'yes' : 'no'}`);
    if (!pipeline.workerPeaks) say(`  database statements per user (BEGIN and COMMIT included), run 1: ${(pipeline.statements / users).toFixed(1)}`);
    const update = pipeline.update!;
    say(
      `update sync       ${update.seconds.toFixed(1).padStart(7)} s         (${CHANGED} of ${users} changed: ${update.imported} imported, ` +
        `${update.passes} pipelines started, ${update.moved} moved, ${update.provisioned} provisioned, ${update.emailed} emailed)`,
    );
    if (targeted) {
      const targetedRate = users / targeted.seconds;
      say(
        `with 2 targets    ${targetedRate.toFixed(1).padStart(7)} users/s   (${targeted.seconds.toFixed(1)} s, one run; ${targeted.provisioned} provisioned; ` +
          `LDAP write-back to slapd + SCIM, automatic: ${targeted.pushes} pushes, ${targeted.scimUsers} SCIM users; ${((targetedRate / median(rates.pipeline)) * 100).toFixed(0)} % of the median without; ` +
          `${targeted.events} events per onboardUser history; ${(targeted.statements / users).toFixed(1)} database statements per user)`,
      );
    }
    if (rates.ceiling.length) say(`orchestration     ${describe('ceiling')}: same workflows, no-op activities`);
    if (rates.floor.length) say(`Temporal floor    ${describe('floor')}: one empty workflow per user, ${FLOOR_IN_FLIGHT} in flight`);
    if (rates.direct.length) say(`no durability     ${describe('direct')}: same adapters, no Temporal, ${WORKER_TUNING.maxConcurrentLocalActivityExecutions} at a time`);
    say();
    if (rates.ceiling.length) say(`pipeline / orchestration ceiling: ${ratio('pipeline', 'ceiling')}`);
    if (rates.floor.length) say(`pipeline / Temporal floor:        ${ratio('pipeline', 'floor')}`);
    if (rates.ceiling.length && rates.floor.length) say(`ceiling / Temporal floor:         ${ratio('ceiling', 'floor')}`);
    if (rates.direct.length) say(`pipeline / no durability:         ${ratio('pipeline', 'direct')}`);
    if (rates.ceiling.length || rates.floor.length) {
      // The same ratios from the machine's CPU per user (the inverse: a phase that costs less per user runs faster).
      const byCpu = (a: PhaseName, b: PhaseName) => {
        const perRun = cpuPerUser[b].map((cost, i) => (cost / cpuPerUser[a][i]!) * 100);
        return `${median(perRun).toFixed(0)} %${perRun.length > 1 ? ` (runs: ${perRun.map((r) => r.toFixed(0)).join(', ')} %)` : ''}`;
      };
      const costs = PHASES.filter((phase) => cpuPerUser[phase].length).map((phase) => `${phase} ${median(cpuPerUser[phase]).toFixed(1)}`);
      say();
      say(`machine CPU per user, medians (ms): ${costs.join(', ')}`);
      say('the same ratios by CPU per user (what the rates would give if each phase had every core all the time):');
      if (rates.ceiling.length) say(`pipeline / orchestration ceiling: ${byCpu('pipeline', 'ceiling')}`);
      if (rates.floor.length) say(`pipeline / Temporal floor:        ${byCpu('pipeline', 'floor')}`);
    }
    say(`emails received by the sink: ${sink.received}`);
  } finally {
    shared.mailer.close();
    await sink.stop();
  }
}

await main();

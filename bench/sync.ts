/*
 * flowthru benchmark: N generated users through the full add-sync pipeline (numbers and email
 * included, SMTP a local sink), then an update sync after 100 of them changed (50 moved to another
 * site), the add sync again with two automatic provisioning targets (entries in a real slapd and users in a
 * SCIM server built on scimmy), with two references measured in the same run:
 *   - orchestration ceiling: the same workflows with activities that do nothing;
 *   - no durability: the same adapters and activity code called directly, without Temporal.
 *
 *   npm run bench              # 2,000 users, in-memory Temporal store
 *   npm run bench -- 10000     # 10,000 users
 *   npm run bench -- 2000 --db-file   # Temporal dev server on a file-backed store
 *
 * A measurement, not a test: it prints a report and asserts nothing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
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
import { startTemporalDevServer } from '../src/demo/temporal-dev-server.js';
import { createWorker, WORKER_TUNING, workflowSource } from '../src/worker/index.js';
import { DEFAULT_WINDOW } from '../src/workflows/sync-source.js';
import { startSlapd } from '../src/demo/slapd.js';
import { startScimServer } from '../test/support/scim-server.js';

const args = process.argv.slice(2);
const users = Number(args.find((a) => /^\d+$/.test(a)) ?? 2000);
const fileStore = args.includes('--db-file');
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

/** Peak resident memory of this process (client + worker), sampled. */
function memorySampler() {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100);
  return {
    reset: () => (peak = process.memoryUsage().rss),
    peak: () => peak,
    stop: () => clearInterval(timer),
  };
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
    reserveNumber: async (input) => ({ number: `n${input.userId}` }),
    provisionServices: done,
    provisionProfile: async (input) => ({ number: `n${input.userId}` }),
    offboardUser: async () => ({ reason: 'gone' }),
    abandonProvisioning: done,
    finishTargets: done,
    pushToTarget: async () => ({ outcome: 'pushed', summary: 'nothing' }),
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

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'flowthru-bench-'));
  writeFileSync(join(dir, 'users.csv'), directory(users));
  const dbName = `flowthru_bench_${randomBytes(3).toString('hex')}`;
  await admin(`create database "${dbName}"`);
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  const db = createDatabase(dbUrl.toString(), { max: 20 });
  const sink = new SmtpSink();
  await sink.start(0);
  const temporal = await startTemporalDevServer({
    port: 20000 + Math.floor(Math.random() * 20000),
    uiPort: 0,
    headless: true,
    ...(fileStore ? { dbFile: join(dir, 'temporal.db') } : {}),
  });
  const memory = memorySampler();
  const lines: string[] = [];
  const say = (line = '') => {
    lines.push(line);
    console.log(line);
  };
  try {
    await migrateToLatest(db);
    const configFile = join(dir, 'bench.yaml');
    writeFileSync(configFile, stringify(configFor(dir, sink.port, ['pipeline', 'direct'])));
    const loaded = await loadConfigFile(configFile);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const { version } = await applyConfig(db, loaded.config);

    // Payloads are encrypted as in production; a key of the run's own when none is set.
    if (!process.env.FLOWTHRU_PAYLOAD_KEYS) Object.assign(process.env, freshPayloadKeyEnv('bench'));
    const dataConverter = dataConverterFromEnv();
    const connection = await Connection.connect({ address: temporal.address });
    const client = new Client({ connection, dataConverter });
    const mailer = createSmtpMailer();
    const deps = { db, snapshots: new ConfigSnapshots(db), mailer, client };

    say(`flowthru benchmark: ${users} users, Temporal dev server with ${fileStore ? 'a file-backed (SQLite) store' : 'the in-memory store'}`);
    say(`machine: ${(await import('node:os')).cpus().length} cores; client, worker, Temporal and PostgreSQL share them`);
    say(`worker: ${JSON.stringify(WORKER_TUNING)}, sync window ${DEFAULT_WINDOW}`);
    say();

    // 1. The full pipeline.
    const taskQueue = 'bench-pipeline';
    const native = await NativeConnection.connect({ address: temporal.address });
    const worker = await createWorker({ connection: native, client, dataConverter, db, mailer, namespace: 'default', taskQueue });
    const running = worker.run();
    memory.reset();
    let started = performance.now();
    const report = await runSync(client, { customer: 'pipeline', source: 'hr', mode: 'add', configVersion: version, taskQueue });
    const pipelineSeconds = (performance.now() - started) / 1000;
    const pipelinePeak = memory.peak();
    const latencies = (
      await db
        .selectFrom('transaction_log')
        .select((eb) => [eb.fn.min('started_at').as('first'), eb.fn.max('ended_at').as('last')])
        .where('kind', '=', 'step')
        .groupBy('user_id')
        .execute()
    )
      .map((r) => new Date(r.last as unknown as string).getTime() - new Date(r.first as unknown as string).getTime())
      .sort((a, b) => a - b);
    const sample = await client.workflow.getHandle('onboard/pipeline/hr/B7').fetchHistory();
    const syncRuns: unknown[] = [];
    for await (const run of client.workflow.list({ query: `WorkflowId = 'sync/pipeline/hr'` })) syncRuns.push(run);

    // 1b. An update sync after 100 users changed: its cost should follow the 100, not the N.
    writeFileSync(join(dir, 'users.csv'), directory(users, CHANGED));
    const passesBefore = await countPasses(db);
    started = performance.now();
    const updated = await runSync(client, { customer: 'pipeline', source: 'hr', mode: 'update', taskQueue });
    const updateSeconds = (performance.now() - started) / 1000;
    const updatePasses = (await countPasses(db)) - passesBefore;
    writeFileSync(join(dir, 'users.csv'), directory(users));

    // 1c. The same add sync with two automatic targets (slapd entries and a SCIM service): what pushing costs.
    const slapd = await startSlapd({ entries: [{ dn: 'ou=phones,dc=flowthru,dc=test', attributes: { objectClass: ['top', 'organizationalUnit'], ou: 'phones' } }], sizeLimit: users + 10 });
    const scim = await startScimServer({ token: 'bench-token' });
    Object.assign(process.env, { BENCH_LDAP_PASSWORD: slapd.adminPassword, BENCH_SCIM_TOKEN: 'bench-token' });
    writeFileSync(configFile, stringify(configFor(dir, sink.port, ['pipeline', 'direct', 'targeted'], { slapd, scimUrl: scim.url })));
    const withTargets = await loadConfigFile(configFile);
    if (!withTargets.ok) throw new Error(JSON.stringify(withTargets.problems));
    const targetedVersion = (await applyConfig(db, withTargets.config)).version;
    started = performance.now();
    const targeted = await runSync(client, { customer: 'targeted', source: 'hr', mode: 'add', configVersion: targetedVersion, taskQueue });
    const targetedSeconds = (performance.now() - started) / 1000;
    const pushes = await db.selectFrom('target_state').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'provisioned').executeTakeFirstOrThrow();
    const scimUsers = scim.users().length;
    const targetedSample = await client.workflow.getHandle('onboard/targeted/hr/B7').fetchHistory();
    await scim.close();
    await slapd.close();
    worker.shutdown();
    await running;
    await native.close();

    // 2. Orchestration ceiling: the same workflows, activities that do nothing.
    const ceilingQueue = 'bench-ceiling';
    const ceilingNative = await NativeConnection.connect({ address: temporal.address });
    const real = createActivities({ ...deps, taskQueue: ceilingQueue });
    const ceilingWorker = await Worker.create({
      connection: ceilingNative,
      taskQueue: ceilingQueue,
      dataConverter,
      // Starting pipelines and passing their outcomes back are the orchestration itself: real.
      activities: { ...noopActivities(), startUserPipelines: real.startUserPipelines, recordOutcome: real.recordOutcome, collectOutcomes: real.collectOutcomes },
      ...workflowSource(),
      ...WORKER_TUNING,
    });
    const ceilingRunning = ceilingWorker.run();
    started = performance.now();
    await runSync(client, { customer: 'ceiling', source: 'hr', mode: 'add', configVersion: version, taskQueue: ceilingQueue });
    const ceilingSeconds = (performance.now() - started) / 1000;
    ceilingWorker.shutdown();
    await ceilingRunning;
    await ceilingNative.close();

    // 3. The same adapters and activity code, called directly: no Temporal, no durability.
    const direct = createActivities({ ...deps, taskQueue: 'unused' });
    started = performance.now();
    let cursor = null;
    const concurrency = WORKER_TUNING.maxConcurrentLocalActivityExecutions;
    do {
      const page: Awaited<ReturnType<Activities['readSourcePage']>> = await direct.readSourcePage({ customer: 'direct', source: 'hr', configVersion: version, cursor, pageSize: 500, syncId: 'direct' });
      const queue = [...page.targets];
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          for (let target = queue.shift(); target; target = queue.shift()) {
            const ids: StepInput = { userId: target.userId, customer: 'direct', configVersion: version, mode: 'add', workflowId: `direct/${target.externalId}`, runId: `direct-${target.externalId}`, attempt: 1 };
            await direct.createLocalUser(ids);
            await direct.moveUser(ids);
            const matched = await direct.matchProfile(ids);
            const reservation = await direct.reserveNumber({ ...ids, pool: matched.numberFrom ?? 'site' });
            await direct.provisionServices({ ...ids, number: reservation.number });
            await direct.sendWelcomeEmail(ids);
          }
        }),
      );
      cursor = page.next;
    } while (cursor);
    const directSeconds = (performance.now() - started) / 1000;
    mailer.close();
    await connection.close();

    const rate = (seconds: number) => users / seconds;
    const pipelineRate = rate(pipelineSeconds);
    say(`pipeline          ${pipelineRate.toFixed(1).padStart(7)} users/s   (${pipelineSeconds.toFixed(1)} s; ${report.counts.provisioned} provisioned, ${report.counts.emailed} emailed)`);
    say(`  per-user latency, first step to last: p50 ${percentile(latencies, 50)} ms, p95 ${percentile(latencies, 95)} ms`);
    say(`  peak memory of this process (client + worker): ${(pipelinePeak / 1024 / 1024).toFixed(0)} MiB`);
    say(`  events per onboardUser history: ${sample.events?.length ?? '?'}; sync runs (continue-as-new): ${syncRuns.length}`);
    say(
      `update sync       ${updateSeconds.toFixed(1).padStart(7)} s         (${CHANGED} of ${users} changed: ${updated.counts.imported} imported, ` +
        `${updatePasses} pipelines started, ${updated.counts.moved} moved, ${updated.counts.provisioned} provisioned, ${updated.counts.emailed} emailed)`,
    );
    say(
      `with 2 targets    ${rate(targetedSeconds).toFixed(1).padStart(7)} users/s   (${targetedSeconds.toFixed(1)} s; ${targeted.counts.provisioned} provisioned; ` +
        `LDAP write-back to slapd + SCIM, automatic: ${pushes.n} pushes, ${scimUsers} SCIM users; ${((rate(targetedSeconds) / pipelineRate) * 100).toFixed(0)} % of the run without; ` +
        `${targetedSample.events?.length ?? '?'} events per onboardUser history)`,
    );
    say(`orchestration     ${rate(ceilingSeconds).toFixed(1).padStart(7)} users/s   (same workflows, no-op activities)`);
    say(`no durability     ${rate(directSeconds).toFixed(1).padStart(7)} users/s   (same adapters, no Temporal, ${concurrency} at a time)`);
    say();
    say(`pipeline / orchestration ceiling: ${((pipelineRate / rate(ceilingSeconds)) * 100).toFixed(0)} %`);
    say(`pipeline / no durability:         ${((pipelineRate / rate(directSeconds)) * 100).toFixed(0)} %`);
    say(`emails received by the sink: ${sink.messages.length} (pipeline ${report.counts.emailed} + direct ${sink.messages.length - report.counts.emailed})`);
  } finally {
    memory.stop();
    await db.destroy();
    await sink.stop();
    await temporal.stop();
    await admin(`drop database if exists "${dbName}" with (force)`);
  }
}

await main();

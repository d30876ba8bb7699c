/*
 * Records the histories that test/replay.test.ts replays. Opt-in, because the recordings are
 * committed: run it after a deliberate change to workflow code (see the README, "Replay tests").
 * Each recording is a set of its own, test/histories/<set>/, sealed with the fixed replay key
 * (test/support/payload-keys.ts); a set that exists is never overwritten, so the histories of
 * older code keep replaying against the new.
 *
 *   FLOWTHRU_RECORD_HISTORIES=<set> FLOWTHRU_PAYLOAD_KEY_ID=replay-1 npx vitest run test/record-histories.test.ts
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEFAULT_TEMPORAL_BIN } from '../src/demo/temporal-dev-server.js';
import { onboardWorkflowId, reprovisionWorkflowId, syncWorkflowId, targetJobWorkflowId } from '../src/workflows/config.js';
import { retrySignal } from '../src/workflows/messages.js';
import { WorkflowFailedError } from '@temporalio/client';
import { startUserPipeline } from '../src/adapters/temporal/user-pipeline.js';
import { startFakeGraph } from './support/fake-graph.js';
import { makeWebhookSecret, startWebhookReceiver } from './support/webhook-receiver.js';
import { acmeCsv, PipelineHarness } from './support/pipeline.js';
import { REPLAY_KEY_ID } from './support/payload-keys.js';

const RECORD = process.env.FLOWTHRU_RECORD_HISTORIES;
const OUT = join(import.meta.dirname, 'histories', RECORD ?? 'unused');

let h: PipelineHarness;
/** Every customer applied so far: an apply may not drop a customer with users on record. */
const customers = new Map<string, unknown>();

/** Applies the customers recorded so far with `added` (replacing one of the same name). */
function applyWith(...added: { name: string }[]): Promise<number> {
  for (const customer of added) customers.set(customer.name, customer);
  return h.apply({ version: 1, customers: [...customers.values()] });
}

function config(numbers: number) {
  return {
    version: 1,
    customers: [
      {
        name: 'rec',
        settings: {
          flowThrough: { enabled: true, addSync: true, criteria: 'ftp' },
          welcomeEmail: { enabled: true, from: 'IT <it@example.com>' },
          smtp: { host: '127.0.0.1', port: h.smtp.port, security: 'none' },
        },
        criteria: [
          { name: 'chicago', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Chicago' } },
          { name: 'eng', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Engineering' } },
          { name: 'field', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Field' } },
        ],
        profiles: [
          { name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }] },
          // No line: its failure (no mobile for single number reach) does not race the others for a number.
          { name: 'field', services: [{ kind: 'singleNumberReach' }] },
        ],
        ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'eng', profile: 'line' }, { criteria: 'field', profile: 'field' }] }],
        sources: [{ name: 'hr', type: 'csv', userType: 'csv', path: `${h.dir}/rec.csv`, externalId: 'employee_id', attributeMap: { employee_id: 'employeeId', login: 'username', mail: 'email', given_name: 'firstName', department: 'department', city: 'city' } }],
        sites: [{ name: 'hq', moveCriteria: { csv: 'chicago' }, numberRanges: [{ from: '6000', to: String(6000 + numbers - 1) }] }],
      },
    ],
  };
}

/** Exports a history in the JSON form Temporal's CLI and UI use (what replay reads). */
async function save(name: string, workflowId: string, runId?: string) {
  const bin = process.env.FLOWTHRU_TEMPORAL_BIN ?? DEFAULT_TEMPORAL_BIN;
  const args = ['workflow', 'show', '--address', inject('temporalAddress'), '--workflow-id', workflowId, '--output', 'json'];
  if (runId) args.push('--run-id', runId);
  const history = JSON.parse(execFileSync(bin, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }));
  writeFileSync(join(OUT, `${name}.json`), `${JSON.stringify({ workflowId, history }, null, 1)}\n`, { flag: 'wx' });
}

describe.skipIf(!RECORD)('record workflow histories for replay tests', () => {
  beforeAll(async () => {
    if (!/^[a-z0-9-]+$/.test(RECORD!)) throw new Error('FLOWTHRU_RECORD_HISTORIES names the set to record: lower-case letters, digits and "-"');
    if (existsSync(OUT)) throw new Error(`${OUT} exists: a recorded set is never overwritten; name a new one`);
    if (process.env.FLOWTHRU_PAYLOAD_KEY_ID !== REPLAY_KEY_ID) throw new Error(`record with FLOWTHRU_PAYLOAD_KEY_ID=${REPLAY_KEY_ID}, the key replay decodes with`);
    mkdirSync(OUT);
    h = await PipelineHarness.create();
    await h.startWorker();
  });
  afterAll(async () => h?.close());

  it('records syncSource and every onboardUser outcome', async () => {
    const version = await applyWith(config(2).customers[0]!);
    h.writeFile(
      'rec.csv',
      acmeCsv([
        { employee_id: 'U1', login: 'u1', mail: 'u1@example.com', given_name: 'Una', department: 'Engineering', city: 'Chicago' },
        { employee_id: 'U2', login: 'u2', mail: 'u2@example.com', given_name: 'Ulf', department: 'Engineering', city: 'Boston' },
        { employee_id: 'U3', login: 'u3', mail: 'u3@example.com', given_name: 'Uri', department: 'Field', city: 'Chicago' },
        { employee_id: 'U4', login: 'u4', mail: 'u4@example.com', given_name: 'Uwe', department: 'Engineering', city: 'Chicago' },
        { employee_id: 'U5', login: 'u5', mail: 'u5@example.com', given_name: 'Ute', department: 'Engineering', city: 'Chicago' },
      ]),
    );
    // A tiny history limit makes the sync continue as new, so that path is recorded too.
    const handle = await h.startSync('rec', 'hr', version, { pageSize: 2, window: 2, maxHistoryEvents: 40 });
    const report = await handle.result();
    expect(report.counts).toMatchObject({ provisioned: 2, unplaced: 1, failed: 1, blocked: 1 });
    const runs = [];
    for await (const run of h.client.workflow.list({ query: `WorkflowId = '${handle.workflowId}'` })) runs.push(run);
    runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
    expect(runs.length).toBeGreaterThan(1);
    await save('syncSource-first-run', handle.workflowId, runs[0]!.runId);
    await save('syncSource-last-run', handle.workflowId, runs.at(-1)!.runId);

    const blocked = (await h.db.selectFrom('users').select('external_id').where('status', '=', 'blocked').executeTakeFirstOrThrow()).external_id;
    await applyWith(config(3).customers[0]!);
    const blockedHandle = h.client.workflow.getHandle(onboardWorkflowId('rec', 'hr', blocked));
    await blockedHandle.signal(retrySignal);
    await blockedHandle.result();

    const byStatus = async (status: 'unplaced' | 'failed') =>
      (await h.db.selectFrom('users').select('external_id').where('status', '=', status).orderBy('external_id').executeTakeFirstOrThrow()).external_id;
    const provisioned = ['U1', 'U4', 'U5'].find((id) => id !== blocked)!;
    await save('onboardUser-provisioned', onboardWorkflowId('rec', 'hr', provisioned));
    await save('onboardUser-unplaced', onboardWorkflowId('rec', 'hr', await byStatus('unplaced')));
    await save('onboardUser-compensated', onboardWorkflowId('rec', 'hr', await byStatus('failed')));
    await save('onboardUser-blocked-then-retried', blockedHandle.workflowId);
    expect(syncWorkflowId('rec', 'hr')).toBe(handle.workflowId);
  }, 120_000);

  it('records an onboardUser blocked for a tenant licence, then retried', async () => {
    const graph = await startFakeGraph({
      users: ['L1', 'L2'].map((id) => ({ id, userPrincipalName: `${id.toLowerCase()}@example.com`, city: 'Chicago', department: 'Engineering' })),
      skus: [{ skuId: 'e43b5b99-8dfb-405f-9987-dc307f34bcbd', skuPartNumber: 'MCOEV', consumedUnits: 0, prepaidUnits: { enabled: 1 } }],
    });
    process.env.FLOWTHRU_RECORD_GRAPH_SECRET = graph.clientSecret;
    try {
      const tenant = {
        name: 'tenant',
        type: 'entra',
        userType: 'microsoft',
        tenantId: graph.tenantId,
        clientId: graph.clientId,
        clientSecretEnv: 'FLOWTHRU_RECORD_GRAPH_SECRET',
        authorityUrl: graph.url,
        graphUrl: graph.url,
        caFile: graph.caFile,
      };
      const base = config(3);
      const customer = { ...base.customers[0]!, name: 'lic' };
      customer.profiles = [{ name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }, { kind: 'teams', licences: ['MCOEV'] } as never] }];
      customer.ftpCriteria = [{ name: 'ftp', rules: [{ criteria: 'eng', profile: 'line' }] }];
      customer.sources = [tenant as never];
      customer.sites = [{ name: 'hq', moveCriteria: { microsoft: 'chicago' } as never, numberRanges: [{ from: '7000', to: '7009' }] }];
      const version = await applyWith(customer);
      const report = await h.sync('lic', 'tenant', version);
      expect(report.counts).toMatchObject({ provisioned: 1, blocked: 1 });
      const blocked = (
        await h.db
          .selectFrom('users')
          .innerJoin('customers', 'customers.id', 'users.customer_id')
          .select('users.external_id')
          .where('customers.name', '=', 'lic')
          .where('users.status', '=', 'blocked')
          .executeTakeFirstOrThrow()
      ).external_id;
      graph.updateSku('MCOEV', { prepaidUnits: { enabled: 2 } });
      await h.sync('lic', 'tenant', version, { mode: 'update' });
      const handle = h.client.workflow.getHandle(onboardWorkflowId('lic', 'tenant', blocked));
      await handle.signal(retrySignal);
      await handle.result();
      await save('onboardUser-licence-blocked-then-retried', handle.workflowId);
    } finally {
      await graph.stop();
    }
  }, 120_000);

  it('records the lifecycle: a move, an offboarding and a restore, and the syncs that did them', async () => {
    const base = config(5);
    const customer = { ...base.customers[0]!, name: 'life' };
    customer.settings = { ...customer.settings, flowThrough: { ...customer.settings.flowThrough, updateSync: true }, numberCooling: { enabled: true, days: 30 } } as never;
    customer.criteria = [...customer.criteria, { name: 'dallas', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Dallas' } }];
    customer.sources = [{ ...customer.sources[0]!, path: `${h.dir}/life.csv` }];
    customer.sites = [...customer.sites, { name: 'branch', moveCriteria: { csv: 'dallas' }, numberRanges: [{ from: '8000', to: '8004' }] }];
    const version = await applyWith(customer);
    const row = (id: string, city: string) => ({ employee_id: id, login: id.toLowerCase(), mail: `${id.toLowerCase()}@example.com`, given_name: id, department: 'Engineering', city });
    h.writeFile('life.csv', acmeCsv([row('M1', 'Chicago'), row('M2', 'Chicago')]));
    expect((await h.sync('life', 'hr', version)).counts).toMatchObject({ placed: 2, provisioned: 2 });
    h.writeFile('life.csv', acmeCsv([row('M1', 'Dallas'), row('M2', 'Chicago')]));
    expect((await h.sync('life', 'hr', version, { mode: 'update' })).counts).toMatchObject({ moved: 1, provisioned: 1 });
    await save('onboardUser-moved', onboardWorkflowId('life', 'hr', 'M1'));
    h.writeFile('life.csv', acmeCsv([row('M1', 'Dallas')]));
    const handle = await h.startSync('life', 'hr', version, { mode: 'delete', allowDeletes: 1 });
    expect((await handle.result()).counts).toMatchObject({ removed: 1 });
    await save('syncSource-delete', handle.workflowId);
    await save('onboardUser-offboarded', onboardWorkflowId('life', 'hr', 'M2'));
    h.writeFile('life.csv', acmeCsv([row('M1', 'Dallas'), row('M2', 'Chicago')]));
    expect((await h.sync('life', 'hr', version)).counts).toMatchObject({ restored: 1, provisioned: 1 });
    await save('onboardUser-restored', onboardWorkflowId('life', 'hr', 'M2'));
  }, 120_000);

  it('records targets: a user pushed to an automatic and a queued target, moved and offboarded; the queued job; reprovision all', async () => {
    const secret = makeWebhookSecret();
    const hooks = await startWebhookReceiver({ secret });
    process.env.REC_WEBHOOK_SECRET = secret;
    try {
      const base = config(5);
      const customer = { ...base.customers[0]!, name: 'pushed' } as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      customer.settings = { ...customer.settings, flowThrough: { ...customer.settings.flowThrough, updateSync: true } };
      customer.criteria = [...customer.criteria, { name: 'dallas', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Dallas' } }];
      customer.sources = [{ ...customer.sources[0]!, path: `${h.dir}/pushed.csv` }];
      customer.sites = [...customer.sites, { name: 'branch', moveCriteria: { csv: 'dallas' }, numberRanges: [{ from: '8000', to: '8004' }] }];
      customer.targets = [
        { name: 'inline', kind: 'webhook', url: hooks.url, secretEnv: 'REC_WEBHOOK_SECRET', retryInterval: '1s' },
        { name: 'later', kind: 'webhook', mode: 'queue', url: hooks.url, secretEnv: 'REC_WEBHOOK_SECRET', retryInterval: '1s' },
      ];
      const version = await applyWith(customer as { name: string });
      const row = (id: string, city: string) => ({ employee_id: id, login: id.toLowerCase(), mail: `${id.toLowerCase()}@example.com`, given_name: id, department: 'Engineering', city });
      h.writeFile('pushed.csv', acmeCsv([row('T1', 'Chicago'), row('T2', 'Chicago')]));
      expect((await h.sync('pushed', 'hr', version)).counts).toMatchObject({ provisioned: 2 });
      const t1 = await h.userRow('pushed', 'T1');
      await h.client.workflow.getHandle(targetJobWorkflowId('pushed', 'later', t1.id)).result();
      await save('targetJob-delivered', targetJobWorkflowId('pushed', 'later', t1.id));
      h.writeFile('pushed.csv', acmeCsv([row('T1', 'Dallas'), row('T2', 'Chicago')]));
      // The move's push is refused once: its first try (a local activity since push-local-first),
      // then the retry after the interval.
      hooks.respondWith([503]);
      expect((await h.sync('pushed', 'hr', version, { mode: 'update' })).counts).toMatchObject({ moved: 1, provisioned: 1 });
      h.writeFile('pushed.csv', acmeCsv([row('T1', 'Dallas')]));
      expect((await h.sync('pushed', 'hr', version, { mode: 'delete', allowDeletes: 1 })).counts).toMatchObject({ removed: 1 });
      await save('onboardUser-targets-provisioned-moved', onboardWorkflowId('pushed', 'hr', 'T1'));
      await save('onboardUser-targets-offboarded', onboardWorkflowId('pushed', 'hr', 'T2'));
      expect((await h.cli('target', 'reprovision', 'inline', '--customer', 'pushed', '--wait', '--json')).code).toBe(0);
      await save('reprovisionTarget-done', reprovisionWorkflowId('pushed', 'inline'));
      expect(hooks.events().length).toBeGreaterThanOrEqual(5);
    } finally {
      await hooks.close();
    }
  }, 120_000);

  it('records the other branches: SMTP down, a blocked wait interrupted by a change, a collapsed change, the first-change timer, PipelineFailed, a failed sync, an update sync from a watermark', async () => {
    const graph = await startFakeGraph({
      users: ['W1', 'W2'].map((id) => ({ id, userPrincipalName: `${id.toLowerCase()}@example.com`, city: 'Chicago', department: 'Marketing' })),
    });
    process.env.FLOWTHRU_RECORD_BRANCHES_SECRET = graph.clientSecret;
    try {
      const base = config(1);
      const customer = { ...base.customers[0]!, name: 'branches' } as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      customer.settings = { ...customer.settings, flowThrough: { ...customer.settings.flowThrough, updateSync: true } };
      customer.criteria = [...customer.criteria, { name: 'chicago-cloud', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Chicago' } }];
      customer.sources = [
        { ...customer.sources[0]!, path: `${h.dir}/branches.csv` },
        { ...customer.sources[0]!, name: 'gone', path: `${h.dir}/no-such-file.csv` },
        { name: 'tenant', type: 'entra', userType: 'microsoft', tenantId: graph.tenantId, clientId: graph.clientId, clientSecretEnv: 'FLOWTHRU_RECORD_BRANCHES_SECRET', authorityUrl: graph.url, graphUrl: graph.url, caFile: graph.caFile },
      ];
      customer.sites = [{ name: 'hq', moveCriteria: { csv: 'chicago', microsoft: 'chicago-cloud' }, numberRanges: [{ from: '6000', to: '6000' }] }];
      let version = await applyWith(customer as { name: string });
      const row = (id: string, department: string, title = '') => ({ employee_id: id, login: id.toLowerCase(), mail: `${id.toLowerCase()}@example.com`, given_name: id, department, city: 'Chicago', title });

      // The first-change timer: a pipeline started without a change gives up after a minute.
      const waiting = await h.client.workflow.start('onboardUser', {
        workflowId: onboardWorkflowId('branches', 'hr', 'T0'),
        taskQueue: h.taskQueue,
        args: [{ customer: 'branches', source: 'hr', externalId: 'T0', userId: '0' }],
      });

      // SMTP down: provisioned at once, the welcome sent by the patient path once the server is back.
      await h.smtp.stop();
      h.writeFile('branches.csv', acmeCsv([row('B1', 'Engineering')]));
      expect((await h.sync('branches', 'hr', version)).counts).toMatchObject({ provisioned: 1, emailed: 0 });
      await h.smtp.start();
      await h.client.workflow.getHandle(onboardWorkflowId('branches', 'hr', 'B1')).result();
      await save('onboardUser-smtp-down-patient-email', onboardWorkflowId('branches', 'hr', 'B1'));

      // A blocked wait interrupted by a change (a new title), blocked again, then retried with numbers added.
      h.writeFile('branches.csv', acmeCsv([row('B1', 'Engineering'), row('B2', 'Engineering')]));
      expect((await h.sync('branches', 'hr', version)).counts).toMatchObject({ blocked: 1 });
      h.writeFile('branches.csv', acmeCsv([row('B1', 'Engineering'), row('B2', 'Engineering', 'Lead')]));
      expect((await h.sync('branches', 'hr', version, { mode: 'update' })).counts).toMatchObject({ blocked: 1 });
      customer.sites = [{ ...customer.sites[0], numberRanges: [{ from: '6000', to: '6002' }] }];
      version = await applyWith(customer as { name: string });
      const b2 = h.client.workflow.getHandle(onboardWorkflowId('branches', 'hr', 'B2'));
      await b2.signal(retrySignal);
      await b2.result();
      await save('onboardUser-blocked-interrupted-by-change', b2.workflowId);

      // Two changes handed to one pipeline at once: collapsed, the newest wins.
      h.writeFile('branches.csv', acmeCsv([row('B1', 'Engineering'), row('B2', 'Engineering', 'Lead'), row('B3', 'Marketing')]));
      expect((await h.sync('branches', 'hr', version)).counts).toMatchObject({ unmatched: 1 });
      const b3 = await h.userRow('branches', 'B3');
      const hand = (mode: 'add' | 'update') => startUserPipeline(h.client, { taskQueue: h.taskQueue, customer: 'branches', source: 'hr', externalId: 'B3', userId: b3.id, change: { configVersion: version, mode } });
      await hand('update');
      await hand('update');
      await h.client.workflow.getHandle(onboardWorkflowId('branches', 'hr', 'B3')).result();
      await save('onboardUser-collapsed-change', onboardWorkflowId('branches', 'hr', 'B3'));

      // PipelineFailed: a user the database does not know (a broken invariant).
      await startUserPipeline(h.client, { taskQueue: h.taskQueue, customer: 'branches', source: 'hr', externalId: 'GHOST', userId: '987654321', change: { configVersion: version, mode: 'add' } });
      const ghost = await h.client.workflow.getHandle(onboardWorkflowId('branches', 'hr', 'GHOST')).result().catch((e: unknown) => e);
      expect(ghost).toBeInstanceOf(WorkflowFailedError);
      await save('onboardUser-pipeline-failed', onboardWorkflowId('branches', 'hr', 'GHOST'));

      // A sync that fails: its file is not there.
      const failed = await h.startSync('branches', 'gone', version);
      expect(await failed.result().catch((e: unknown) => e)).toBeInstanceOf(WorkflowFailedError);
      await save('syncSource-failed', failed.workflowId);

      // An update sync from a watermark: it reads only what changed (Graph's delta link).
      expect((await h.sync('branches', 'tenant', version)).counts).toMatchObject({ seen: 2 });
      graph.updateUser('W1', { jobTitle: 'Director' });
      const update = await h.startSync('branches', 'tenant', version, { mode: 'update' });
      expect((await update.result()).counts).toMatchObject({ seen: 1 });
      await save('syncSource-update-from-watermark', update.workflowId);

      expect(await waiting.result()).toMatchObject({ status: 'imported' });
      await save('onboardUser-first-change-timer', waiting.workflowId);
    } finally {
      await graph.stop();
    }
  }, 240_000);
});

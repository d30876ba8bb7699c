import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startSync } from '../../src/client/sync.js';
import type { SyncReport } from '../../src/workflows/messages.js';
import { acmeCsv, oneSiteCustomer, PipelineHarness } from '../support/pipeline.js';

/*
 * Schedules (issue 10): declared on a source, reconciled with Temporal by `config apply`, steered
 * with `flowthru schedule`, one read of the source for every mode a run lists, and never two syncs
 * of a source at once.
 */

let h: PipelineHarness;
let worker: Awaited<ReturnType<PipelineHarness['startWorker']>> | undefined;

const people = (n: number) => Array.from({ length: n }, (_, i) => ({ employee_id: `S${i}`, login: `s${i}`, mail: `s${i}@example.com`, given_name: `S${i}` }));

function configFile(schedule: Record<string, unknown> | undefined): string {
  const customer = oneSiteCustomer('sched', { csvPath: `${h.dir}/sched.csv`, smtpPort: h.smtp.port, range: { from: '5000', to: '5099' } });
  if (schedule) (customer.sources[0] as Record<string, unknown>).schedule = schedule;
  return h.writeFile(`sched-${Math.random().toString(36).slice(2)}.yaml`, stringify({ version: 1, customers: [customer] }));
}

const json = async <T>(...args: string[]): Promise<T> => {
  const result = await h.cli(...args);
  expect(result.code, `${result.err}\n${result.out}`).toBe(0);
  return JSON.parse(result.out) as T;
};

interface View {
  scheduleId: string;
  modes: string[];
  spec: string;
  paused: boolean;
  nextRuns: string[];
  recentRuns: { workflowId: string }[];
  skippedOverlap: number;
}

beforeAll(async () => {
  h = await PipelineHarness.create();
  worker = await h.startWorker();
  h.writeFile('sched.csv', acmeCsv(people(5)));
});
afterAll(async () => h?.close());

describe('schedules', () => {
  it('config apply creates the schedule the source declares; schedule list shows it with its next runs', async () => {
    const applied = await json<{ schedules: { reconciled: boolean; created: string[] } }>('config', 'apply', configFile({ every: '1h', modes: ['add', 'update', 'delete'] }), '--json');
    expect(applied.schedules).toMatchObject({ reconciled: true, created: ['flowthru/sched/hr'] });
    const [view] = await json<View[]>('schedule', 'list', '--customer', 'sched', '--json');
    expect(view).toMatchObject({ scheduleId: 'flowthru/sched/hr', modes: ['add', 'update', 'delete'], spec: 'every 1 hour', paused: false });
    expect(view!.nextRuns.length).toBeGreaterThan(0);
    // The same file again changes nothing in Temporal.
    const again = await json<{ schedules: { unchanged: string[] } }>('config', 'apply', configFile({ every: '1h', modes: ['add', 'update', 'delete'] }), '--json');
    expect(again.schedules).toMatchObject({ unchanged: ['flowthru/sched/hr'] });
  });

  it('a triggered run reads the source once and does every mode it lists, with the newest configuration', async () => {
    const triggered = await json<{ outcome: string; workflowId: string }>('schedule', 'trigger', 'hr', '--customer', 'sched', '--json');
    expect(triggered).toMatchObject({ outcome: 'started', workflowId: expect.stringMatching(/^sync\/sched\/hr\/scheduled/) });
    const report = (await h.client.workflow.getHandle(triggered.workflowId).result()) as SyncReport;
    expect(report).toMatchObject({ status: 'succeeded', modes: ['add', 'update', 'delete'], counts: { seen: 5, placed: 5, provisioned: 5, removed: 0 } });
    const [view] = await json<View[]>('schedule', 'list', '--customer', 'sched', '--json');
    expect(view!.recentRuns.map((r) => r.workflowId)).toContain(triggered.workflowId);
  });

  it('a trigger while the previous run is still going is skipped (overlap: skip)', async () => {
    // With no worker, a run starts and stays running: the next trigger finds it there.
    await worker!.stop();
    const first = await json<{ outcome: string; workflowId: string }>('schedule', 'trigger', 'hr', '--customer', 'sched', '--json');
    expect(first.outcome).toBe('started');
    const second = await json<{ outcome: string; running: string[] }>('schedule', 'trigger', 'hr', '--customer', 'sched', '--json');
    expect(second).toEqual({ scheduleId: 'flowthru/sched/hr', outcome: 'skipped', running: [first.workflowId] });
    const [view] = await json<View[]>('schedule', 'list', '--customer', 'sched', '--json');
    expect(view!.skippedOverlap).toBe(1);

    // A manual sync of the same source, started meanwhile, and the scheduled run: one claims the
    // source, the other does nothing and says so. Both add the new people, so whichever claims the
    // source first is still at work when the other begins (a delete-only manual sync could finish,
    // and release the source, before the scheduled run even began: then both would succeed).
    h.writeFile('sched.csv', acmeCsv(people(60)));
    // No configuration version: the newest when the sync starts, as a scheduled run does.
    const manual = await startSync(h.client, { customer: 'sched', source: 'hr', mode: 'add', modes: ['add', 'update', 'delete'], taskQueue: h.taskQueue });
    worker = await h.startWorker();
    const reports = (await Promise.all([h.client.workflow.getHandle(first.workflowId).result(), manual.result()])) as SyncReport[];
    expect(reports.map((r) => r.status).sort()).toEqual(['skipped', 'succeeded']);
    expect(reports.find((r) => r.status === 'skipped')!.reason).toMatch(/^another sync of sched\/hr is running/);
  });

  it('pause and unpause, with a note', async () => {
    const paused = await json<View & { note: string }>('schedule', 'pause', 'hr', '--customer', 'sched', '--note', 'migration tonight', '--json');
    expect(paused).toMatchObject({ paused: true, note: 'migration tonight', nextRuns: [] });
    // An apply of the same configuration leaves an operator's pause alone.
    await json('config', 'apply', configFile({ every: '1h', modes: ['add', 'update', 'delete'] }), '--json');
    expect((await json<View[]>('schedule', 'list', '--customer', 'sched', '--json'))[0]).toMatchObject({ paused: true });
    const running = await json<View>('schedule', 'unpause', 'hr', '--customer', 'sched', '--json');
    expect(running.paused).toBe(false);
  });

  it('fires on its own: every minute, a run starts without anyone asking', async () => {
    const applied = await json<{ schedules: { updated: string[] } }>('config', 'apply', configFile({ every: '1m', modes: ['add', 'update'] }), '--json');
    expect(applied.schedules).toMatchObject({ updated: ['flowthru/sched/hr'] });
    const before = new Set((await json<View[]>('schedule', 'list', '--customer', 'sched', '--json'))[0]!.recentRuns.map((r) => r.workflowId));
    // Intervals are aligned to the minute: the first run comes within a minute (plus the server's tick).
    let fired: string | undefined;
    await expect
      .poll(
        async () => {
          const [view] = await json<View[]>('schedule', 'list', '--customer', 'sched', '--json');
          fired = view!.recentRuns.map((r) => r.workflowId).find((id) => !before.has(id));
          return fired;
        },
        { timeout: 90_000, interval: 1_000 },
      )
      .toMatch(/^sync\/sched\/hr\/scheduled-/);
    const report = (await h.client.workflow.getHandle(fired!).result()) as SyncReport;
    expect(report).toMatchObject({ modes: ['add', 'update'], status: expect.stringMatching(/^(succeeded|skipped)$/) });
  }, 120_000);

  it('a changed declaration updates the schedule; a source without one loses it', async () => {
    const changed = await json<{ schedules: { updated: string[] } }>('config', 'apply', configFile({ cron: '0 6 * * 1-5', timeZone: 'Europe/Berlin', modes: ['add'] }), '--json');
    expect(changed.schedules).toMatchObject({ updated: ['flowthru/sched/hr'] });
    expect((await json<View[]>('schedule', 'list', '--customer', 'sched', '--json'))[0]).toMatchObject({ modes: ['add'], spec: 'cron "0 6 * * 1-5" in Europe/Berlin' });
    const dropped = await json<{ schedules: { deleted: string[] } }>('config', 'apply', configFile(undefined), '--json');
    expect(dropped.schedules).toMatchObject({ deleted: ['flowthru/sched/hr'] });
    expect(await json<View[]>('schedule', 'list', '--customer', 'sched', '--json')).toEqual([]);
    expect(await h.cli('schedule', 'trigger', 'hr', '--customer', 'sched')).toMatchObject({ code: 1, err: expect.stringMatching(/has no schedule/) });
  });

  it('config validate refuses a schedule that cannot work, with its path', async () => {
    const result = await h.cli('config', 'validate', configFile({ every: '30s', cron: 'nonsense', modes: ['add', 'remove'] }));
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/customers\[0\]\.sources\[0\]\.schedule/);
    expect(result.err).toMatch(/schedule\.modes\[1\]: a mode is one of add, update, delete/);
    expect(result.err).toMatch(/schedule\.every: a schedule runs at most once a minute/);
  });

  it("schedule list --customer shows that customer's schedules only", async () => {
    const both = (schedule: Record<string, unknown> | undefined) => {
      const customers = ['sched', 'other'].map((name, i) => {
        const customer = oneSiteCustomer(name, { csvPath: `${h.dir}/sched.csv`, smtpPort: h.smtp.port, range: { from: `${5000 + i * 1000}`, to: `${5099 + i * 1000}` } });
        if (schedule) (customer.sources[0] as Record<string, unknown>).schedule = schedule;
        return customer;
      });
      return h.writeFile(`both-${Math.random().toString(36).slice(2)}.yaml`, stringify({ version: 1, customers }));
    };
    try {
      const applied = await json<{ schedules: { created: string[] } }>('config', 'apply', both({ every: '6h', modes: ['add'] }), '--json');
      expect(applied.schedules.created).toEqual(['flowthru/sched/hr', 'flowthru/other/hr']);
      expect((await json<View[]>('schedule', 'list', '--customer', 'other', '--json')).map((v) => v.scheduleId)).toEqual(['flowthru/other/hr']);
      expect((await json<View[]>('schedule', 'list', '--customer', 'sched', '--json')).map((v) => v.scheduleId)).toEqual(['flowthru/sched/hr']);
      expect((await json<View[]>('schedule', 'list', '--json')).map((v) => v.scheduleId)).toEqual(['flowthru/other/hr', 'flowthru/sched/hr']);
    } finally {
      await json('config', 'apply', both(undefined), '--json');
    }
  });
});

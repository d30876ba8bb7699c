import type { Command } from 'commander';
import type { Client, ScheduleDescription, ScheduleHandle } from '@temporalio/client';
import { ScheduleNotFoundError } from '@temporalio/client';
import { loadConfigVersion } from '../../adapters/db/config-store.js';
import { readSettings } from '../../settings.js';
import { scheduleId } from '../../workflows/config.js';
import { resolveSource, table, temporalUiUrl, UserError, withDatabase, type CliIo } from '../cli.js';
import { declaredSchedules, listSchedules, scheduleView, type ScheduleDeclaration, type ScheduleView } from '../schedules.js';
import { withClient } from '../temporal.js';

/*
 * `flowthru schedule list|trigger|pause|unpause`: the schedules themselves are declared in the
 * configuration (`schedule:` on a source) and reconciled by `config apply`; these look at them and
 * steer them between applies.
 */

/** The schedule of SOURCE: the source must exist and declare one, and Temporal must have it. */
async function scheduleOfSource(client: Client, source: string, customer: string | undefined): Promise<{ handle: ScheduleHandle; description: ScheduleDescription }> {
  const { owner, declared } = await withDatabase(async (db) => {
    const target = await resolveSource(db, source, customer);
    const found = await loadConfigVersion(db, target.version);
    return { owner: target.customer, declared: found && declaredSchedules(found.config).some((d) => d.customer === target.customer && d.source === source) };
  });
  if (!declared) throw new UserError(`source "${source}" of customer "${owner}" has no schedule: add schedule: to the source in the configuration and apply it`);
  const id = scheduleId(owner, source);
  const handle = client.schedule.getHandle(id);
  try {
    return { handle, description: await handle.describe() };
  } catch (error) {
    if (!(error instanceof ScheduleNotFoundError)) throw error;
    throw new UserError(`schedule ${id} is in the configuration but not in Temporal yet: run flowthru config apply FILE again, or start a worker (it reconciles schedules at start)`);
  }
}

/** `2026-03-02 14:15:00Z` */
const when = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

function printSchedules(io: CliIo, views: readonly ScheduleView[]): void {
  if (views.length === 0) {
    io.out('No schedules: add schedule: to a source in the configuration and apply it.');
    return;
  }
  const rows = views.map((v) => ({
    schedule: v.scheduleId,
    modes: v.modes.join('+'),
    spec: v.spec,
    state: v.exists ? (v.paused ? 'paused' : 'active') : 'missing',
    'next runs': v.nextRuns.map(when),
  }));
  table(io, rows, ['schedule', 'modes', 'spec', 'state', 'next runs']);
  for (const view of views) {
    const running = new Set(view.running);
    const recent = view.recentRuns.slice(0, 3);
    if (!view.paused && view.exists && recent.length === 0 && view.skippedOverlap === 0) continue;
    io.out('');
    io.out(`${view.scheduleId}:`);
    if (view.paused || !view.exists) io.out(`  note: ${view.note ?? '-'}`);
    for (const run of recent) io.out(`  started ${when(run.startedAt)}  ${run.workflowId}${running.has(run.workflowId) ? '  (running)' : ''}`);
    if (view.recentRuns.length > recent.length) io.out(`  … ${view.recentRuns.length - recent.length} earlier (--json)`);
    if (view.skippedOverlap > 0) io.out(`  ${view.skippedOverlap} run${view.skippedOverlap === 1 ? '' : 's'} skipped: the one before was still running`);
  }
}

type TriggerOutcome = { outcome: 'started'; workflowId: string } | { outcome: 'skipped'; running: string[] } | { outcome: 'pending' };

/**
 * Triggers a run with overlap SKIP (the SDK's default would start one beside a running run), then
 * watches the schedule for a few seconds to say whether it started or was skipped.
 */
async function triggerAndWatch(handle: ScheduleHandle, before: ScheduleDescription): Promise<TriggerOutcome> {
  await handle.trigger('SKIP');
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const now = await handle.describe();
    if (now.info.numActionsTaken > before.info.numActionsTaken) {
      const newest = now.info.recentActions.at(-1);
      if (newest) return { outcome: 'started', workflowId: newest.action.workflow.workflowId };
    }
    if (now.info.numActionsSkippedOverlap > before.info.numActionsSkippedOverlap) {
      return { outcome: 'skipped', running: now.info.runningActions.map((run) => run.workflow.workflowId) };
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { outcome: 'pending' };
}

export function registerScheduleCommand(program: Command, io: CliIo): void {
  const schedule = program
    .command('schedule')
    .description('the Temporal Schedules of sources that declare schedule: in the configuration (config apply creates, updates and deletes them)');

  schedule
    .command('list')
    .option('--customer <name>', 'only this customer')
    .option('--json', 'machine-readable output')
    .description("flowthru's schedules: modes, when they run, paused or not, the next runs and the recent ones")
    .action(async (opts: { customer?: string; json?: boolean }) => {
      const settings = readSettings();
      const declared: ScheduleDeclaration[] = await withDatabase(async (db) => {
        const newest = await loadConfigVersion(db);
        return newest ? declaredSchedules(newest.config) : [];
      });
      const views = await withClient(settings, (client) =>
        listSchedules(
          client,
          settings.taskQueue,
          declared.filter((d) => !opts.customer || d.customer === opts.customer),
        ),
      );
      const shown = views.filter((v) => !opts.customer || v.customer === opts.customer);
      if (opts.json) io.out(JSON.stringify(shown, null, 2));
      else printSchedules(io, shown);
    });

  schedule
    .command('trigger')
    .argument('<source>', 'the source whose schedule runs now')
    .option('--customer <name>', 'the customer that owns the source (needed when several have one of that name)')
    .option('--json', 'machine-readable output')
    .description("run a source's schedule now (its modes, the newest configuration); skipped while its previous run is still going")
    .action(async (source: string, opts: { customer?: string; json?: boolean }) => {
      const settings = readSettings();
      const { id, result } = await withClient(settings, async (client) => {
        const { handle, description } = await scheduleOfSource(client, source, opts.customer);
        return { id: handle.scheduleId, result: await triggerAndWatch(handle, description) };
      });
      if (opts.json) {
        io.out(JSON.stringify({ scheduleId: id, ...result }));
        return;
      }
      if (result.outcome === 'started') io.out(`Triggered ${id}: started ${result.workflowId}: ${temporalUiUrl(settings, result.workflowId)}`);
      else if (result.outcome === 'skipped') {
        const running = result.running.length > 0 ? ` ${result.running.join(', ')}` : '';
        io.out(`Triggered ${id}, but the run was skipped: its previous run${running} is still going (overlap: skip).`);
      } else io.out(`Triggered ${id}; its run has not started yet: flowthru schedule list shows it when it does.`);
    });

  for (const [verb, pause] of [
    ['pause', true],
    ['unpause', false],
  ] as const) {
    schedule
      .command(verb)
      .argument('<source>', `the source whose schedule to ${verb}`)
      .option('--customer <name>', 'the customer that owns the source (needed when several have one of that name)')
      .option('--note <text>', 'why, shown in flowthru schedule list and in Temporal UI')
      .option('--json', 'machine-readable output')
      .description(
        pause
          ? 'pause a schedule (trigger still runs it); config apply leaves it paused unless the configuration changes its paused: key'
          : 'let a paused schedule run again; config apply leaves it running unless the configuration changes its paused: key',
      )
      .action(async (source: string, opts: { customer?: string; note?: string; json?: boolean }) => {
        const settings = readSettings();
        const note = opts.note ?? `${pause ? 'paused' : 'unpaused'} with flowthru schedule ${verb} by ${process.env.USER ?? 'unknown'}`;
        const view = await withClient(settings, async (client) => {
          const { handle } = await scheduleOfSource(client, source, opts.customer);
          await (pause ? handle.pause(note) : handle.unpause(note));
          return scheduleView(await handle.describe());
        });
        if (opts.json) io.out(JSON.stringify(view, null, 2));
        else io.out(`${pause ? 'Paused' : 'Unpaused'} ${view.scheduleId} (${note}).${view.nextRuns[0] ? ` Next run ${when(view.nextRuns[0])}.` : ''}`);
      });
  }
}

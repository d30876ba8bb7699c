import type { Command } from 'commander';
import { loadConfigVersion } from '../../adapters/db/config-store.js';
import { readSettings } from '../../settings.js';
import { table, temporalUiUrl, withDatabase, type CliIo } from '../cli.js';
import { cliActor, setSchedulePaused, triggerSchedule } from '../operations.js';
import { declaredSchedules, listSchedules, type ScheduleDeclaration, type ScheduleView } from '../schedules.js';
import { withClient } from '../temporal.js';
import { checkScope } from '../scope.js';

/*
 * `flowthru schedule list|trigger|pause|unpause`: the schedules themselves are declared in the
 * configuration (`schedule:` on a source) and reconciled by `config apply`; these look at them and
 * steer them between applies.
 */

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
        await checkScope(db, { customer: opts.customer });
        const newest = await loadConfigVersion(db);
        return newest ? declaredSchedules(newest.config) : [];
      });
      const shown = await withClient(settings, (client) => listSchedules(client, settings.taskQueue, declared, opts.customer ? { customer: opts.customer } : {}));
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
      const { scheduleId: id, ...result } = await withDatabase((db) => withClient(settings, (client) => triggerSchedule(db, client, source, opts.customer, cliActor())));
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
        const view = await withDatabase((db) => withClient(settings, (client) => setSchedulePaused(db, client, source, opts.customer, pause, cliActor(), note)));
        if (opts.json) io.out(JSON.stringify(view, null, 2));
        else io.out(`${pause ? 'Paused' : 'Unpaused'} ${view.scheduleId} (${note}).${view.nextRuns[0] ? ` Next run ${when(view.nextRuns[0])}.` : ''}`);
      });
  }
}

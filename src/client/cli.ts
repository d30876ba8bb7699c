import { ApplicationFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import type { syncSource } from '../workflows/sync-source.js';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { Kysely } from 'kysely';
import { loadConfigFile } from '../adapters/config-file.js';
import { MissingSecrets } from '../adapters/secrets.js';
import { PayloadKeyError } from '../adapters/temporal/codec.js';
import { applyConfig, ConfigApplyRefused, loadConfigVersion } from '../adapters/db/config-store.js';
import { createDatabase, DatabaseUrlError } from '../adapters/db/connection.js';
import { DatabaseMissing, ensureDatabase } from '../adapters/db/ensure.js';
import { databaseAddress, databaseUnavailableMessage } from '../adapters/db/errors.js';
import { migrateToLatest } from '../adapters/db/migrate.js';
import { listLog, listNumbers, listUsers } from '../adapters/db/queries.js';
import type { Database } from '../adapters/db/schema.js';
import { formatProblem, type ConfigProblem } from '../domain/config/validate.js';
import { readSettings, type Settings } from '../settings.js';
import { SYNC_MODES, syncModes, type SyncMode } from '../workflows/config.js';
import type { SyncReport } from '../workflows/messages.js';
import { PermanentError } from '../adapters/errors.js';
import { ConfigSnapshots } from '../adapters/db/snapshots.js';
import { closeLdapConnections } from '../adapters/sources/ldap.js';
import { registerCodecServerCommand } from './commands/codec-server.js';
import { registerConsoleCommand } from './commands/console.js';
import { cliActor, OperationRefused, startSyncAs } from './operations.js';
import { registerRetryCommand } from './commands/retry.js';
import { registerScheduleCommand } from './commands/schedule.js';
import { registerTargetCommand } from './commands/target.js';
import { registerUserCommand, whyInBrief } from './commands/user.js';
import { previewSource, type PreviewUser } from './preview.js';
import { previewCandidate } from './commands/impact.js';
import { describeReconcile, reconcileAfterApply } from './schedules.js';
import { SyncBusyError } from './sync.js';
import { describeChanges } from '../adapters/db/user-services.js';
import { withoutLetThrough } from '../domain/deletions.js';
import { checkScope } from './scope.js';
import { connectClient, TemporalUnreachableError } from './temporal.js';

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

const processIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** A failure the user can fix (bad input, an unknown name): exit status 1 with its message. */
export class UserError extends Error {}

/** Where Temporal UI shows a workflow (FLOWTHRU_TEMPORAL_UI, default the dev server's UI). */
export function temporalUiUrl(settings: Settings, workflowId: string): string {
  const base = process.env.FLOWTHRU_TEMPORAL_UI ?? 'http://127.0.0.1:8233';
  return `${base}/namespaces/${encodeURIComponent(settings.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

/** Long text cut to `max` characters for a table cell; --json has it whole. */
const shorten = (text: string | null, max: number) => (text && text.length > max ? `${text.slice(0, max - 1)}…` : text);

const counted = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Warnings go beside the result, on stderr: they never change what a command does or its exit status. */
function printWarnings(io: CliIo, file: string, warnings: readonly ConfigProblem[]): void {
  for (const warning of warnings) io.err(formatProblem(warning, file));
}

/** `problems` are errors (nothing was done); `warnings` come along, printed and counted apart. */
function reportProblems(io: CliIo, file: string, problems: readonly ConfigProblem[], warnings: readonly ConfigProblem[], json: boolean, verb: string): void {
  if (json) {
    io.out(JSON.stringify({ ok: false, file, problems, warnings }, null, 2));
    return;
  }
  for (const problem of problems) io.err(formatProblem(problem, file));
  printWarnings(io, file, warnings);
  const tally = warnings.length > 0 ? `${counted(problems.length, 'problem')} and ${counted(warnings.length, 'warning')}` : counted(problems.length, 'problem');
  io.err(`${tally} in ${file}; nothing was ${verb}.`);
}

/** Prints rows as aligned columns (the human form of the --json listings). */
export function table<T extends object>(io: CliIo, rows: readonly T[], columns: readonly (keyof T & string)[]): void {
  const stream = tableStream(io, columns);
  stream.rows(rows);
  stream.end();
}

/**
 * A table printed as its rows arrive, batch by batch: the column widths come from the first batch
 * that has rows (a later, longer cell overflows its column instead of holding every row back).
 */
export function tableStream<T extends object>(io: CliIo, columns: readonly (keyof T & string)[]) {
  const text = (v: unknown) => (v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(' ') || '-' : String(v));
  let widths: number[] | undefined;
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths![i]!)).join('  ').trimEnd();
  const header = (rows: readonly T[]) => {
    widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => text(r[c]).length)));
    io.out(line(columns.map((c) => c.toUpperCase())));
  };
  return {
    rows(rows: readonly T[]): void {
      if (rows.length === 0) return;
      if (!widths) header(rows);
      for (const row of rows) io.out(line(columns.map((c) => text(row[c]))));
    },
    end(): void {
      if (!widths) header([]);
    },
  };
}

/**
 * A JSON object printed as it is made: `{ "<key>": [` and its items as they arrive (from the first
 * batch on, so nothing is printed when the command fails before it), then the object's other
 * fields. Parsed, it is the object `JSON.stringify` would have printed, with `key` first.
 */
export function jsonArrayStream(io: CliIo, key: string) {
  let started = false;
  let pending: string | undefined;
  const indent = (text: string) => text.replace(/^/gm, '    ');
  const start = () => {
    if (started) return;
    started = true;
    io.out(`{\n  ${JSON.stringify(key)}: [`);
  };
  return {
    items(items: readonly unknown[]): void {
      start();
      for (const item of items) {
        if (pending !== undefined) io.out(`${pending},`);
        pending = indent(JSON.stringify(item, null, 2));
      }
    },
    end(rest: Record<string, unknown>): void {
      start();
      if (pending !== undefined) io.out(pending);
      const fields = JSON.stringify(rest, null, 2).split('\n').slice(1);
      io.out(fields.length > 1 ? `  ],\n${fields.join('\n')}` : '  ]\n}');
    },
  };
}

export async function withDatabase<T>(fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  const db = createDatabase(readSettings().databaseUrl, { max: 2 });
  try {
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

/** The customer that owns SOURCE in a configuration version (named, or the only one with it). */
export async function resolveSource(db: Kysely<Database>, source: string, customer: string | undefined, version?: number) {
  const found = await loadConfigVersion(db, version);
  if (!found) throw new UserError(version ? `configuration version ${version} does not exist` : 'no configuration has been applied yet: run flowthru config apply FILE');
  const owners = found.config.customers.filter((c) => (!customer || c.name === customer) && c.sources.some((s) => s.name === source));
  if (owners.length === 0) {
    throw new UserError(`no source "${source}"${customer ? ` for customer "${customer}"` : ''} in configuration version ${found.version}`);
  }
  if (owners.length > 1) {
    throw new UserError(`source "${source}" exists for customers ${owners.map((c) => c.name).join(', ')}: say which with --customer`);
  }
  return { customer: owners[0]!.name, version: found.version };
}

/** The exit status a finished sync's report calls for: 0 done, 3 deletions held, 4 skipped (another sync ran). */
export function syncExitCode(report: SyncReport): number {
  return report.status === 'held' ? 3 : report.status === 'skipped' ? 4 : 0;
}

export function printSyncReport(io: CliIo, report: SyncReport, json: boolean): void {
  const { counts } = report;
  const modes = report.modes ?? [report.mode];
  if (json) {
    // SPEC §5's counts, and what else the sync knows: records it could not use, by where they are.
    io.out(
      JSON.stringify({
        ok: report.status !== 'skipped',
        workflowId: report.workflowId,
        mode: report.mode,
        modes,
        status: report.status ?? 'succeeded',
        ...(report.reason ? { reason: report.reason } : {}),
        ...(report.held ? { held: report.held } : {}),
        customer: report.customer,
        source: report.source,
        configVersion: report.configVersion,
        counts,
        problems: report.problems,
      }),
    );
    return;
  }
  const what = `Sync of ${report.customer}/${report.source} (${modes.join(', ')})`;
  if (report.status === 'skipped') {
    io.out(`${what} did nothing: ${report.reason ?? 'another sync of the source was running'}.`);
    return;
  }
  io.out(`${what} ${report.status === 'held' ? 'finished, deletions held' : 'finished'}, configuration version ${report.configVersion}.`);
  io.out(
    `  seen ${counts.seen}, imported ${counts.imported}, placed ${counts.placed}, moved ${counts.moved}, kept ${counts.kept}, provisioned ${counts.provisioned}, ` +
      `unplaced ${counts.unplaced}, unmatched ${counts.unmatched}, blocked ${counts.blocked}, failed ${counts.failed}, emailed ${counts.emailed}, ` +
      `removed ${counts.removed}, restored ${counts.restored}, disabled ${counts.disabled}, invalid ${counts.invalid}, unidentified ${counts.unidentified}`,
  );
  if (report.status === 'held' && report.held) {
    io.out(`  Nobody was offboarded: ${withoutLetThrough(report.reason ?? '')}`);
    // Held with records it could not identify is an incomplete read: held whatever --allow-deletes says.
    if (counts.unidentified === 0) {
      io.out(
        `  If that is right, let them through: flowthru sync ${report.source} --customer ${report.customer} --mode delete --allow-deletes ${report.held.deletions}`,
      );
    }
  }
  if (counts.unidentified) {
    io.out(`  The read was incomplete: ${counts.unidentified} record${counts.unidentified === 1 ? '' : 's'} could not be identified (below); nobody missing from it may be taken for gone.`);
  }
  if (counts.invalid > 0) {
    io.out(`  ${counts.invalid} record${counts.invalid === 1 ? '' : 's'} skipped:`);
    for (const problem of report.problems) io.out(`    ${problem.at}: ${problem.message}`);
    if (report.problems.length < counts.invalid) io.out(`    … and ${counts.invalid - report.problems.length} more (flowthru log)`);
  }
}

/** `--mode add`, `--mode update,delete`: the modes of one sync, each once. */
function parseModes(value: string): SyncMode[] {
  const modes = value.split(/[,+]/).map((m) => m.trim());
  for (const mode of modes) {
    if (!(SYNC_MODES as readonly string[]).includes(mode)) {
      throw new InvalidArgumentError(`"${mode}" is not a sync mode: use add, update or delete (several with commas: add,update,delete)`);
    }
  }
  return SYNC_MODES.filter((m) => modes.includes(m));
}

export const parseCount = (what: string) => (value: string) => {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${what} must be a whole number, not "${value}"`);
  return n;
};

function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('flowthru')
    .description('Durable flow-through provisioning')
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride()
    .showHelpAfterError();

  const config = program.command('config').description('validate and apply configuration as code');
  config
    .command('validate')
    .argument('<file>', 'the YAML configuration file')
    .option('--json', 'machine-readable output')
    .description('validate a configuration file in full; writes nothing')
    .action(async (file: string, opts: { json?: boolean }) => {
      const result = await loadConfigFile(file);
      if (!result.ok) {
        reportProblems(io, file, result.problems, result.warnings, Boolean(opts.json), 'written');
        setExit(1);
        return;
      }
      const { customers } = result.config;
      const { warnings } = result;
      if (opts.json) {
        io.out(JSON.stringify({ ok: true, file, customers: customers.map((c) => c.name), problems: [], warnings }));
        return;
      }
      printWarnings(io, file, warnings);
      io.out(`${file} is valid (${counted(customers.length, 'customer')})${warnings.length > 0 ? `, ${counted(warnings.length, 'warning')}` : ''}.`);
    });
  config
    .command('apply')
    .argument('<file>', 'the YAML configuration file')
    .option('--json', 'machine-readable output')
    .description('validate, then apply the configuration in one transaction')
    .action(async (file: string, opts: { json?: boolean }) => {
      const result = await loadConfigFile(file);
      if (!result.ok) {
        reportProblems(io, file, result.problems, result.warnings, Boolean(opts.json), 'applied');
        setExit(1);
        return;
      }
      const { warnings } = result;
      const noted = warnings.length > 0 ? ` (${counted(warnings.length, 'warning')})` : '';
      const outcome = await withDatabase(async (db) => {
        await migrateToLatest(db);
        // What was declared until now: a schedule the file drops is deleted even before Temporal lists it.
        const previous = await loadConfigVersion(db);
        try {
          return { applied: await applyConfig(db, result.config, { sourceFile: file, appliedBy: process.env.USER ?? 'unknown' }), previous: previous?.config };
        } catch (error) {
          if (!(error instanceof ConfigApplyRefused)) throw error;
          reportProblems(io, file, error.problems, warnings, Boolean(opts.json), 'applied');
          setExit(1);
          return undefined;
        }
      });
      if (!outcome) return;
      const { applied } = outcome;
      // Only after the commit: Temporal's schedules follow the configuration in the database.
      const schedules = await reconcileAfterApply(readSettings(), result.config, outcome.previous);
      const reconciled = schedules.reconciled === true ? schedules.result : { created: [], updated: [], deleted: [], unchanged: [] };
      if (opts.json) {
        const scheduleReport = schedules.reconciled === false ? { reconciled: false, reason: schedules.reason } : { reconciled: true, ...reconciled };
        io.out(JSON.stringify({ ok: true, file, ...applied, problems: [], warnings, schedules: scheduleReport }));
      } else {
        printWarnings(io, file, warnings);
        if (applied.changed) io.out(`Applied ${file} as configuration version ${applied.version}${noted}.`);
        else io.out(`${file} is already applied (configuration version ${applied.version}); nothing changed${noted}.`);
        const changes = describeReconcile(reconciled);
        if (changes) io.out(`Schedules: ${changes}.`);
      }
      if (schedules.reconciled === false) {
        io.err(`flowthru: configuration version ${applied.version} is applied, but its schedules were not reconciled (${schedules.reason}); flowthru worker reconciles them when it starts.`);
        setExit(2);
      }
    });

  program
    .command('db')
    .description('database maintenance')
    .command('migrate')
    .description('create the database if it does not exist, and bring its schema to the newest migration')
    .action(async () => {
      const settings = readSettings();
      try {
        const created = await ensureDatabase(settings.databaseUrl);
        if (created) io.out(`Created database ${created}.`);
      } catch (error) {
        if (error instanceof DatabaseMissing) throw new UserError(error.message);
        throw error;
      }
      await withDatabase(async (db) => {
        const ran = await migrateToLatest(db);
        io.out(ran.length > 0 ? `Ran migrations: ${ran.join(', ')}` : 'Database schema is up to date.');
      });
    });

  program
    .command('worker')
    .description('run a worker: executes sync and user pipelines from the task queue until stopped')
    .action(async () => {
      const { startWorker, StoppedWhileWaiting } = await import('../worker/main.js');
      let running;
      try {
        running = await startWorker(readSettings(), { handleSignals: true });
      } catch (error) {
        // Secrets the applied configuration needs are the operator's to set: a clear sentence, exit 1.
        if (error instanceof MissingSecrets) throw new UserError(error.message);
        // SIGTERM while it waited for PostgreSQL or Temporal: stopped as asked.
        if (error instanceof StoppedWhileWaiting) return;
        throw error;
      }
      await running.done;
    });

  program
    .command('sync')
    .argument('<source>', 'the source to sync')
    .option('--customer <name>', 'the customer that owns the source (needed when several have one of that name)')
    .addOption(
      new Option('--mode <modes>', 'what the sync does: add (new users), update (changed users), delete (users gone), or several, e.g. add,update,delete')
        .argParser(parseModes)
        .makeOptionMandatory(),
    )
    .option('--allow-deletes <n>', 'let a held delete sync through: offboard at most n users', parseCount('--allow-deletes'))
    .option('--wait', 'wait for the sync to finish and print its report')
    .option('--json', 'with --wait: print the report as JSON')
    .option('--config-version <n>', 'run against this configuration version (default: the newest when the sync starts)', parseCount('--config-version'))
    .description('sync users in from a source and run their pipelines')
    .action(async (source: string, opts: { customer?: string; mode: SyncMode[]; allowDeletes?: number; wait?: boolean; json?: boolean; configVersion?: number }) => {
      // What runSync has started and printed: a failure after that prints no second report.
      const state: { workflowId: string | null; printed: boolean } = { workflowId: null, printed: false };
      try {
        await runSync(source, opts, state);
      } catch (error) {
        // With --json, what reads stdout learns of the failure too; stderr says it as ever.
        if (opts.json && !state.printed) {
          const message = error instanceof UserError ? error.message : describeFailure(error);
          const kind =
            error instanceof UserError || error instanceof DatabaseUrlError
              ? 'InvalidInput'
              : error instanceof TemporalUnreachableError
                ? 'TemporalUnreachable'
                : databaseUnavailableMessage(error) !== null
                  ? 'DatabaseUnavailable'
                  : null;
          io.out(JSON.stringify({ ok: false, workflowId: state.workflowId, mode: opts.mode[0], modes: opts.mode, error: { message, kind } }));
        }
        throw error;
      }
    });

  async function runSync(
    source: string,
    opts: { customer?: string; mode: SyncMode[]; allowDeletes?: number; wait?: boolean; json?: boolean; configVersion?: number },
    state: { workflowId: string | null; printed: boolean },
  ) {
    const printJson = (value: unknown) => {
      state.printed = true;
      io.out(JSON.stringify(value));
    };
    const settings = readSettings();
    const target = await withDatabase((db) => resolveSource(db, source, opts.customer, opts.configVersion));
    if (opts.allowDeletes !== undefined && !opts.mode.includes('delete')) throw new UserError('--allow-deletes goes with a delete sync: add --mode delete');
    const modes = opts.mode.join(',');
    const client = await connectClient(settings);
    try {
      let handle;
      try {
        // Written to the transaction log with who started it, as the console's "start a sync" is.
        const started = await withDatabase((db) =>
          startSyncAs(
            db,
            client,
            {
              customer: target.customer,
              source,
              mode: opts.mode[0]!,
              modes: opts.mode,
              ...(opts.configVersion !== undefined ? { configVersion: opts.configVersion } : {}),
              ...(opts.allowDeletes !== undefined ? { allowDeletes: opts.allowDeletes } : {}),
              taskQueue: settings.taskQueue,
            },
            cliActor(),
          ),
        );
        handle = started.handle;
        state.workflowId = handle.workflowId;
      } catch (error) {
        if (!(error instanceof SyncBusyError)) throw error;
        // Did nothing because another sync of the source runs: the same exit status as a skipped run.
        if (opts.json) printJson({ ok: false, workflowId: error.workflowId, mode: opts.mode[0], modes: opts.mode, status: 'skipped', reason: error.message });
        else io.err(`flowthru: ${error.message}`);
        setExit(4);
        return;
      }
      if (!opts.wait) {
        if (opts.json) printJson({ workflowId: handle.workflowId, mode: opts.mode[0], modes: opts.mode, started: true });
        else io.out(`Started ${handle.workflowId} (${modes}): ${temporalUiUrl(settings, handle.workflowId)}`);
        return;
      }
      let report: SyncReport;
      try {
        report = await resultUnlessStuck(handle);
      } catch (error) {
        if (error instanceof SyncStuckError) {
          if (opts.json) printJson({ ok: false, workflowId: handle.workflowId, mode: opts.mode[0], modes: opts.mode, error: { message: error.message, kind: 'PayloadKey' } });
          else {
            io.err(`flowthru: sync of ${target.customer}/${source} (${modes}) cannot run: ${error.message}`);
            io.err(`  see ${temporalUiUrl(settings, handle.workflowId)}`);
          }
          setExit(2);
          return;
        }
        if (!(error instanceof WorkflowFailedError)) throw error;
        // The sync failed: say why, in the output the user reads, not only in `flowthru log`.
        const cause = rootCause(error);
        const message = `sync of ${target.customer}/${source} (${modes}) failed: ${cause.message}`;
        if (opts.json) printJson({ ok: false, workflowId: handle.workflowId, mode: opts.mode[0], modes: opts.mode, error: { message: cause.message, kind: cause.kind } });
        else {
          io.err(`flowthru: ${message}`);
          io.err(`  details: flowthru log --customer ${target.customer}, or ${temporalUiUrl(settings, handle.workflowId)}`);
        }
        // A cause retrying cannot fix (a missing file, bad credentials, refused data) is the input's.
        setExit(cause.nonRetryable ? 1 : 2);
        return;
      }
      printSyncReport(io, report, Boolean(opts.json));
      state.printed = true;
      setExit(syncExitCode(report));
    } finally {
      await client.connection.close();
    }
  }

  program
    .command('preview')
    .argument('<source>', 'the source to preview')
    .option('--customer <name>', 'the customer that owns the source (needed when several have one of that name)')
    .option('--mode <modes>', 'preview these modes only: add, update, delete, or several (default: all three)', parseModes)
    .option('--json', 'machine-readable output: every user with the criteria explanation')
    .option('--config-version <n>', 'evaluate this configuration version (default: the newest)', parseCount('--config-version'))
    .option('--config <file>', "impact of a candidate configuration (not applied): what it would change for the source's users already synced")
    .option('--read-source', 'with --config: read the source as the candidate describes it (new users, and who left)')
    .option('--all', 'with --config: list users it would not change too')
    .description('dry run: read the whole source and show what a sync would do to each user, and why; or, with --config, what a candidate configuration would change; changes nothing')
    .action(async (source: string, opts: { customer?: string; mode?: SyncMode[]; json?: boolean; configVersion?: number; config?: string; readSource?: boolean; all?: boolean }) => {
      if (opts.config !== undefined) {
        if (opts.mode !== undefined || opts.configVersion !== undefined) throw new UserError('--config compares a candidate with the configuration in force: --mode and --config-version go without it');
        await previewCandidate(io, source, { ...opts, config: opts.config }, setExit);
        return;
      }
      if (opts.readSource || opts.all) throw new UserError('--read-source and --all go with --config FILE');
      // The users are printed page by page as the source is read, never held all at once.
      const modes = syncModes({ mode: 'add', modes: opts.mode ?? SYNC_MODES });
      const updates = modes.includes('update');
      const rows = tableStream<Record<string, unknown>>(
        io,
        updates ? ['externalId', 'username', 'change', 'pass', 'site', 'profile', 'number', 'services'] : ['externalId', 'username', 'change', 'site', 'profile', 'pool', 'number'],
      );
      const json = jsonArrayStream(io, 'users');
      const onUsers = (users: PreviewUser[]) => {
        if (opts.json) return json.items(users);
        rows.rows(
          users.map((u) => ({
            ...u,
            site: u.kept ? `${u.currentSite} (kept: no site matches)` : u.move ? `${u.currentSite} → ${u.site}` : u.site,
            pool: u.numberPool,
            number: u.numbers ? `${u.numbers.from.join(' ') || '-'} → ${u.blocked ? `blocked (${u.blocked.replace(/: add numbers, then retry$/, '')})` : (u.numbers.to ?? '-')}` : null,
            services: u.services ? describeChanges(u.services) : null,
          })),
        );
      };
      const report = await withDatabase(async (db) => {
        const target = await resolveSource(db, source, opts.customer, opts.configVersion);
        try {
          return await previewSource(db, new ConfigSnapshots(db), { customer: target.customer, source, configVersion: target.version, ...(opts.mode !== undefined ? { modes } : {}), onUsers });
        } catch (error) {
          if (error instanceof PermanentError) throw new UserError(error.message);
          throw error;
        } finally {
          await closeLdapConnections();
        }
      });
      if (opts.json) {
        const { users: _users, ...rest } = report;
        json.end(rest);
        return;
      }
      rows.end();
      const c = report.counts;
      io.out('');
      io.out(
        `Preview of ${report.customer}/${report.source} (configuration version ${report.configVersion}): ${c.seen} records seen, ` +
          `${c.new} new, ${c.changed} changed, ${c.unchanged} unchanged; ${c.placed} placed, ${c.unplaced} unplaced, ${c.moves} would move; ` +
          `${c.matched} matched a profile, ${c.unmatched} none${updates ? `; ${c.kept} would be kept where they are` : ''}` +
          `${c.blocked > 0 ? `; ${c.blocked} would be blocked: their pool has no number left for them` : ''}` +
          `${report.modes.includes('delete') ? `; ${c.deletions} on record but gone from the source` : ''}.`,
      );
      if (report.threshold && report.threshold.deletions > 0) {
        const t = report.threshold;
        io.out(
          t.held
            ? `A delete sync would be held, offboarding nobody: ${t.reason}`
            : `A delete sync would offboard ${counted(t.deletions, 'user')} of ${t.sourceUsers} (the threshold allows ${t.limit}): ${report.deletions.slice(0, 10).join(', ')}${report.deletions.length > 10 ? ', …' : ''}.`,
        );
      }
      if (c.disabled > 0) {
        const more = report.disabled.length > 10 ? `, … (${report.disabled.length - 10} more in --json)` : '';
        io.out(`${c.disabled} disabled or locked account${c.disabled === 1 ? '' : 's'} would be skipped (not imported, not deletions): ${report.disabled.slice(0, 10).join(', ')}${more}.`);
      }
      if (report.incomplete) {
        io.out(
          `The read is incomplete: ${c.unidentified} record${c.unidentified === 1 ? '' : 's'} could not be identified (below), so the ` +
            `${c.unconfirmedDeletions} user${c.unconfirmedDeletions === 1 ? '' : 's'} on record it did not see ${c.unconfirmedDeletions === 1 ? 'is' : 'are'} not listed as deletions: they may be among them.`,
        );
      }
      if (!report.flowThrough) io.out(`Flow-through is off for ${report.customer}: a sync would import users and provision nothing.`);
      for (const problem of report.problems.slice(0, 20)) io.out(`  skipped ${problem.at}: ${problem.message}`);
      if (report.problems.length > 20) io.out(`  … and ${report.problems.length - 20} more (--json lists them all)`);
    });

  const scoped = (name: string, description: string) =>
    program
      .command(name)
      .option('--customer <name>', 'only this customer')
      .option('--site <name>', 'only this site')
      .option('--json', 'machine-readable output')
      .description(description);

  scoped('users', 'list users: where they are, what they got').action(async (opts: { customer?: string; site?: string; json?: boolean }) => {
    const users = await withDatabase(async (db) => {
      await checkScope(db, opts);
      return listUsers(db, opts);
    });
    if (opts.json) io.out(JSON.stringify(users, null, 2));
    else table(io, users.map((u) => ({ ...u, reason: shorten(u.reason, 40) })), ['customer', 'source', 'externalId', 'username', 'site', 'profile', 'role', 'status', 'reason', 'numbers']);
  });

  scoped('numbers', 'list the number inventory').action(async (opts: { customer?: string; site?: string; json?: boolean }) => {
    const numbers = await withDatabase(async (db) => {
      await checkScope(db, opts);
      return listNumbers(db, opts);
    });
    if (opts.json) io.out(JSON.stringify(numbers, null, 2));
    else table(io, numbers.map((n) => ({ ...n, 'available from': n.availableFrom?.replace(/:\d\d\.\d+Z$/, 'Z') ?? null })), ['number', 'customer', 'site', 'status', 'user', 'available from']);
  });

  program
    .command('log')
    .option('--user <user>', "one user's entries (username, external id or email)")
    .option('--customer <name>', 'only this customer')
    .option('--limit <n>', 'the newest n entries', parseCount('--limit'), 100)
    .option('--why', 'with each step, the explanation it kept: the sites or FTP rules it considered and the values seen')
    .option('--json', 'machine-readable output')
    .description('the transaction log: sync runs and every user step, with the Temporal run that did it')
    .action(async (opts: { user?: string; customer?: string; limit: number; why?: boolean; json?: boolean }) => {
      const entries = await withDatabase(async (db) => {
        await checkScope(db, opts);
        return listLog(db, opts);
      });
      if (opts.json) io.out(JSON.stringify(entries.map((e) => (opts.why ? { ...e, why: e.why ?? null } : e)), null, 2));
      else if (!opts.why) table(io, entries, ['at', 'customer', 'user', 'action', 'status', 'subject', 'error']);
      else {
        // The table's lines, each followed by its step's explanation, indented beneath it.
        const lines: string[] = [];
        table({ out: (line) => lines.push(line), err: io.err }, entries, ['at', 'customer', 'user', 'action', 'status', 'subject', 'error']);
        io.out(lines[0]!);
        for (const [i, entry] of entries.entries()) {
          io.out(lines[i + 1]!);
          for (const line of whyInBrief(entry.why)) io.out(`    ${line}`);
        }
      }
    });

  program
    .command('demo')
    .option('--users <n>', 'how many people the generated directory holds', parseCount('--users'), 300)
    .option('--exit', 'stop after the summary instead of waiting for Ctrl-C')
    .description('run the Acme demo: Temporal with its UI, an SMTP sink, a worker, a synced sample directory')
    .action(async (opts: { users: number; exit?: boolean }) => {
      const { runDemo, DEMO_DEFAULTS } = await import('../demo/run.js');
      await runDemo(io, { ...DEMO_DEFAULTS, users: opts.users, exit: Boolean(opts.exit) });
    });

  registerUserCommand(program, io);
  registerRetryCommand(program, io);
  registerScheduleCommand(program, io);
  registerCodecServerCommand(program, io);
  registerTargetCommand(program, io, setExit);
  registerConsoleCommand(program, io);
  return program;
}

/** A sync whose workflow tasks keep failing for a cause no retry fixes (payload keys that differ). */
class SyncStuckError extends Error {}

/**
 * The sync's report, unless the worker cannot read what it was given: a worker whose payload keys
 * differ from this CLI's fails the sync's workflow task again and again (the SDK fails the task,
 * not the workflow, when a payload does not decode), and the sync would wait forever. Its pending
 * task's attempt count shows it; the last failure says why.
 */
async function resultUnlessStuck(handle: WorkflowHandle<typeof syncSource>): Promise<SyncReport> {
  let settled = false;
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const result = handle.result().finally(() => {
    settled = true;
    clearTimeout(timer);
    wake?.();
  });
  const watch = async (): Promise<never> => {
    for (;;) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, 3_000);
      });
      if (settled) return new Promise<never>(() => undefined);
      const attempt = (await handle.describe().catch(() => null))?.raw.pendingWorkflowTask?.attempt ?? 0;
      if (attempt < 3) continue;
      const events = (await handle.fetchHistory().catch(() => null))?.events ?? [];
      const failure = events.findLast((e) => e.workflowTaskFailedEventAttributes)?.workflowTaskFailedEventAttributes?.failure;
      const why = await keyProblemOf(failure, handle.client.options.loadedDataConverter.payloadCodecs);
      if (why !== null) {
        throw new SyncStuckError(
          `the worker cannot read it (${why}): the worker's FLOWTHRU_PAYLOAD_KEYS must hold the key this CLI seals with (FLOWTHRU_PAYLOAD_KEY_ID). The sync waits until a worker can read it; to end it: temporal workflow terminate --workflow-id ${handle.workflowId}`,
        );
      }
    }
  };
  return Promise.race([result, watch()]);
}

/**
 * Whether a workflow task's failure is about payload keys: its message is sealed by the worker
 * (failures are encoded), so a failure this CLI cannot open means the keys differ; one it can
 * open says so itself. Null for any other failure, or none.
 */
async function keyProblemOf(failure: { message?: string | null; encodedAttributes?: unknown } | null | undefined, codecs: readonly PayloadCodec[]): Promise<string | null> {
  if (!failure) return null;
  let message = failure.message ?? '';
  if (failure.encodedAttributes) {
    try {
      let opened = [failure.encodedAttributes as Payload];
      for (const codec of [...codecs].reverse()) opened = await codec.decode(opened);
      const [payload] = opened;
      message = String((JSON.parse(Buffer.from(payload!.data ?? new Uint8Array()).toString('utf8')) as { message?: unknown }).message ?? message);
    } catch (error) {
      if (error instanceof PayloadKeyError) return `its failure is sealed with a key this CLI cannot open: ${error.message}`;
      return null;
    }
  }
  return /PayloadKeyError|payload is sealed with key|payload sealed with key|FLOWTHRU_PAYLOAD_KEY/.test(message) ? message.replace(/\s+/g, ' ').slice(0, 300) : null;
}

/** The innermost cause of a workflow failure: the activity's own error, with its kind. */
function rootCause(error: Error): { message: string; kind: string | null; nonRetryable: boolean } {
  let cause: Error = error;
  while (cause.cause instanceof Error) cause = cause.cause;
  const app = cause instanceof ApplicationFailure ? cause : null;
  return { message: cause.message || String(cause), kind: app?.type ?? null, nonRetryable: app?.nonRetryable ?? false };
}

function describeFailure(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === '3D000') return `${(error as Error).message}: create it with flowthru db migrate (or check DATABASE_URL)`;
  const { address, port } = error as { address?: string; port?: number };
  const database = databaseUnavailableMessage(error, address ? `${address}:${port}` : databaseAddress(readSettings().databaseUrl));
  if (database) return database;
  const message = error instanceof Error ? error.message : String(error);
  if (/Failed to connect|connection refused|Connection refused|transport error/i.test(message)) {
    return `cannot reach Temporal at ${readSettings().temporalAddress} (is it running? check TEMPORAL_ADDRESS): ${message}`;
  }
  return message;
}

/** Runs the CLI with `argv` (as process.argv) and resolves to the exit status. */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  let exitCode = 0;
  const program = buildProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv as string[]);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 1;
    if (error instanceof UserError || error instanceof PayloadKeyError || error instanceof OperationRefused || error instanceof DatabaseUrlError) {
      io.err(`flowthru: ${error.message}`);
      return 1;
    }
    io.err(`flowthru: ${describeFailure(error)}`);
    return 2;
  }
}

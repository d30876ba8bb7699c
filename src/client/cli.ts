import { Command, CommanderError } from 'commander';
import { loadConfigFile } from '../adapters/config-file.js';
import { applyConfig, ConfigApplyRefused } from '../adapters/db/config-store.js';
import { createDatabase } from '../adapters/db/connection.js';
import { migrateToLatest } from '../adapters/db/migrate.js';
import { formatProblem, type ConfigProblem } from '../domain/config/validate.js';
import { readSettings } from '../settings.js';

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

const processIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** Exit status for a failure the user can fix (bad input); crashes use 2. */
class UserError extends Error {}

function reportProblems(io: CliIo, file: string, problems: readonly ConfigProblem[], json: boolean, verb: string): void {
  if (json) {
    io.out(JSON.stringify({ ok: false, file, problems }, null, 2));
    return;
  }
  for (const problem of problems) io.err(formatProblem(problem, file));
  io.err(`${problems.length} problem${problems.length === 1 ? '' : 's'} in ${file}; nothing was ${verb}.`);
}

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
        reportProblems(io, file, result.problems, Boolean(opts.json), 'written');
        setExit(1);
        return;
      }
      if (opts.json) io.out(JSON.stringify({ ok: true, file, customers: result.config.customers.map((c) => c.name) }));
      else io.out(`${file} is valid (${result.config.customers.length} customer${result.config.customers.length === 1 ? '' : 's'}).`);
    });
  config
    .command('apply')
    .argument('<file>', 'the YAML configuration file')
    .option('--json', 'machine-readable output')
    .description('validate, then apply the configuration in one transaction')
    .action(async (file: string, opts: { json?: boolean }) => {
      const result = await loadConfigFile(file);
      if (!result.ok) {
        reportProblems(io, file, result.problems, Boolean(opts.json), 'applied');
        setExit(1);
        return;
      }
      const db = createDatabase(readSettings().databaseUrl, { max: 2 });
      try {
        await migrateToLatest(db);
        const applied = await applyConfig(db, result.config, { sourceFile: file, appliedBy: process.env.USER ?? "unknown" });
        if (opts.json) io.out(JSON.stringify({ ok: true, file, ...applied }));
        else if (applied.changed) io.out(`Applied ${file} as configuration version ${applied.version}.`);
        else io.out(`${file} is already applied (configuration version ${applied.version}); nothing changed.`);
      } catch (error) {
        if (error instanceof ConfigApplyRefused) {
          reportProblems(io, file, error.problems, Boolean(opts.json), 'applied');
          setExit(1);
          return;
        }
        throw error;
      } finally {
        await db.destroy();
      }
    });

  program
    .command('db')
    .description('database maintenance')
    .command('migrate')
    .description('bring the database schema to the newest migration')
    .action(async () => {
      const db = createDatabase(readSettings().databaseUrl, { max: 1 });
      try {
        const ran = await migrateToLatest(db);
        io.out(ran.length > 0 ? `Ran migrations: ${ran.join(', ')}` : 'Database schema is up to date.');
      } finally {
        await db.destroy();
      }
    });
  return program;
}

function describeFailure(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === 'ECONNREFUSED') {
    return `cannot reach a service at ${(error as { address?: string; port?: number }).address}:${(error as { port?: number }).port} (is PostgreSQL running? check DATABASE_URL)`;
  }
  if (code === '3D000') return `${(error as Error).message}: create it, or run ./dev.sh setup (check DATABASE_URL)`;
  return error instanceof Error ? error.message : String(error);
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
    if (error instanceof UserError) {
      io.err(error.message);
      return 1;
    }
    io.err(`flowthru: ${describeFailure(error)}`);
    return 2;
  }
}

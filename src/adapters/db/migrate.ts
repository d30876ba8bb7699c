/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run against any schema version */
import { Migrator, type Kysely, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely';
import * as initial from './migrations/0001_initial.js';
import * as pipelineOutcomes from './migrations/0002_pipeline_outcomes.js';
import * as numberLookups from './migrations/0003_number_lookups.js';
import * as licences from './migrations/0004_licences.js';
import * as licenceAssignments from './migrations/0005_licence_assignments.js';
import * as lifecycle from './migrations/0006_lifecycle.js';
import * as targets from './migrations/0007_targets.js';
import * as consoleIndexes from './migrations/0008_console.js';

/** Migrations in order; a new one is a new file in migrations/ and a line here. */
const MIGRATIONS: Record<string, Migration> = {
  '0001_initial': initial,
  '0002_pipeline_outcomes': pipelineOutcomes,
  '0003_number_lookups': numberLookups,
  '0004_licences': licences,
  '0005_licence_assignments': licenceAssignments,
  '0006_lifecycle': lifecycle,
  '0007_targets': targets,
  '0008_console': consoleIndexes,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

export function migrator(db: Kysely<any>): Migrator {
  return new Migrator({ db, provider });
}

function check({ error, results }: MigrationResultSet): string[] {
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    // No migration ran into it (the database is unreachable, restarting or missing): the error
    // itself says what is wrong, and callers recognise it by its code.
    if (!failed) throw error;
    const wrapped = new Error(`migration ${failed} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    throw Object.assign(wrapped, { code: (error as { code?: unknown }).code });
  }
  return (results ?? []).map((r) => r.migrationName);
}

/** Brings the schema to the newest migration; returns the names of the migrations it ran. */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  return check(await migrator(db).migrateToLatest());
}

/** Undoes every migration, newest first (used by tests to prove each `down` works). */
export async function migrateDownAll(db: Kysely<any>): Promise<string[]> {
  const m = migrator(db);
  const applied: string[] = [];
  for (;;) {
    const done = check(await m.migrateDown());
    if (done.length === 0) return applied;
    applied.push(...done);
  }
}

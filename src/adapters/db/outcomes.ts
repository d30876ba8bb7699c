import type { Insertable, Kysely, QueryCreator } from 'kysely';
import type { UserOutcome } from '../../workflows/messages.js';
import type { Database, PipelineOutcomesTable } from './schema.js';

/*
 * Pipelines' outcomes, for the syncs waiting for them: one row per (sync, user). A later outcome
 * for the same sync (provisioned after blocked) is not counted twice: the sync takes the first it
 * sees, and the table keeps the first.
 */

export type OutcomeRow = Insertable<PipelineOutcomesTable>;

/** The rows that tell each of `syncIds` how the user's pass ended. */
export function outcomeRows(userId: string, syncIds: readonly string[], outcome: UserOutcome): OutcomeRow[] {
  const row = {
    user_id: userId,
    external_id: outcome.externalId,
    status: outcome.status,
    moved: outcome.moved,
    placed: outcome.placed ?? false,
    restored: outcome.restored ?? false,
    emailed: outcome.emailed,
    site: outcome.site,
    profile: outcome.profile,
    number: outcome.number,
    reason: outcome.reason ?? null,
  };
  return syncIds.map((syncId) => ({ ...row, sync_id: syncId }));
}

/** The insert of `rows`, keeping an outcome already recorded; usable as a data-modifying WITH. */
export function insertOutcomes(q: QueryCreator<Database>, rows: readonly OutcomeRow[]) {
  return q
    .insertInto('pipeline_outcomes')
    .values([...rows])
    .onConflict((oc) => oc.columns(['sync_id', 'external_id']).doNothing());
}

export async function recordOutcomes(db: Kysely<Database>, rows: readonly OutcomeRow[]): Promise<void> {
  if (rows.length > 0) await insertOutcomes(db, rows).execute();
}

import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from './schema.js';

export type StepStatus = 'succeeded' | 'failed' | 'skipped' | 'blocked';

export interface StepContext {
  readonly customerId: number;
  readonly userId: string;
  readonly workflowId: string;
  readonly runId: string;
  /** Which pass of the pipeline within the run: a run can process several changes and retries. */
  readonly attempt: number;
}

export interface StepRecord<T> {
  readonly status: StepStatus;
  readonly result: T;
  readonly error?: string;
  readonly summary?: string;
  /** Why the step decided what it did (a criteria explanation), kept in the transaction log. */
  readonly details?: unknown;
}

/** The step had already been done: its transaction is rolled back and the recorded result returned. */
class AlreadyDone extends Error {}

/**
 * Runs one pipeline step exactly once per (run, attempt, step): its effects and its transaction-log
 * entry commit together, and a rerun (a retried activity, a worker that died after committing)
 * returns the recorded result instead of doing the work again. Optimistic: the usual first run
 * does the work and writes the entry without looking first; a rerun finds the entry taken when it
 * writes it, rolls its own work back and returns what was recorded.
 */
export async function runStep<T>(
  db: Kysely<Database>,
  ctx: StepContext,
  action: string,
  work: (tx: Transaction<Database>) => Promise<StepRecord<T>>,
): Promise<T> {
  const key = `${ctx.runId}/${ctx.attempt}/${action}`;
  try {
    return await db.transaction().execute(async (tx) => {
      const startedAt = new Date();
      const record = await work(tx);
      const written = await tx
        .insertInto('transaction_log')
        .values({
          customer_id: ctx.customerId,
          user_id: ctx.userId,
          kind: 'step',
          action,
          subject: record.summary ?? null,
          status: record.status,
          started_at: startedAt,
          ended_at: sql<Date>`now()`,
          error: record.error ?? null,
          details: JSON.stringify({ result: record.result, ...(record.details === undefined ? {} : { why: record.details }) }) as never,
          workflow_id: ctx.workflowId,
          run_id: ctx.runId,
          idempotency_key: key,
        })
        .onConflict((oc) => oc.column('idempotency_key').doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!written) throw new AlreadyDone();
      return record.result;
    });
  } catch (error) {
    if (!(error instanceof AlreadyDone)) throw error;
    const done = await db.selectFrom('transaction_log').select('details').where('idempotency_key', '=', key).executeTakeFirstOrThrow();
    return (done.details as { result: T }).result;
  }
}

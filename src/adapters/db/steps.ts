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
  return runSteps(db, ctx, (step) => step(action, work));
}

/** A step of `runSteps`: does `work` in the steps' transaction and writes its own log entry. */
export type Step = <T>(action: string, work: (tx: Transaction<Database>) => Promise<StepRecord<T>>) => Promise<T>;

/**
 * Runs several pipeline steps in one transaction: each writes its own transaction-log entry (its
 * own key), and all of them commit together, or none. A rerun finds the first entry taken, rolls
 * back, and goes through `body` again with each step answering what it recorded, so the steps a
 * body took then are the steps it takes now.
 */
export async function runSteps<T>(db: Kysely<Database>, ctx: StepContext, body: (step: Step) => Promise<T>): Promise<T> {
  const key = (action: string) => `${ctx.runId}/${ctx.attempt}/${action}`;
  try {
    return await db.transaction().execute((tx) =>
      body(async (action, work) => {
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
            idempotency_key: key(action),
          })
          .onConflict((oc) => oc.column('idempotency_key').doNothing())
          .returning('id')
          .executeTakeFirst();
        if (!written) throw new AlreadyDone();
        return record.result;
      }),
    );
  } catch (error) {
    if (!(error instanceof AlreadyDone)) throw error;
    return body(async <R>(action: string) => {
      const done = await db.selectFrom('transaction_log').select('details').where('idempotency_key', '=', key(action)).executeTakeFirstOrThrow();
      return (done.details as { result: R }).result;
    });
  }
}

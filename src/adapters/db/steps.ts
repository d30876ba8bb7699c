import type { Kysely, QueryCreator, Transaction } from 'kysely';
import { deferUserChanges, takeUserChanges, userUpdate } from './user-state.js';
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

/** A step's key in the transaction log: one entry per (run, attempt, step). */
const stepKey = (ctx: StepContext, action: string) => `${ctx.runId}/${ctx.attempt}/${action}`;

/** A step's entry in the transaction log. */
export function stepEntry(ctx: StepContext, action: string, record: StepRecord<unknown>, startedAt: Date) {
  return {
    customer_id: ctx.customerId,
    user_id: ctx.userId,
    kind: 'step' as const,
    action,
    subject: record.summary ?? null,
    status: record.status,
    started_at: startedAt,
    ended_at: new Date(),
    error: record.error ?? null,
    details: JSON.stringify({ result: record.result, ...(record.details === undefined ? {} : { why: record.details }) }) as never,
    workflow_id: ctx.workflowId,
    run_id: ctx.runId,
    idempotency_key: stepKey(ctx, action),
  };
}

/**
 * Runs several pipeline steps in one transaction: each writes its own transaction-log entry (its
 * own key), and all of them commit together, or none. A rerun finds the entries taken, rolls back,
 * and goes through `body` again with each step answering what it recorded, so the steps a body
 * took then are the steps it takes now.
 *
 * The entries are written together, in one statement with the steps' changes to the user, after
 * the last step. The user's row is what serializes two attempts of one pass: every pipeline step
 * locks it first, so an attempt beside this one waits for this one's commit, then does its work
 * again on what this one left, finds the entries' keys taken (unique) and rolls that work back.
 * (A step that locks nothing is serialized by the keys: an attempt that writes them second waits
 * until the first commits or rolls back.)
 */
export async function runSteps<T>(db: Kysely<Database>, ctx: StepContext, body: (step: Step) => Promise<T>): Promise<T> {
  const key = (action: string) => stepKey(ctx, action);
  const entry = (action: string, record: StepRecord<unknown>, startedAt: Date) => stepEntry(ctx, action, record, startedAt);
  /** The pass's first step: its entry says whether another attempt of the pass committed. */
  let first: string | undefined;
  try {
    return await db.transaction().execute(async (tx) => {
      // The steps' changes to the user go with their entries, in the entries' statement.
      deferUserChanges(tx);
      const writeEntries = async (entries: ReturnType<typeof entry>[]) => {
        const changes = takeUserChanges(tx);
        const last = changes.pop();
        // A body that changed several users (none does today) writes the others first.
        for (const { userId, set } of changes) await userUpdate(tx, userId, set).execute();
        const insert = (q: QueryCreator<Database>) =>
          q
            .insertInto('transaction_log')
            .values(entries)
            .onConflict((oc) => oc.column('idempotency_key').doNothing())
            .returning('id')
            .execute();
        // A data-modifying WITH runs to completion with the insert. An entry already taken rolls
        // the whole transaction back (AlreadyDone), the change with it.
        // (The WITH adds a name the insert does not use: to its type it is the transaction's creator.)
        return insert(last ? (tx.with('user_change', () => userUpdate(tx, last.userId, last.set)) as unknown as QueryCreator<Database>) : tx);
      };
      const entries: ReturnType<typeof entry>[] = [];
      const result = await body(async (action, work) => {
        first ??= action;
        const startedAt = new Date();
        const record = await work(tx);
        entries.push(entry(action, record, startedAt));
        return record.result;
      });
      if (entries.length > 0) {
        const written = await writeEntries(entries);
        if (written.length < entries.length) throw new AlreadyDone();
      }
      // Nothing is left waiting at the commit (a change made outside any step).
      for (const { userId, set } of takeUserChanges(tx)) await userUpdate(tx, userId, set).execute();
      return result;
    });
  } catch (error) {
    // An attempt beside one that committed does its work again on what that one left, and may fail
    // where it did not (an update that finds the user moved already takes another path): the pass
    // is done, and what it recorded is the answer. Only a failure looks, one statement.
    if (!(error instanceof AlreadyDone) && !(first !== undefined && (await recorded(db, key(first)).catch(() => false)))) throw error;
    return body(async <R>(action: string) => {
      const done = await db.selectFrom('transaction_log').select('details').where('idempotency_key', '=', key(action)).executeTakeFirst();
      if (!done) throw new StepNotRecorded(action);
      return (done.details as { result: R }).result;
    });
  }
}

/** Whether a step's entry is in the transaction log. */
async function recorded(db: Kysely<Database>, key: string): Promise<boolean> {
  return (await db.selectFrom('transaction_log').select('id').where('idempotency_key', '=', key).executeTakeFirst()) !== undefined;
}

/**
 * A pass answered from its entries asked for a step it had not recorded: the pass that committed
 * took fewer steps (placeUser without its line, by code before the line went with the placement,
 * or the pipeline's fallback after the line failed). The caller may end the pass there and leave
 * the rest to a step of its own.
 */
export class StepNotRecorded extends Error {
  constructor(readonly action: string) {
    super(`step ${action} of this pass was not recorded by the attempt that committed it`);
    this.name = 'StepNotRecorded';
  }
}

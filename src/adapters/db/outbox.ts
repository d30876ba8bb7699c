import type { Insertable, Kysely, QueryCreator, Selectable } from 'kysely';
import type { Database, EmailOutboxTable, TransactionLogTable } from './schema.js';
import { insertOutcomes, type OutcomeRow } from './outcomes.js';

/*
 * The email outbox: a message is written once, with a stable Message-ID, before it is sent, so a
 * rerun finds it and never sends a second one; one row per user and event.
 */

export type OutboxMessage = Selectable<EmailOutboxTable>;

/** Writes the message unless the user already has one for this event; returns the one on record. */
export async function enqueueEmail(
  db: Kysely<Database>,
  message: Pick<Insertable<EmailOutboxTable>, 'customer_id' | 'user_id' | 'event' | 'message_id' | 'to_address' | 'subject' | 'html' | 'text'>,
): Promise<OutboxMessage> {
  const written = await db.insertInto('email_outbox').values(message).onConflict((oc) => oc.columns(['user_id', 'event']).doNothing()).returningAll().executeTakeFirst();
  // Written before (a rerun, an earlier sync's welcome): the message as it stands.
  return written ?? db.selectFrom('email_outbox').selectAll().where('user_id', '=', String(message.user_id)).where('event', '=', message.event).executeTakeFirstOrThrow();
}

/** A refused or failed send: counted, and for good when the server refused it for good. */
export async function recordSendFailure(db: Kysely<Database>, id: string, error: string, permanent: boolean): Promise<void> {
  await db
    .updateTable('email_outbox')
    .set((eb) => ({ attempts: eb('attempts', '+', 1), last_error: error, ...(permanent ? { status: 'failed' as const } : {}) }))
    .where('id', '=', id)
    .execute();
}

/** The server accepted it: one statement, so the window for a resend after a crash is one round trip. */
export async function markSent(db: Kysely<Database>, id: string): Promise<void> {
  await sentUpdate(db, id).execute();
}

/** The update that records a message as sent (one more attempt, no error). */
function sentUpdate(db: Kysely<Database>, id: string) {
  return db
    .updateTable('email_outbox')
    .set((eb) => ({ status: 'sent', sent_at: new Date(), attempts: eb('attempts', '+', 1), last_error: null }))
    .where('id', '=', id);
}

/**
 * markSent and the step's entry in the transaction log in one statement (a data-modifying CTE):
 * both commit or neither, with no transaction around them. Recorded already (an attempt that timed
 * out while its send was in flight records it too, when the server accepts): nothing changes, the
 * message counts one attempt and the step keeps its entry. With `outcomes`, the pass's outcome for
 * the syncs waiting for it goes in the same statement (kept if recorded before).
 */
export async function markSentWithEntry(db: Kysely<Database>, id: string, entry: Insertable<TransactionLogTable>, outcomes: readonly OutcomeRow[] = []): Promise<void> {
  const sent = db.with('sent', () => sentUpdate(db, id).where('status', '<>', 'sent'));
  const insertEntry = (q: QueryCreator<Database>) =>
    q
      .insertInto('transaction_log')
      .values(entry)
      .onConflict((oc) => oc.column('idempotency_key').doNothing())
      .execute();
  // (The WITH adds names the insert does not use: to its type it is the database's creator.)
  const creator = outcomes.length > 0 ? sent.with('outcome', () => insertOutcomes(db, outcomes)) : sent;
  await insertEntry(creator as unknown as QueryCreator<Database>);
}

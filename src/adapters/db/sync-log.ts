import { sql, type Insertable, type Kysely } from 'kysely';
import { releaseSource } from './lifecycle.js';
import type { Database, TransactionLogTable } from './schema.js';

/*
 * A sync's part of the transaction log: its own entry (one per sync, updated as it goes) and the
 * entries it writes about records (problems, by line). Pipeline steps write theirs in runStep.
 */

export type SyncEntry = Pick<Insertable<TransactionLogTable>, 'customer_id' | 'user_id' | 'action' | 'subject' | 'status' | 'error' | 'workflow_id'> & {
  readonly idempotency_key: string;
};

/** Writes a sync's entries, once each (by idempotency key): a retried page read logs nothing twice. */
export async function writeSyncEntries(db: Kysely<Database>, entries: readonly SyncEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db
    .insertInto('transaction_log')
    .values(entries.map((e) => ({ ...e, kind: 'sync' as const, ended_at: new Date(), details: null, run_id: null, idempotency_key: e.idempotency_key.slice(0, 500) })))
    .onConflict((oc) => oc.column('idempotency_key').doNothing())
    .execute();
}

export interface SyncRunEntry {
  readonly workflowId: string;
  /** The first run's id: with the workflow id, names the sync across continue-as-new. */
  readonly runId: string;
  readonly customer: string;
  readonly source: string;
  readonly mode: string;
  readonly configVersion: number;
  readonly status: 'started' | 'succeeded' | 'failed' | 'held' | 'skipped';
  readonly report?: unknown;
  readonly error?: string;
  /** With `succeeded`: the source's new watermark, stored for the next update sync. */
  readonly watermark?: unknown;
}

/**
 * The sync's own entry, created when it starts and updated when it ends. Its end stores the
 * watermark (succeeded only: a failed sync is read again in full next time), drops the outcomes
 * its pipelines recorded for it (they are in the report now) and releases the source.
 */
export async function writeSyncRunEntry(db: Kysely<Database>, input: SyncRunEntry): Promise<void> {
  const customer = await db.selectFrom('customers').select('id').where('name', '=', input.customer).executeTakeFirst();
  const key = `sync/${input.workflowId}/${input.runId}`;
  const details = JSON.stringify({ configVersion: input.configVersion, mode: input.mode, report: input.report ?? null });
  await db
    .insertInto('transaction_log')
    .values({
      customer_id: customer?.id ?? null,
      user_id: null,
      kind: 'sync',
      action: `sync.${input.mode}`,
      subject: input.source,
      status: input.status,
      ended_at: input.status === 'started' ? null : new Date(),
      error: input.error ?? null,
      details: details as never,
      workflow_id: input.workflowId,
      run_id: input.runId,
      idempotency_key: key,
    })
    .onConflict((oc) =>
      oc.column('idempotency_key').doUpdateSet({ status: input.status, error: input.error ?? null, details: details as never, ended_at: input.status === 'started' ? null : sql<Date>`now()` }),
    )
    .execute();
  if (input.status === 'succeeded' && input.watermark && customer) {
    await db
      .updateTable('sync_sources')
      .set({ watermark: JSON.stringify(input.watermark) as never })
      .where('customer_id', '=', customer.id)
      .where('name', '=', input.source)
      .execute();
  }
  if (input.status !== 'started') {
    await db.deleteFrom('pipeline_outcomes').where('sync_id', '=', `${input.workflowId}/${input.runId}`).execute();
    if (customer) await releaseSource(db, customer.id, input.source, `${input.workflowId}/${input.runId}`);
  }
}

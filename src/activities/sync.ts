import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Insertable, Kysely } from 'kysely';
import { sql } from 'kysely';
import { PermanentError } from '../adapters/errors.js';
import type { Database, TransactionLogTable } from '../adapters/db/schema.js';
import type { ConfigSnapshots } from '../adapters/db/snapshots.js';
import { refreshLicences } from '../adapters/db/licences.js';
import { importUsers } from '../adapters/db/users.js';
import { readSubscribedSkus } from '../adapters/sources/entra.js';
import { mapRecords, readSourceRecords, type SourceWatermark } from '../adapters/sources/index.js';
import type { SourceConfig } from '../domain/config/schema.js';
import { onboardWorkflowId, searchAttributes } from '../workflows/config.js';
import { userChangedSignal, type OnboardUserInput, type SourceProblem, type UserChange, type UserOutcome } from '../workflows/messages.js';
import type { onboardUser } from '../workflows/onboard-user.js';
import type { SourceWatermarkRecord, SyncActivities } from './types.js';

export interface SyncDeps {
  readonly db: Kysely<Database>;
  readonly snapshots: ConfigSnapshots;
  readonly client: Client;
  readonly taskQueue: string;
}

/** Heartbeats when running as an activity; a no-op when the code is called directly (benchmark). */
function heartbeat(details?: unknown): void {
  let context: Context | undefined;
  try {
    context = Context.current();
  } catch {
    return;
  }
  context.heartbeat(details);
}

/** A source's watermark as the sync carries and stores it: the mark and the settings it is valid for. */
type StoredWatermark = SourceWatermarkRecord & { readonly mark: SourceWatermark };

/** How many signal-with-start calls are in flight at once. */
const START_CONCURRENCY = 20;

/**
 * What a watermark is valid for: the source's connection settings and attribute map. A watermark
 * read under other settings (a wider filter, another base DN, a newly mapped attribute) would skip
 * users the new settings select, so it is ignored and the sync reads everything.
 */
function sourceFingerprint(source: SourceConfig & { readonly id?: number }): string {
  const { id: _id, ...config } = source;
  return createHash('sha256').update(JSON.stringify(config)).digest('base64url');
}

export function createSyncActivities({ db, snapshots, client, taskQueue }: SyncDeps): SyncActivities {
  /** Writes a sync's entries to the transaction log, once each (by idempotency key). */
  async function logSyncEntries(
    entries: readonly (Pick<Insertable<TransactionLogTable>, 'customer_id' | 'user_id' | 'action' | 'subject' | 'status' | 'error' | 'workflow_id'> & {
      idempotency_key: string;
    })[],
  ): Promise<void> {
    if (entries.length === 0) return;
    await db
      .insertInto('transaction_log')
      .values(entries.map((e) => ({ ...e, kind: 'sync' as const, ended_at: new Date(), details: null, run_id: null, idempotency_key: e.idempotency_key.slice(0, 500) })))
      .onConflict((oc) => oc.column('idempotency_key').doNothing())
      .execute();
  }

  async function loadWatermark(source: SourceConfig & { readonly id: number }): Promise<SourceWatermark | null> {
    const row = await db.selectFrom('sync_sources').select('watermark').where('id', '=', source.id).executeTakeFirst();
    const stored = row?.watermark as StoredWatermark | null | undefined;
    return stored?.fingerprint === sourceFingerprint(source) ? stored.mark : null;
  }

  /** In-flight users whose pipeline is no longer running: they will never record an outcome. */
  async function closedWithoutOutcome(customer: string, source: string, externalIds: readonly string[]): Promise<UserOutcome[]> {
    const found: UserOutcome[] = [];
    for (const externalId of externalIds.slice(0, 100)) {
      let state: string;
      try {
        state = (await client.workflow.getHandle(onboardWorkflowId(customer, source, externalId)).describe()).status.name;
      } catch (error) {
        if (!(error instanceof WorkflowNotFoundError)) throw error;
        state = 'GONE';
      }
      heartbeat();
      if (state === 'RUNNING') continue;
      const reason = `its pipeline ended (${state.toLowerCase()}) without an outcome`;
      found.push({ externalId, status: 'failed', moved: false, emailed: false, site: null, profile: null, number: null, reason });
    }
    return found;
  }

  return {
    async readSourcePage(input) {
      const snap = await snapshots.customer(input.configVersion, input.customer);
      const source = snap.sources.get(input.source);
      if (!source) throw new PermanentError('UnknownSource', `customer ${input.customer} has no source "${input.source}" in configuration version ${input.configVersion}`);
      // An Entra sync starts by refreshing the tenant's licences: profiles draw on them.
      if (source.type === 'entra' && input.cursor === null) {
        await refreshLicences(db, snap.customerId, await readSubscribedSkus(source, { heartbeat: () => heartbeat(input.cursor) }));
      }
      // An update sync reads what changed since the last successful sync; an add sync reads everything.
      const watermark = input.cursor === null && input.mode === 'update' ? await loadWatermark(source) : null;
      const page = await readSourceRecords(source, input.cursor, input.pageSize, { watermark, heartbeat: () => heartbeat(input.cursor) });
      const mapped = mapRecords(source, page.records);
      const problems: SourceProblem[] = [...page.problems, ...mapped.problems];
      heartbeat();
      const { imported, rejected } = await importUsers(db, {
        customerId: snap.customerId,
        sourceId: source.id,
        userType: source.userType,
        syncId: input.syncId,
        users: mapped.users,
      });
      problems.push(...rejected.map((r) => ({ at: r.at, message: r.message })));
      // A retried page read must not log its problems twice: the keys name the sync and the record.
      await logSyncEntries(
        problems.map((p) => ({
          customer_id: snap.customerId,
          user_id: null,
          action: 'source.invalid-record',
          subject: `${input.source} ${p.at}`,
          status: 'skipped' as const,
          error: p.message,
          workflow_id: input.syncId,
          idempotency_key: `invalid/${input.syncId}/${p.at}/${p.message}`,
        })),
      );
      let removed = 0;
      if (page.removed.length > 0) {
        // Users the source reported removed (Graph's @removed): logged against the user, for the
        // delete sync to offboard; nothing is taken from them here.
        const known = await db
          .selectFrom('users')
          .select(['id', 'external_id'])
          .where('customer_id', '=', snap.customerId)
          .where('source_id', '=', source.id)
          .where('external_id', 'in', [...page.removed])
          .execute();
        await logSyncEntries(
          known.map((u) => ({
            customer_id: snap.customerId,
            user_id: u.id,
            action: 'source.removed',
            subject: `${input.source} ${u.external_id}`,
            status: 'succeeded' as const,
            error: null,
            workflow_id: input.syncId,
            idempotency_key: `removed/${input.syncId}/${u.external_id}`,
          })),
        );
        removed = known.length;
      }
      return {
        seen: page.records.length + page.problems.length,
        imported: imported.length,
        removed,
        disabled: mapped.disabled.length,
        unidentified: page.unidentified + mapped.unidentified,
        targets: [...imported],
        problems,
        next: page.next,
        ...(page.watermark ? { watermark: { fingerprint: sourceFingerprint(source), mark: page.watermark } } : {}),
      };
    },

    async startUserPipelines(input) {
      const pending = [...input.targets];
      const startOne = async (target: (typeof pending)[number]) => {
        const args: OnboardUserInput = { customer: input.customer, source: input.source, externalId: target.externalId, userId: target.userId };
        await client.workflow.signalWithStart<typeof onboardUser, [UserChange]>('onboardUser', {
          workflowId: onboardWorkflowId(input.customer, input.source, target.externalId),
          taskQueue,
          args: [args],
          signal: userChangedSignal,
          signalArgs: [{ configVersion: input.configVersion, mode: input.mode, reportTo: input.reportTo }],
          typedSearchAttributes: [
            { key: searchAttributes.customer, value: input.customer },
            { key: searchAttributes.source, value: input.source },
            { key: searchAttributes.syncMode, value: input.mode },
            { key: searchAttributes.status, value: 'running' },
          ],
        });
      };
      while (pending.length > 0) {
        await Promise.all(pending.splice(0, START_CONCURRENCY).map(startOne));
        heartbeat();
      }
    },

    async collectOutcomes({ syncId, customer, source, externalIds, batch }) {
      const started = Date.now();
      const wanted = Math.max(1, Math.min(batch, externalIds.length));
      for (;;) {
        const rows = await db
          .selectFrom('pipeline_outcomes')
          .selectAll()
          .where('sync_id', '=', syncId)
          .where('external_id', 'in', externalIds.length > 0 ? [...externalIds] : [''])
          .execute();
        const waited = Date.now() - started;
        // Return a full batch at once, a partial one after a second; after 30 s of nothing, look
        // for pipelines that closed without an outcome (an operator terminated one, say).
        if (rows.length === 0 && waited > 30_000) return closedWithoutOutcome(customer, source, externalIds);
        if (rows.length >= wanted || (rows.length > 0 && waited > 1_000)) {
          return rows.map((r) => ({
            externalId: r.external_id,
            status: r.status as UserOutcome['status'],
            moved: r.moved,
            emailed: r.emailed,
            site: r.site,
            profile: r.profile,
            number: r.number,
            ...(r.reason ? { reason: r.reason } : {}),
          }));
        }
        heartbeat();
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },

    async recordSyncRun(input) {
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
      // Only a sync that succeeded moves the watermark: a failed one is read again in full next time.
      if (input.status === 'succeeded' && input.watermark && customer) {
        await db
          .updateTable('sync_sources')
          .set({ watermark: JSON.stringify(input.watermark) as never })
          .where('customer_id', '=', customer.id)
          .where('name', '=', input.source)
          .execute();
      }
      // The sync has read every outcome it waited for; they are in the report and the log now.
      if (input.status !== 'started') {
        await db.deleteFrom('pipeline_outcomes').where('sync_id', '=', `${input.workflowId}/${input.runId}`).execute();
      }
    },
  };
}

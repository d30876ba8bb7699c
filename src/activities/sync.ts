import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Kysely } from 'kysely';
import { PermanentError } from '../adapters/errors.js';
import type { Database } from '../adapters/db/schema.js';
import { writeSyncEntries, writeSyncRunEntry } from '../adapters/db/sync-log.js';
import type { ConfigSnapshots } from '../adapters/db/snapshots.js';
import { refreshLicences } from '../adapters/db/licences.js';
import { statisticsRefresher } from '../adapters/db/statistics.js';
import { countDeferred, importUsers } from '../adapters/db/users.js';
import { claimSource, countDeletions, countSourceUsers, markRemoved, markSeen, markUnseen, takeMarked } from '../adapters/db/lifecycle.js';
import { loadConfigVersion } from '../adapters/db/config-store.js';
import { decideDeletions } from '../domain/deletions.js';
import { readSubscribedSkus } from '../adapters/sources/entra.js';
import { mapRecords, readSourceRecords, type SourceWatermark } from '../adapters/sources/index.js';
import { startUserPipeline } from '../adapters/temporal/user-pipeline.js';
import type { SourceConfig } from '../domain/config/schema.js';
import { onboardWorkflowId, syncModes } from '../workflows/config.js';
import type { SourceProblem } from '../domain/source.js';
import type { UserOutcome } from '../workflows/messages.js';
import type { SourceWatermarkRecord, SyncActivities } from './types.js';

export interface SyncDeps {
  readonly db: Kysely<Database>;
  readonly snapshots: ConfigSnapshots;
  readonly client: Client;
  readonly taskQueue: string;
}

/** A warning in the activity's log; on stderr when the code is called directly (benchmark). */
function warn(message: string): void {
  try {
    Context.current().log.warn(message);
  } catch {
    console.warn(message);
  }
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
  const refreshStatistics = statisticsRefresher(db);
  async function loadWatermark(source: SourceConfig & { readonly id: number }): Promise<SourceWatermark | null> {
    const row = await db.selectFrom('sync_sources').select('watermark').where('id', '=', source.id).executeTakeFirst();
    const stored = row?.watermark as StoredWatermark | null | undefined;
    return stored?.fingerprint === sourceFingerprint(source) ? stored.mark : null;
  }

  /** Whether the sync `<workflow id>/<first run id>` still runs (a claim it left may be taken over). */
  async function syncRunning(syncId: string): Promise<boolean> {
    const cut = syncId.lastIndexOf('/');
    try {
      const description = await client.workflow.getHandle(syncId.slice(0, cut)).describe();
      const firstRunId = description.raw.workflowExecutionInfo?.firstRunId;
      return description.status.name === 'RUNNING' && (!firstRunId || firstRunId === syncId.slice(cut + 1));
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return false;
      throw error;
    }
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
      const modes = syncModes({ mode: input.mode ?? 'add', modes: input.modes });
      const ref = { customerId: snap.customerId, sourceId: source.id };
      // An update reads what changed since the last successful sync; an add or delete reads everything.
      const incremental = modes.includes('update') && !modes.includes('delete');
      const watermark = input.cursor === null && incremental ? await loadWatermark(source) : null;
      const page = await readSourceRecords(source, input.cursor, input.pageSize, { watermark, heartbeat: () => heartbeat(input.cursor) });
      const mapped = mapRecords(source, page.records);
      const problems: SourceProblem[] = [...page.problems, ...mapped.problems];
      heartbeat();
      // Users not at a site (new, unplaced, offboarded and back) are an add's; placed users an
      // update's. A record a sync does not take stays unread, its change left for the right sync.
      const take = { unplaced: modes.includes('add'), placed: modes.includes('update') };
      // The pipelines of earlier pages have changed the tables since the planner last looked.
      // A vacuum of a large, long-unvacuumed table may take longer than the page read's heartbeat timeout: beat meanwhile.
      const beating = setInterval(() => heartbeat(input.cursor), 5_000);
      await refreshStatistics()
        .catch((error: unknown) => warn(`could not refresh the planner's statistics: ${(error as Error).message}`))
        .finally(() => clearInterval(beating));
      const { imported, rejected } =
        take.unplaced || take.placed
          ? await importUsers(db, { customerId: snap.customerId, sourceId: source.id, userType: source.userType, syncId: input.syncId, users: mapped.users, take })
          : { imported: [], rejected: [] };
      problems.push(...rejected.map((r) => ({ at: r.at, message: r.message })));
      const deferred = await countDeferred(db, { customerId: snap.customerId, sourceId: source.id, users: mapped.users, take });
      // A delete sync offboards whoever its full read did not see: disabled and invalid records are seen.
      if (modes.includes('delete')) {
        await markSeen(db, ref, input.syncId, [...mapped.users.map((u) => u.externalId), ...mapped.disabled.map((d) => d.externalId), ...mapped.unusableIds]);
      }
      // A retried page read must not log its problems twice: the keys name the sync and the record.
      await writeSyncEntries(
        db,
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
      // Users the source says are gone (Graph's @removed) are offboarded by this sync, whatever its mode.
      const removed = await markRemoved(db, ref, input.syncId, page.removed);
      const mode = (placed: boolean) => (placed && modes.includes('update') ? 'update' : 'add');
      return {
        seen: page.records.length + page.problems.length,
        imported: imported.length,
        removed,
        ...(deferred > 0 ? { deferred } : {}),
        disabled: mapped.disabled.length,
        unidentified: page.unidentified + mapped.unidentified,
        targets: imported.map((u) => ({ userId: u.userId, externalId: u.externalId, mode: mode(u.placed) })),
        problems,
        next: page.next,
        ...(page.watermark ? { watermark: { fingerprint: sourceFingerprint(source), mark: page.watermark } } : {}),
      };
    },

    async startUserPipelines(input) {
      const pending = [...input.targets];
      const startOne = async (target: (typeof pending)[number]) => {
        await startUserPipeline(client, {
          taskQueue,
          customer: input.customer,
          source: input.source,
          externalId: target.externalId,
          userId: target.userId,
          change: { configVersion: input.configVersion, mode: target.mode ?? input.mode, reportTo: input.reportTo },
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
            ...(r.placed ? { placed: true } : {}),
            ...(r.restored ? { restored: true } : {}),
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

    async beginSync(input) {
      const syncId = `${input.workflowId}/${input.runId}`;
      const found = await loadConfigVersion(db, input.configVersion);
      if (!found) {
        throw new PermanentError('NoConfiguration', input.configVersion === undefined ? 'no configuration has been applied yet' : `configuration version ${input.configVersion} does not exist`);
      }
      const snap = await snapshots.customer(found.version, input.customer);
      const source = snap.sources.get(input.source);
      if (!source) throw new PermanentError('UnknownSource', `customer ${input.customer} has no source "${input.source}" in configuration version ${found.version}`);
      const busy = await claimSource(db, source.id, syncId, (holder) => syncRunning(holder));
      const record = { workflowId: input.workflowId, runId: input.runId, customer: input.customer, source: input.source, mode: input.mode, configVersion: found.version };
      if (busy) {
        await writeSyncRunEntry(db, { ...record, status: 'skipped', error: `another sync of the source is running (${busy})` });
        return { configVersion: found.version, busy };
      }
      await writeSyncRunEntry(db, { ...record, status: 'started' });
      return { configVersion: found.version };
    },

    async planDeletions(input) {
      const snap = await snapshots.customer(input.configVersion, input.customer);
      const source = snap.sources.get(input.source)!;
      const ref = { customerId: snap.customerId, sourceId: source.id };
      const deletions = await countDeletions(db, ref, input.syncId, input.fullRead);
      // The share is of the users the source had before this sync: users it just added do not widen it.
      const sourceUsers = await countSourceUsers(db, ref, { before: input.syncId });
      const decision = decideDeletions(
        { deletions, sourceUsers, seen: input.seen, unidentified: input.unidentified, fullRead: input.fullRead },
        snap.config.settings.deleteThreshold,
        input.allowDeletes,
      );
      if (!decision.proceed) {
        // The marks stay (they name this sync, and no other sync takes them): a retry decides the same.
        return { deletions: 0, held: { deletions, threshold: decision.limit, sourceUsers, reason: decision.reason } };
      }
      if (input.fullRead) await markUnseen(db, ref, input.syncId);
      return { deletions };
    },

    async takeDeletions(input) {
      const snap = await snapshots.customer(input.configVersion, input.customer);
      const source = snap.sources.get(input.source)!;
      const rows = await takeMarked(db, { customerId: snap.customerId, sourceId: source.id }, input.syncId, input.after, input.limit);
      return rows.map((r) => ({ userId: r.userId, externalId: r.externalId, mode: 'delete' as const }));
    },

    async recordSyncRun(input) {
      await writeSyncRunEntry(db, input);
    },
  };
}

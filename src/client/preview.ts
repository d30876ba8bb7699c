import type { Kysely } from 'kysely';
import { countSourceUsers } from '../adapters/db/lifecycle.js';
import { nextAvailableNumbers, numbersHeld, type Pool } from '../adapters/db/numbers.js';
import type { Database } from '../adapters/db/schema.js';
import { keptLine, noNumberLeft, type HeldNumber } from '../domain/numbers.js';
import { activeServices, diffServices, type ServiceChanges } from '../adapters/db/user-services.js';
import type { ConfigSnapshots } from '../adapters/db/snapshots.js';
import { mapRecords, readSourceRecords } from '../adapters/sources/index.js';
import { explainFtpRule, explainSite, type FtpResolution, type SiteResolution } from '../domain/matching.js';
import { decideDeletions } from '../domain/deletions.js';
import { servicesOnLine } from '../domain/services.js';
import type { SourceCursor, SourceProblem } from '../domain/source.js';
import { SYNC_MODES, syncModes, type SyncMode } from '../workflows/config.js';

/** Free numbers the preview reads from a pool at a time. */
const FREE_PAGE = 200;

/** What a sync of the source would do to one user, and why. */
export interface PreviewUser {
  readonly externalId: string;
  readonly username: string | null;
  readonly email: string | null;
  /** `new`: not on record; `changed`: on record with other data; `unchanged`: a sync starts nothing. */
  readonly change: 'new' | 'changed' | 'unchanged';
  /** The site whose move criteria the user matches (null: stays at customer level). */
  readonly site: string | null;
  /** Where the user is now (null: customer level or not on record). */
  readonly currentSite: string | null;
  /** The user is placed at another site than the criteria now choose (a move, once update syncs move users). */
  readonly move: boolean;
  readonly profile: string | null;
  /** Where the number would come from: the site's ranges, the customer's, or none. */
  readonly numberPool: 'site' | 'customer' | null;
  /**
   * The pass a sync would run for the user: `add` (not at a site: placed, or restored when
   * offboarded), `update` (placed and changed: moved, kept or re-provisioned), or null (unchanged).
   */
  readonly pass: 'add' | 'update' | null;
  /** An update whose user matches no site any more: they stay where they are. */
  readonly kept?: boolean;
  /**
   * The line a pass would leave: the numbers held now, and the one held after (predicted: the
   * pool's lowest free ones, in the order the preview meets the users). An add's, and an update's.
   */
  readonly numbers?: { readonly from: readonly string[]; readonly to: string | null };
  /** The pass would leave the user blocked: their pool has no number left for them (the reason the pipeline gives). */
  readonly blocked?: string;
  /** An update's difference in services (service keys). */
  readonly services?: ServiceChanges;
  readonly why: { readonly site: SiteResolution; readonly profile: FtpResolution | null };
}

export interface PreviewReport {
  readonly customer: string;
  readonly source: string;
  readonly configVersion: number;
  /** Whether flow-through would provision at all (settings.flowThrough.enabled and addSync). */
  readonly flowThrough: boolean;
  readonly users: PreviewUser[];
  /** Disabled or locked accounts the source holds: a sync skips them (includeDisabled off); not deletions. */
  readonly disabled: string[];
  /** The modes previewed: which users are listed (add: users not at a site; update: placed users who changed; delete: deletions). */
  readonly modes: readonly SyncMode[];
  /** Users on record for this source that the source no longer has: a delete sync's candidates. */
  readonly deletions: string[];
  /** Whether the deletion threshold would let a delete sync offboard them, or hold it. */
  threshold: { readonly deletions: number; readonly limit: number; readonly sourceUsers: number; readonly held: boolean; readonly reason?: string } | null;
  /**
   * Some records could not be identified (a malformed row, lines an unterminated quote took): a user
   * on record but not seen may be one of them, so `deletions` stays empty and
   * `counts.unconfirmedDeletions` says how many were not seen.
   */
  incomplete: boolean;
  readonly problems: SourceProblem[];
  readonly counts: {
    seen: number;
    new: number;
    changed: number;
    unchanged: number;
    placed: number;
    unplaced: number;
    moves: number;
    /** Placed users who changed and match no site: an update keeps them where they are. */
    kept: number;
    /** Users a pass would leave blocked: their pool has no number left by the time the preview meets them. */
    blocked: number;
    matched: number;
    unmatched: number;
    deletions: number;
    invalid: number;
    disabled: number;
    /** Records whose external id could not be read; above zero the read is incomplete. */
    unidentified: number;
    /** In an incomplete read: users on record that were not seen (left, or among the unidentified). */
    unconfirmedDeletions: number;
  };
}

/**
 * A dry run: reads the whole source with the same adapters and mapping as a sync, and evaluates the
 * same criteria against each user, with no side effects (nothing imported, reserved or sent). What
 * it keeps for the whole read is small per user: the external ids seen (to find deletions), the
 * disabled accounts' ids and the numbers it predicts.
 */
export async function previewSource(
  db: Kysely<Database>,
  snapshots: ConfigSnapshots,
  options: {
    customer: string;
    source: string;
    configVersion: number;
    pageSize?: number;
    modes?: readonly SyncMode[];
    /**
     * Receives the listed users page by page, as the source is read; `report.users` then stays
     * empty, so a source of any size is previewed in the memory of one page.
     */
    onUsers?: (users: PreviewUser[]) => void | Promise<void>;
  },
): Promise<PreviewReport> {
  const modes = syncModes({ mode: 'add', modes: options.modes ?? SYNC_MODES });
  const snap = await snapshots.customer(options.configVersion, options.customer);
  const source = snap.sources.get(options.source);
  if (!source) throw new Error(`customer ${options.customer} has no source "${options.source}" in configuration version ${options.configVersion}`);
  const { flowThrough } = snap.config.settings;
  const report: PreviewReport = {
    customer: options.customer,
    source: options.source,
    configVersion: options.configVersion,
    flowThrough: flowThrough.enabled && flowThrough.addSync,
    users: [],
    modes,
    disabled: [],
    deletions: [],
    threshold: null,
    incomplete: false,
    problems: [],
    counts: {
      seen: 0,
      new: 0,
      changed: 0,
      unchanged: 0,
      placed: 0,
      unplaced: 0,
      moves: 0,
      kept: 0,
      blocked: 0,
      matched: 0,
      unmatched: 0,
      deletions: 0,
      invalid: 0,
      disabled: 0,
      unidentified: 0,
      unconfirmedDeletions: 0,
    },
  };
  // The lowest free numbers of each pool, handed out in the order the preview meets the users, a
  // page of 200 at a time (each page after the last number of the one before: nothing is reserved).
  const free = new Map<string, { page: string[]; last?: string; done: boolean }>();
  async function takeFree(pool: Pool): Promise<string | null> {
    const key = `${pool.siteId ?? 'customer'}`;
    const state = free.get(key) ?? { page: [], done: false };
    free.set(key, state);
    if (state.page.length === 0 && !state.done) {
      const page = await nextAvailableNumbers(db, pool, FREE_PAGE, state.last);
      state.page = page;
      state.last = page.at(-1) ?? state.last;
      state.done = page.length < FREE_PAGE;
    }
    return state.page.shift() ?? null;
  }

  /** The pool a profile's line comes from at `site`, and its name as the pipeline says it. */
  const poolOf = (site: string, profile: NonNullable<ReturnType<typeof snap.profiles.get>>): { pool: Pool; name: string } | null =>
    !profile.line
      ? null
      : profile.line.numberFrom === 'site'
        ? { pool: { customerId: snap.customerId, siteId: snap.siteIds.get(site) ?? null }, name: `site ${site}` }
        : { pool: { customerId: snap.customerId, siteId: null }, name: `customer ${snap.config.name}` };

  /** What an update would do to a placed user's line and services (as provisionProfile does). */
  async function predictUpdate(userId: string, site: string | null, profile: ReturnType<typeof snap.profiles.get>): Promise<Partial<PreviewUser>> {
    if (site === null) return { kept: true };
    const from = (held.get(userId) ?? []).map((h) => h.number);
    if (!profile) return { numbers: { from, to: null }, services: diffServices(services.get(userId) ?? new Map(), []) };
    const line = poolOf(site, profile);
    // As provisionProfile allocates: the line kept, else the pool's next free number; none left: blocked, keeping what they hold.
    const keepExisting = snap.config.settings.numberAssignmentOnMove === 'keep-existing';
    const to = line ? (keptLine(held.get(userId) ?? [], line.pool.siteId, keepExisting) ?? (await takeFree(line.pool))) : null;
    if (line && to === null) return { numbers: { from, to: null }, blocked: noNumberLeft(line.name) };
    return { numbers: { from, to }, services: diffServices(services.get(userId) ?? new Map(), servicesOnLine(profile.services, to)) };
  }

  /** What an add would give a user placed at `site` with `profile`: the pool's next free number, or blocked. */
  async function predictAdd(site: string | null, profile: ReturnType<typeof snap.profiles.get>): Promise<Partial<PreviewUser>> {
    const line = site !== null && profile ? poolOf(site, profile) : null;
    if (!line) return {};
    const to = await takeFree(line.pool);
    return to === null ? { numbers: { from: [], to: null }, blocked: noNumberLeft(line.name) } : { numbers: { from: [], to } };
  }

  const seen = new Set<string>();
  let held = new Map<string, HeldNumber[]>();
  let services = new Map<string, Map<string, unknown>>();
  let cursor: SourceCursor | null = null;
  do {
    const page = await readSourceRecords(source, cursor, options.pageSize ?? 500, { watermark: null, heartbeat: () => undefined });
    report.problems.push(...page.problems);
    const { users, disabled, problems, unusableIds, unidentified } = mapRecords(source, page.records);
    report.problems.push(...problems);
    report.counts.unidentified += page.unidentified + unidentified;
    // As a sync counts them: every record the source returned, usable or not.
    report.counts.seen += page.records.length + page.problems.length;
    // Invalid and disabled records are still in the source: not deletions.
    for (const id of unusableIds) seen.add(id);
    for (const account of disabled) {
      seen.add(account.externalId);
      report.disabled.push(account.externalId);
    }
    const onRecord = new Map(
      users.length === 0
        ? []
        : (
            await db
              .selectFrom('users')
              .select(['id', 'external_id', 'source_hash', 'site_id', 'status'])
              .where('customer_id', '=', snap.customerId)
              .where('source_id', '=', source.id)
              .where(
                'external_id',
                'in',
                users.map((u) => u.externalId),
              )
              .execute()
          ).map((row) => [row.external_id, row]),
    );
    // What the users a sync would update hold now: their numbers and services.
    const updating = users
      .map((u) => onRecord.get(u.externalId))
      .filter((e) => e !== undefined && e.site_id !== null && e.status !== 'deleted' && users.some((u) => u.externalId === e.external_id && u.hash !== e.source_hash))
      .map((e) => String(e!.id));
    [held, services] = await Promise.all([numbersHeld(db, updating), activeServices(db, updating)]);
    const listedUsers: PreviewUser[] = [];
    for (const user of users) {
      seen.add(user.externalId);
      const existing = onRecord.get(user.externalId);
      const siteWhy = explainSite(user.user, source.userType, snap.sites);
      const profileWhy = siteWhy.site === null ? null : explainFtpRule(user.user, snap.ftpRules);
      const placedNow = existing !== undefined && existing.site_id !== null && existing.status !== 'deleted';
      const currentSite = placedNow ? (snap.siteNames.get(existing.site_id!) ?? null) : null;
      const change = !existing ? 'new' : existing.status === 'deleted' || existing.source_hash !== user.hash ? 'changed' : 'unchanged';
      const pass = change === 'unchanged' ? null : placedNow ? 'update' : 'add';
      const move = currentSite !== null && siteWhy.site !== null && currentSite !== siteWhy.site;
      // After a move an update applies updateSyncProfile when set; otherwise the rules choose.
      const afterMove = pass === 'update' && move ? snap.config.settings.updateSyncProfile : undefined;
      const profile = afterMove ? snap.profiles.get(afterMove) : profileWhy?.rule ? snap.profiles.get(profileWhy.rule.profile) : undefined;
      const update =
        pass === 'update' && modes.includes('update')
          ? await predictUpdate(String(existing!.id), siteWhy.site === null ? currentSite : siteWhy.site, profile)
          : pass === 'add' && modes.includes('add') && report.flowThrough
            ? await predictAdd(siteWhy.site, profile)
            : {};
      // Listed: the users a sync of these modes would run a pass for. Without --mode, every user
      // (unchanged ones too: the whole picture); with it, only those its modes would touch.
      const listed = pass === null ? options.modes === undefined : modes.includes(pass);
      const preview: PreviewUser = {
        externalId: user.externalId,
        username: user.user.username ?? null,
        email: user.user.email ?? null,
        change,
        site: siteWhy.site,
        currentSite,
        move,
        profile: profile?.name ?? null,
        numberPool: profile?.line?.numberFrom ?? null,
        pass,
        ...update,
        why: { site: siteWhy, profile: profileWhy },
      };
      if (listed) listedUsers.push(preview);
      const c = report.counts;
      c[preview.change]++;
      if (preview.site) c.placed++;
      else c.unplaced++;
      if (preview.move) c.moves++;
      if (preview.kept) c.kept++;
      if (preview.blocked) c.blocked++;
      if (preview.profile) c.matched++;
      else if (preview.site) c.unmatched++;
    }
    if (options.onUsers) await options.onUsers(listedUsers);
    else report.users.push(...listedUsers);
    cursor = page.next;
  } while (cursor);

  // Users on record that the source no longer has (a full read tells: a preview always reads all).
  const known = await db
    .selectFrom('users')
    .select('external_id')
    .where('customer_id', '=', snap.customerId)
    .where('source_id', '=', source.id)
    .where('status', '<>', 'deleted')
    .execute();
  const notSeen = known.map((k) => k.external_id).filter((id) => !seen.has(id));
  // A read that could not identify every record cannot tell who left: someone not seen may be
  // one of the records it could not read.
  report.incomplete = report.counts.unidentified > 0;
  if (report.incomplete) report.counts.unconfirmedDeletions = notSeen.length;
  else if (modes.includes('delete')) report.deletions.push(...notSeen);
  report.counts.deletions = report.deletions.length;
  if (modes.includes('delete')) {
    // The threshold a delete sync would apply to this read.
    const sourceUsers = await countSourceUsers(db, { customerId: snap.customerId, sourceId: source.id });
    const deletions = report.incomplete ? notSeen.length : report.deletions.length;
    const decision = decideDeletions(
      { deletions, sourceUsers, seen: report.counts.seen, unidentified: report.counts.unidentified, fullRead: true },
      snap.config.settings.deleteThreshold,
    );
    report.threshold = { deletions, limit: decision.limit, sourceUsers, held: !decision.proceed, ...(decision.proceed ? {} : { reason: decision.reason }) };
  }
  report.counts.invalid = report.problems.length;
  report.counts.disabled = report.disabled.length;
  return report;
}

import type { Kysely } from 'kysely';
import type { Database } from '../adapters/db/schema.js';
import type { ConfigSnapshots } from '../adapters/db/snapshots.js';
import { mapRecords, readSourceRecords } from '../adapters/sources/index.js';
import { explainFtpRule, explainSite, type FtpResolution, type SiteResolution } from '../domain/matching.js';
import type { SourceCursor, SourceProblem } from '../domain/source.js';

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
  /** Users on record for this source that the source no longer has: a delete sync's candidates. */
  readonly deletions: string[];
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
 * same criteria against each user, with no side effects (nothing imported, reserved or sent).
 */
export async function previewSource(
  db: Kysely<Database>,
  snapshots: ConfigSnapshots,
  options: { customer: string; source: string; configVersion: number; pageSize?: number },
): Promise<PreviewReport> {
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
    disabled: [],
    deletions: [],
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
      matched: 0,
      unmatched: 0,
      deletions: 0,
      invalid: 0,
      disabled: 0,
      unidentified: 0,
      unconfirmedDeletions: 0,
    },
  };
  const seen = new Set<string>();
  let cursor: SourceCursor | null = null;
  do {
    const page = await readSourceRecords(source, cursor, options.pageSize ?? 500, { watermark: null, heartbeat: () => undefined });
    report.problems.push(...page.problems);
    const { users, disabled, problems, unusableIds, unidentified } = mapRecords(source, page.records);
    report.problems.push(...problems);
    report.counts.unidentified += page.unidentified + unidentified;
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
              .select(['external_id', 'source_hash', 'site_id'])
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
    for (const user of users) {
      seen.add(user.externalId);
      const existing = onRecord.get(user.externalId);
      const siteWhy = explainSite(user.user, source.userType, snap.sites);
      const profileWhy = siteWhy.site === null ? null : explainFtpRule(user.user, snap.ftpRules);
      const profile = profileWhy?.rule ? snap.profiles.get(profileWhy.rule.profile) : undefined;
      const currentSite = existing?.site_id == null ? null : (snap.siteNames.get(existing.site_id) ?? null);
      const preview: PreviewUser = {
        externalId: user.externalId,
        username: user.user.username ?? null,
        email: user.user.email ?? null,
        change: !existing ? 'new' : existing.source_hash === user.hash ? 'unchanged' : 'changed',
        site: siteWhy.site,
        currentSite,
        move: currentSite !== null && siteWhy.site !== null && currentSite !== siteWhy.site,
        profile: profile?.name ?? null,
        numberPool: profile?.line?.numberFrom ?? null,
        why: { site: siteWhy, profile: profileWhy },
      };
      report.users.push(preview);
      const c = report.counts;
      c.seen++;
      c[preview.change]++;
      if (preview.site) c.placed++;
      else c.unplaced++;
      if (preview.move) c.moves++;
      if (preview.profile) c.matched++;
      else if (preview.site) c.unmatched++;
    }
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
  else report.deletions.push(...notSeen);
  report.counts.deletions = report.deletions.length;
  report.counts.invalid = report.problems.length;
  report.counts.disabled = report.disabled.length;
  return report;
}

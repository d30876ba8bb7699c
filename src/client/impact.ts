import type { Kysely } from 'kysely';
import { countSourceUsers } from '../adapters/db/lifecycle.js';
import { numbersHeld } from '../adapters/db/numbers.js';
import type { Database } from '../adapters/db/schema.js';
import { matchingOf } from '../adapters/db/snapshots.js';
import { diffServices, type ServiceChanges } from '../adapters/db/user-services.js';
import { mapRecords, readSourceRecords } from '../adapters/sources/index.js';
import type { CustomerConfig, SourceConfig } from '../domain/config/schema.js';
import { decideDeletions } from '../domain/deletions.js';
import { explainFtpRule, explainSite, type FtpResolution, type SiteResolution } from '../domain/matching.js';
import { keptLine, type HeldNumber } from '../domain/numbers.js';
import { servicesOnLine } from '../domain/services.js';
import type { SourceCursor, SourceProblem } from '../domain/source.js';
import { inGroup } from '../domain/targets.js';
import type { CanonicalUser, UserType } from '../domain/user.js';

/*
 * The impact of a candidate configuration (`flowthru preview SOURCE --config FILE`): what it would
 * decide for the users already synced, next to what they hold now, without applying it. Reads only:
 * nothing is written to the database, the outbox, Temporal or a target. Users are evaluated and
 * handed on a page at a time; what is kept for the whole run is counts (and, reading the source,
 * the external ids seen, to find who left).
 */

/** What the candidate would change for one user. */
export interface ImpactUser {
  readonly externalId: string;
  readonly username: string | null;
  /** `synced`: on record, evaluated; `new`: only in the source (--read-source); `gone`: on record, not in the source (--read-source). */
  readonly kind: 'synced' | 'new' | 'gone';
  readonly status: string | null;
  readonly site: { readonly from: string | null; readonly to: string | null };
  /** Placed now, and another site matches: a move. */
  readonly move: boolean;
  /** Placed now, and no site matches: an update keeps them where they are. */
  readonly kept: boolean;
  readonly profile: { readonly from: string | null; readonly to: string | null };
  /** The FTP rule (1-based) that chose the profile, null when none did. */
  readonly rule: number | null;
  /** Where the line would come from, and whether the number held now stays. */
  readonly line: { readonly pool: string | null; readonly from: readonly string[]; readonly keeps: boolean } | null;
  readonly services: ServiceChanges;
  /** Targets that would hold the user and do not yet, and those that hold them and would not. */
  readonly targets: { readonly added: readonly string[]; readonly removed: readonly string[] };
  readonly why: { readonly site: SiteResolution | null; readonly profile: FtpResolution | null };
}

export interface ImpactReport {
  readonly customer: string;
  readonly source: string;
  /** The configuration version in force, which the candidate is compared with. */
  readonly configVersion: number;
  readonly readSource: boolean;
  readonly flowThrough: boolean;
  /** Reading the source, some records could not be identified: who left cannot be told, so nobody is listed as gone. */
  incomplete: boolean;
  readonly counts: {
    evaluated: number;
    unchanged: number;
    changed: number;
    moves: number;
    placed: number;
    unplaced: number;
    kept: number;
    profileChanges: number;
    lineChanges: number;
    serviceChanges: number;
    targetChanges: number;
    new: number;
    deletions: number;
    invalid: number;
  };
  /** Users per site (`(customer level)` for none) and per profile (`(none)`) under the candidate. */
  readonly bySite: Record<string, number>;
  readonly byProfile: Record<string, number>;
  /** Each FTP rule of the candidate with the users it would match first. */
  readonly byRule: { rule: number; criteria: string; profile: string; users: number }[];
  /** Sites whose move criteria and rules of the candidate that would match nobody. */
  readonly matchingNobody: { readonly sites: string[]; readonly rules: number[] };
  threshold: { readonly deletions: number; readonly limit: number; readonly sourceUsers: number; readonly held: boolean; readonly reason?: string } | null;
  readonly problems: SourceProblem[];
}

interface OnRecord {
  id: string;
  external_id: string;
  username: string | null;
  user_type: string;
  attributes: Record<string, unknown>;
  status: string;
  site: string | null;
  profile: string | null;
}

const PAGE = 500;

export async function previewImpact(
  db: Kysely<Database>,
  options: {
    customer: string;
    source: string;
    /** The configuration version in force. */
    configVersion: number;
    /** The candidate's configuration of the customer. */
    candidate: CustomerConfig;
    /** The customer as the configuration in force has it (absent: a customer the candidate adds). */
    inForce?: CustomerConfig | undefined;
    /** Read the source as the candidate describes it, instead of the users as they were synced. */
    readSource?: boolean;
    /** List unchanged users too. */
    all?: boolean;
    onUsers: (users: ImpactUser[]) => void | Promise<void>;
  },
): Promise<ImpactReport> {
  const { candidate } = options;
  const customer = await db.selectFrom('customers').select('id').where('name', '=', options.customer).executeTakeFirst();
  const sourceRow = customer && (await db.selectFrom('sync_sources').select(['id', 'user_type']).where('customer_id', '=', customer.id).where('name', '=', options.source).executeTakeFirst());
  const candidateSource = candidate.sources.find((s) => s.name === options.source);
  if (!candidateSource) throw new Error(`the candidate configuration has no source "${options.source}" for customer ${options.customer}`);
  const { sites, ftpRules } = matchingOf(candidate);
  const flowThrough = candidate.settings.flowThrough.enabled && candidate.settings.flowThrough.addSync;
  const siteIds = new Map(
    customer ? (await db.selectFrom('sites').select(['id', 'name']).where('customer_id', '=', customer.id).execute()).map((s) => [s.name, s.id] as const) : [],
  );
  const decideWith = decider(candidate, siteIds);
  // What the configuration in force decides for the same user: a change is the difference between the two.
  const inForce = options.inForce ? decider(options.inForce, siteIds) : undefined;

  const report: ImpactReport = {
    customer: options.customer,
    source: options.source,
    configVersion: options.configVersion,
    readSource: Boolean(options.readSource),
    flowThrough,
    incomplete: false,
    counts: { evaluated: 0, unchanged: 0, changed: 0, moves: 0, placed: 0, unplaced: 0, kept: 0, profileChanges: 0, lineChanges: 0, serviceChanges: 0, targetChanges: 0, new: 0, deletions: 0, invalid: 0 },
    bySite: {},
    byProfile: {},
    byRule: ftpRules.map((r, i) => ({ rule: i + 1, criteria: r.criteria.name, profile: r.profile, users: 0 })),
    matchingNobody: { sites: [], rules: [] },
    threshold: null,
    problems: [],
  };
  const bump = (counts: Record<string, number>, key: string) => (counts[key] = (counts[key] ?? 0) + 1);
  /** Users each site's move criteria match (a kept user is at a site that no longer matches them). */
  const siteMatches: Record<string, number> = {};

  /** Evaluates a page of users (on record, from the source, or both) and hands on those with a change. */
  async function evaluate(page: { record?: OnRecord; user: CanonicalUser; userType: UserType; externalId: string; username: string | null }[]): Promise<void> {
    const ids = page.flatMap((p) => (p.record ? [p.record.id] : []));
    const held = await numbersHeld(db, ids);
    const listed: ImpactUser[] = [];
    for (const { record, user, userType, externalId, username } of page) {
      const from = (record ? held.get(record.id) : undefined) ?? [];
      const next = decideWith(user, userType, record, from);
      const now = inForce?.(user, userType, record, from);
      const c = report.counts;
      c.evaluated++;
      if (!record) c.new++;
      if (next.site) c.placed++;
      else c.unplaced++;
      if (next.move) c.moves++;
      if (next.kept) c.kept++;
      bump(report.bySite, next.site ?? '(customer level)');
      if (next.why.site?.site) bump(siteMatches, next.why.site.site);
      if (next.site) bump(report.byProfile, next.profile ?? '(none)');
      if (next.rule !== null) report.byRule[next.rule]!.users++;
      const siteChanged = (record?.site ?? null) !== next.site || (now !== undefined && now.site !== next.site);
      const profileChanged = now ? now.profile !== next.profile : (record?.profile ?? null) !== next.profile;
      const lineChanged = now ? now.pool !== next.pool || now.keeps !== next.keeps : next.pool !== null && !next.keeps;
      const services = diffServices(new Map((now?.services ?? []).map((sv) => [sv.key, sv.settings])), next.services);
      const servicesChanged = services.added.length + services.changed.length + services.removed.length > 0;
      const targets = { added: next.targets.filter((t) => !(now?.targets ?? []).includes(t)), removed: (now?.targets ?? []).filter((t) => !next.targets.includes(t)) };
      const targetsChanged = targets.added.length + targets.removed.length > 0;
      if (profileChanged) c.profileChanges++;
      if (lineChanged) c.lineChanges++;
      if (servicesChanged) c.serviceChanges++;
      if (targetsChanged) c.targetChanges++;
      // Matched by a site now, kept where they are by the candidate (no site matches them any more), or the reverse.
      const keptChanged = now !== undefined && now.kept !== next.kept;
      const changed = !record || siteChanged || keptChanged || profileChanged || lineChanged || servicesChanged || targetsChanged;
      if (changed) c.changed++;
      else c.unchanged++;
      if (!changed && !options.all) continue;
      listed.push({
        externalId,
        username,
        kind: record ? 'synced' : 'new',
        status: record?.status ?? null,
        site: { from: record?.site ?? null, to: next.site },
        move: next.move,
        kept: next.kept,
        profile: { from: now ? now.profile : (record?.profile ?? null), to: next.profile },
        rule: next.rule === null ? null : next.rule + 1,
        line: next.pool === null && from.length === 0 ? null : { pool: next.pool, from: from.map((h) => h.number), keeps: next.keeps },
        services,
        targets,
        why: { site: next.why.site, profile: next.why.profile },
      });
    }
    if (listed.length > 0) await options.onUsers(listed);
  }

  const recordsQuery = () =>
    db
      .selectFrom('users as u')
      .leftJoin('sites as s', 's.id', 'u.site_id')
      .leftJoin('user_profiles as p', 'p.id', 'u.profile_id')
      .select(['u.id', 'u.external_id', 'u.username', 'u.user_type', 'u.attributes', 'u.status', 's.name as site', 'p.name as profile'])
      .where('u.customer_id', '=', customer?.id ?? -1)
      .where('u.source_id', '=', sourceRow?.id ?? -1)
      .where('u.status', '<>', 'deleted');

  if (!options.readSource) {
    // The users as they were synced, a page at a time (keyset on id).
    let after = '0';
    for (;;) {
      const rows = (await recordsQuery().where('u.id', '>', after).orderBy('u.id').limit(PAGE).execute()) as OnRecord[];
      if (rows.length === 0) break;
      await evaluate(rows.map((r) => ({ record: r, user: r.attributes as CanonicalUser, userType: r.user_type as UserType, externalId: r.external_id, username: r.username })));
      after = rows.at(-1)!.id;
    }
  } else {
    // The source as the candidate reads it (its path, filter and attribute map), each page against the users on record.
    const source = { ...candidateSource, id: sourceRow?.id ?? -1 } as SourceConfig & { id: number };
    const seen = new Set<string>();
    let cursor: SourceCursor | null = null;
    do {
      const page = await readSourceRecords(source, cursor, PAGE, { watermark: null, heartbeat: () => undefined });
      report.problems.push(...page.problems);
      const mapped = mapRecords(source, page.records);
      report.problems.push(...mapped.problems);
      if (page.unidentified + mapped.unidentified > 0) report.incomplete = true;
      for (const id of [...mapped.unusableIds, ...mapped.disabled.map((d) => d.externalId)]) seen.add(id);
      const externalIds = mapped.users.map((u) => u.externalId);
      const records = new Map(
        externalIds.length === 0 ? [] : ((await recordsQuery().where('u.external_id', 'in', externalIds).execute()) as OnRecord[]).map((r) => [r.external_id, r]),
      );
      for (const id of externalIds) seen.add(id);
      await evaluate(
        mapped.users.map((u) => ({ record: records.get(u.externalId), user: u.user, userType: source.userType as UserType, externalId: u.externalId, username: u.user.username ?? null })),
      );
      cursor = page.next;
    } while (cursor);
    // Users on record the source no longer has: a delete sync's, held or not by the candidate's threshold.
    const gone: ImpactUser[] = [];
    let after = '0';
    while (!report.incomplete) {
      const rows = await recordsQuery().where('u.id', '>', after).orderBy('u.id').limit(PAGE).execute();
      if (rows.length === 0) break;
      after = rows.at(-1)!.id;
      for (const r of rows) {
        if (seen.has(r.external_id)) continue;
        report.counts.deletions++;
        gone.push({
          externalId: r.external_id,
          username: r.username,
          kind: 'gone',
          status: r.status,
          site: { from: r.site, to: null },
          move: false,
          kept: false,
          profile: { from: r.profile, to: null },
          rule: null,
          line: null,
          services: { added: [], changed: [], removed: [] },
          targets: { added: [], removed: [] },
          why: { site: null, profile: null },
        });
      }
      if (gone.length > 0) await options.onUsers(gone.splice(0));
    }
    report.counts.invalid = report.problems.length;
    if (customer && sourceRow) {
      const sourceUsers = await countSourceUsers(db, { customerId: customer.id, sourceId: sourceRow.id });
      const decision = decideDeletions(
        { deletions: report.counts.deletions, sourceUsers, seen: seen.size + report.problems.length, unidentified: 0, fullRead: true },
        candidate.settings.deleteThreshold,
      );
      report.threshold = { deletions: report.counts.deletions, limit: decision.limit, sourceUsers, held: !decision.proceed, ...(decision.proceed ? {} : { reason: decision.reason }) };
    }
  }
  report.matchingNobody.sites.push(...sites.map((s) => s.name).filter((name) => !siteMatches[name]));
  report.matchingNobody.rules.push(...report.byRule.filter((r) => r.users === 0).map((r) => r.rule));
  return report;
}

/** One configuration's decision for a user: site, profile, line, services, targets (as a pipeline pass would take them). */
interface Decision {
  readonly site: string | null;
  readonly move: boolean;
  readonly kept: boolean;
  readonly profile: string | null;
  /** The FTP rule (0-based) that chose the profile. */
  readonly rule: number | null;
  /** `site chicago`, `customer`, or null without a line. */
  readonly pool: string | null;
  /** The number held now stays the user's line. */
  readonly keeps: boolean;
  readonly services: ReturnType<typeof servicesOnLine>;
  readonly targets: readonly string[];
  readonly why: { readonly site: SiteResolution | null; readonly profile: FtpResolution | null };
}

/** Decides for users as `config` would: pure, given where they are and the numbers they hold. */
function decider(config: CustomerConfig, siteIds: ReadonlyMap<string, number>) {
  const { sites, ftpRules } = matchingOf(config);
  const flowThrough = config.settings.flowThrough.enabled && config.settings.flowThrough.addSync;
  const profiles = new Map(config.profiles.map((p) => [p.name, p]));
  const keepExisting = config.settings.numberAssignmentOnMove === 'keep-existing';
  return (user: CanonicalUser, userType: UserType, record: OnRecord | undefined, held: readonly HeldNumber[]): Decision => {
    const siteWhy = flowThrough ? explainSite(user, userType, sites) : null;
    const placedNow = record !== undefined && record.site !== null && record.status !== 'deleted';
    // An update keeps a placed user no site matches where they are; their profile is chosen there.
    const kept = placedNow && siteWhy !== null && siteWhy.site === null;
    const site = kept ? record!.site : (siteWhy?.site ?? null);
    const move = placedNow && siteWhy?.site != null && siteWhy.site !== record!.site;
    const afterMove = move ? config.settings.updateSyncProfile : undefined;
    const ruleWhy = site === null ? null : explainFtpRule(user, ftpRules);
    const profileName = afterMove ?? ruleWhy?.rule?.profile ?? null;
    const profile = profileName ? profiles.get(profileName) : undefined;
    let pool: string | null = null;
    let keeps = false;
    let number: string | null = null;
    if (profile?.line) {
      const poolSiteId = profile.line.numberFrom === 'site' ? (site ? (siteIds.get(site) ?? -1) : null) : null;
      const line = keptLine(held, poolSiteId, keepExisting);
      pool = profile.line.numberFrom === 'site' ? `site ${site}` : 'customer';
      keeps = line !== null;
      number = line ?? '(a new number)';
    }
    return {
      site,
      move,
      kept,
      profile: profileName,
      rule: afterMove ? null : (ruleWhy?.index ?? null),
      pool,
      keeps,
      services: profile ? servicesOnLine(profile.services, number) : [],
      targets: profile ? config.targets.filter((t) => inGroup(t, user)).map((t) => t.name) : [],
      why: { site: siteWhy, profile: ruleWhy },
    };
  };
}

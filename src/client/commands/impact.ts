import { loadConfigFile } from '../../adapters/config-file.js';
import { loadConfigVersion } from '../../adapters/db/config-store.js';
import { PermanentError } from '../../adapters/errors.js';
import { closeLdapConnections } from '../../adapters/sources/ldap.js';
import { describeChanges } from '../../adapters/db/user-services.js';
import { formatProblem } from '../../domain/config/validate.js';
import { jsonArrayStream, tableStream, UserError, withDatabase, type CliIo } from '../cli.js';
import { previewImpact, type ImpactUser } from '../impact.js';

const arrow = (from: string | null, to: string | null) => (from === to ? (to ?? '-') : `${from ?? '-'} → ${to ?? '-'}`);

/** A user's line in the impact table: each column says from → to, or what stays. */
export function impactRow(u: ImpactUser): Record<string, unknown> {
  const line = u.line === null ? null : u.line.keeps ? `keeps ${u.line.from[0]}` : u.line.pool ? `${u.line.from.join(' ') || '-'} → new from ${u.line.pool}` : `${u.line.from.join(' ')} → -`;
  const targets = [...u.targets.added.map((t) => `+${t}`), ...u.targets.removed.map((t) => `-${t}`)].join(' ');
  return {
    externalId: u.externalId,
    username: u.username,
    change: u.kind === 'gone' ? 'offboard' : u.kind === 'new' ? 'new' : u.move ? 'move' : u.kept ? 'kept' : u.site.from === null && u.site.to !== null ? 'place' : u.site.from !== null && u.site.to === null ? 'unplace' : 'update',
    site: arrow(u.site.from, u.site.to),
    profile: arrow(u.profile.from, u.profile.to),
    line,
    services: u.services.added.length + u.services.changed.length + u.services.removed.length > 0 ? describeChanges(u.services) : null,
    targets: targets || null,
  };
}

/**
 * `flowthru preview SOURCE --config FILE`: what a candidate configuration, not applied, would change
 * for the source's users, next to the configuration in force. Writes nothing anywhere.
 */
export async function previewCandidate(
  io: CliIo,
  source: string,
  opts: { customer?: string; json?: boolean; config: string; readSource?: boolean; all?: boolean },
  setExit: (code: number) => void,
): Promise<void> {
  const loaded = await loadConfigFile(opts.config);
  if (!loaded.ok) {
    for (const problem of loaded.problems) io.err(formatProblem(problem, opts.config));
    io.err(`${opts.config} is not a valid configuration (${loaded.problems.length} problem${loaded.problems.length === 1 ? '' : 's'}); nothing was previewed.`);
    setExit(1);
    return;
  }
  const owners = loaded.config.customers.filter((c) => (!opts.customer || c.name === opts.customer) && c.sources.some((s) => s.name === source));
  if (owners.length === 0) throw new UserError(`no source "${source}"${opts.customer ? ` for customer "${opts.customer}"` : ''} in ${opts.config}`);
  if (owners.length > 1) throw new UserError(`source "${source}" exists for customers ${owners.map((c) => c.name).join(', ')} in ${opts.config}: say which with --customer`);
  const candidate = owners[0]!;
  const rows = tableStream<Record<string, unknown>>(io, ['externalId', 'username', 'change', 'site', 'profile', 'line', 'services', 'targets']);
  const json = jsonArrayStream(io, 'users');
  const report = await withDatabase(async (db) => {
    const inForce = await loadConfigVersion(db);
    try {
      return await previewImpact(db, {
        customer: candidate.name,
        source,
        configVersion: inForce?.version ?? 0,
        candidate,
        inForce: inForce?.config.customers.find((c) => c.name === candidate.name),
        readSource: Boolean(opts.readSource),
        all: Boolean(opts.all),
        onUsers: (users) => (opts.json ? json.items(users) : rows.rows(users.map(impactRow))),
      });
    } catch (error) {
      if (error instanceof PermanentError) throw new UserError(error.message);
      throw error;
    } finally {
      await closeLdapConnections();
    }
  });
  if (opts.json) {
    json.end({ candidate: opts.config, ...report });
    return;
  }
  rows.end();
  const c = report.counts;
  const versus = report.configVersion ? `configuration version ${report.configVersion}` : 'no configuration (none applied yet)';
  io.out('');
  io.out(
    `Impact of ${opts.config} on ${report.customer}/${report.source}, against ${versus}${report.readSource ? ', reading the source' : ', for the users as synced'}: ` +
      `${c.evaluated} users evaluated, ${c.changed} would change, ${c.unchanged} would not; ${c.moves} would move, ${c.kept} would be kept where they are ` +
      `(no site matches), ${c.unplaced} at customer level; ${c.profileChanges} profile changes, ${c.lineChanges} line changes, ${c.serviceChanges} service changes, ` +
      `${c.targetChanges} target changes${report.readSource ? `; ${c.new} new in the source, ${c.deletions} gone from it` : ''}.`,
  );
  const counted = (counts: Record<string, number>) => Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} ${n}`).join(', ') || '-';
  io.out(`  by site:    ${counted(report.bySite)}`);
  io.out(`  by profile: ${counted(report.byProfile)}`);
  if (report.byRule.length > 0) io.out(`  by rule:    ${report.byRule.map((r) => `${r.rule} ${r.criteria} → ${r.profile}: ${r.users}`).join('; ')}`);
  const nobody = [...report.matchingNobody.sites.map((s) => `site ${s}`), ...report.matchingNobody.rules.map((r) => `rule ${r} (${report.byRule[r - 1]!.criteria})`)];
  if (nobody.length > 0) io.out(`  matching nobody: ${nobody.join(', ')}`);
  if (!report.flowThrough) io.out(`  Flow-through is off in the candidate: its pipelines would import users and provision nothing.`);
  if (report.incomplete) io.out('  The source read is incomplete (records that could not be identified): nobody is listed as gone.');
  if (report.threshold && report.threshold.deletions > 0) {
    const t = report.threshold;
    io.out(t.held ? `  A delete sync would be held, offboarding nobody: ${t.reason}` : `  A delete sync would offboard ${t.deletions} of ${t.sourceUsers} (the candidate's threshold allows ${t.limit}).`);
  }
  for (const problem of report.problems.slice(0, 20)) io.out(`  skipped ${problem.at}: ${problem.message}`);
  io.out('  Nothing was changed. The candidate decides for a user when their pipeline next runs (a changed record, a retry) once applied.');
}

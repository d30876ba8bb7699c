import type { Command } from 'commander';
import { userDetail, type Decision, type UserDetail } from '../../adapters/db/queries.js';
import { formatExplanation, type Explanation } from '../../domain/criteria.js';
import type { FtpResolution, SiteResolution } from '../../domain/matching.js';
import { readSettings } from '../../settings.js';
import { onboardWorkflowId } from '../../workflows/config.js';
import { temporalUiUrl, UserError, withDatabase, type CliIo } from '../cli.js';
import { findOneUser } from '../operations.js';

export { findOneUser };

export const isSiteResolution = (why: unknown): why is SiteResolution =>
  typeof why === 'object' && why !== null && 'site' in why && Array.isArray((why as SiteResolution).considered);
export const isFtpResolution = (why: unknown): why is FtpResolution =>
  typeof why === 'object' && why !== null && 'rule' in why && Array.isArray((why as FtpResolution).considered);

const mark = (held: boolean) => (held ? '✓' : '✗');

/** An explanation on one line: every condition with its verdict and the values seen. */
function compactExplanation(e: Explanation): string {
  const seen = e.seen === undefined || e.seen === null ? '' : ` (seen ${JSON.stringify(e.seen)})`;
  if (!e.parts) return `${mark(e.held)} ${e.condition}${seen}${e.reason ? ` — ${e.reason}` : ''}`;
  if (e.condition.startsWith('not (')) return `${mark(e.held)} not ${compactExplanation(e.parts[0]!)}`;
  return `${mark(e.held)} ${e.condition} [${e.parts.map(compactExplanation).join('; ')}]`;
}

/** What a site decision concluded, in a sentence. */
export function siteVerdict(why: SiteResolution): string {
  const matched = why.considered.at(-1);
  return why.site === null ? `no site matched (${why.considered.length} considered)` : `site ${why.site} matched (move criteria ${matched?.criteria ?? '?'})`;
}

/** What a profile decision concluded, in a sentence. */
export function profileVerdict(why: FtpResolution): string {
  if (!why.rule) return why.considered.length === 0 ? 'no FTP rules in force' : `no FTP rule matched (${why.considered.length} considered)`;
  return `rule ${(why.index ?? 0) + 1} matched (criteria ${why.rule.criteria.name}): profile ${why.rule.profile}${why.rule.role ? `, role ${why.rule.role}` : ''}`;
}

/**
 * A step's kept explanation (`details.why`) in a line or two, for `log --why`: the verdict, then
 * each site or rule considered with its conditions and the values seen.
 */
export function whyInBrief(why: unknown): string[] {
  if (why === null || why === undefined) return [];
  if (isSiteResolution(why)) {
    const tried = why.considered.map((c) => (c.explanation ? `${c.site}: ${compactExplanation(c.explanation)}` : `${c.site}: no move criteria for this user type`));
    return [siteVerdict(why), ...(tried.length > 0 ? [tried.join(' | ')] : [])];
  }
  if (isFtpResolution(why)) {
    const tried = why.considered.map((c, i) => `rule ${i + 1} ${c.criteria} → ${c.profile}: ${compactExplanation(c.explanation)}`);
    return [profileVerdict(why), ...(tried.length > 0 ? [tried.join(' | ')] : [])];
  }
  return [JSON.stringify(why)];
}

/** A step's kept explanation in full: every site or rule considered, each condition on its own line. */
function whyInFull(why: unknown, indent: string): string[] {
  if (isSiteResolution(why)) {
    const lines = [`${indent}${siteVerdict(why)}`];
    for (const c of why.considered) {
      if (!c.explanation) {
        lines.push(`${indent}  site ${c.site}: no move criteria for this user type, skipped`);
        continue;
      }
      lines.push(`${indent}  site ${c.site}, move criteria ${c.criteria}: ${c.explanation.held ? 'matched' : 'did not match'}`);
      lines.push(formatExplanation(c.explanation, `${indent}    `));
    }
    return lines;
  }
  if (isFtpResolution(why)) {
    const lines = [`${indent}${profileVerdict(why)}`];
    for (const [i, c] of why.considered.entries()) {
      lines.push(`${indent}  rule ${i + 1}, criteria ${c.criteria} → profile ${c.profile}: ${c.explanation.held ? 'matched' : 'did not match'}`);
      lines.push(formatExplanation(c.explanation, `${indent}    `));
    }
    return lines;
  }
  return [`${indent}${JSON.stringify(why)}`];
}

function printDecision(io: CliIo, title: string, decision: Decision | null): void {
  if (!decision) {
    io.out(`${title}: none on record`);
    return;
  }
  io.out(`${title} (${decision.at}${decision.summary ? `: ${decision.summary}` : ''}):`);
  for (const line of whyInFull(decision.why, '  ')) io.out(line);
}

function printUser(io: CliIo, user: UserDetail, link: string): void {
  const settingsText = (settings: Record<string, unknown>) =>
    Object.entries(settings)
      .map(([k, v]) => `${k} ${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(', ');
  const field = (name: string, value: string) => io.out(`  ${name.padEnd(10)} ${value}`);
  io.out(`${user.username ?? user.externalId} (${user.customer}/${user.source}/${user.externalId})`);
  field('email', user.email ?? '-');
  field('status', user.reason ? `${user.status}: ${user.reason}` : user.status);
  if (user.deletedAt) field('deleted', user.deletedAt);
  field('site', user.site ?? '- (customer level)');
  field('profile', user.profile ?? '-');
  field('role', user.role ?? '-');
  field('numbers', user.numbers.map((n) => `${n.number} (${n.status}, ${n.site ? `site ${n.site}` : 'customer pool'})`).join(', ') || '-');
  if (user.services.length === 0) field('services', '-');
  for (const [i, service] of user.services.entries()) {
    const settings = settingsText(service.settings);
    field(i === 0 ? 'services' : '', `${service.key}${service.key === service.kind ? '' : ` (${service.kind})`}${settings ? `: ${settings}` : ''}`);
  }
  if (user.targets.length === 0) field('targets', '-');
  for (const [i, t] of user.targets.entries()) {
    field(i === 0 ? 'targets' : '', `${t.target}: ${t.status}${t.event ? ` (last ${t.event}${t.pushedAt ? ` ${t.pushedAt}` : ''})` : ''}${t.error ? `: ${t.error}` : ''}`);
  }
  field('pipeline', link);
  io.out('');
  printDecision(io, 'Site decision', user.decisions.site);
  printDecision(io, 'Profile decision', user.decisions.profile);
}

/** `flowthru user USER`: one user in full, with why they are where they are and what they got. */
export async function showUser(io: CliIo, who: string, opts: { customer?: string; json?: boolean }): Promise<void> {
  const settings = readSettings();
  const { id, user } = await withDatabase(async (db) => {
    const found = await findOneUser(db, who, opts.customer);
    return { id: String(found.id), user: await userDetail(db, found.id) };
  });
  if (!user) throw new UserError(`no user "${who}"${opts.customer ? ` for customer ${opts.customer}` : ''}`);
  const workflowId = onboardWorkflowId(user.customer, user.source, user.externalId);
  const link = temporalUiUrl(settings, workflowId);
  if (opts.json) {
    const { decisions, ...rest } = user;
    const when = (d: Decision | null) => (d ? { at: d.at, summary: d.summary, workflowId: d.workflowId, runId: d.runId } : null);
    io.out(
      JSON.stringify(
        {
          id,
          ...rest,
          why: { site: decisions.site?.why ?? null, profile: decisions.profile?.why ?? null },
          decisions: { site: when(decisions.site), profile: when(decisions.profile) },
          workflowId,
          temporalUi: link,
        },
        null,
        2,
      ),
    );
    return;
  }
  printUser(io, user, link);
}

export function registerUserCommand(program: Command, io: CliIo): void {
  program
    .command('user')
    .argument('<user>', 'username, external id or email')
    .option('--customer <name>', 'the customer, when the user is ambiguous')
    .option('--json', 'machine-readable output, with the raw explanations')
    .description('one user: status and reason, site, profile, numbers, services, why, and their pipeline in Temporal UI')
    .action((who: string, opts: { customer?: string; json?: boolean }) => showUser(io, who, opts));
}

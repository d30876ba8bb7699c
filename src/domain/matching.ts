import { explain, matches, type Condition, type Explanation } from './criteria.js';
import type { CanonicalUser, UserType } from './user.js';

/** A site as the move step sees it, in the order sites are evaluated (configuration order). */
export interface SiteCandidate {
  readonly name: string;
  readonly moveCriteria: Partial<Record<UserType, { readonly name: string; readonly condition: Condition }>>;
}

export interface FtpRuleCandidate {
  readonly criteria: { readonly name: string; readonly condition: Condition };
  readonly profile: string;
  readonly role?: string | undefined;
}

export interface SiteResolution {
  readonly site: string | null;
  /** Every site looked at, in order, up to and including the one that matched. */
  readonly considered: readonly { site: string; criteria: string | null; explanation?: Explanation }[];
}

export interface FtpResolution {
  readonly rule: FtpRuleCandidate | null;
  readonly index: number | null;
  readonly considered: readonly { criteria: string; profile: string; explanation: Explanation }[];
}

/**
 * The first site, in configuration order, whose move criteria for the user's type match. A site
 * without move criteria for that type never receives users of that type.
 */
export function resolveSite(user: CanonicalUser, userType: UserType, sites: readonly SiteCandidate[]): string | null {
  for (const site of sites) {
    const criteria = site.moveCriteria[userType];
    if (criteria && matches(criteria.condition, user)) return site.name;
  }
  return null;
}

export function explainSite(user: CanonicalUser, userType: UserType, sites: readonly SiteCandidate[]): SiteResolution {
  const considered: SiteResolution['considered'][number][] = [];
  for (const site of sites) {
    const criteria = site.moveCriteria[userType];
    if (!criteria) {
      considered.push({ site: site.name, criteria: null });
      continue;
    }
    const explanation = explain(criteria.condition, user);
    considered.push({ site: site.name, criteria: criteria.name, explanation });
    if (explanation.held) return { site: site.name, considered };
  }
  return { site: null, considered };
}

/** The first FTP rule whose criteria match: rule order is the configuration's order. */
export function resolveFtpRule(user: CanonicalUser, rules: readonly FtpRuleCandidate[]): FtpRuleCandidate | null {
  return rules.find((rule) => matches(rule.criteria.condition, user)) ?? null;
}

export function explainFtpRule(user: CanonicalUser, rules: readonly FtpRuleCandidate[]): FtpResolution {
  const considered: FtpResolution['considered'][number][] = [];
  for (const [index, rule] of rules.entries()) {
    const explanation = explain(rule.criteria.condition, user);
    considered.push({ criteria: rule.criteria.name, profile: rule.profile, explanation });
    if (explanation.held) return { rule, index, considered };
  }
  return { rule: null, index: null, considered };
}

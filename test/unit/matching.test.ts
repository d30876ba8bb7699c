import { describe, expect, it } from 'vitest';
import type { Condition } from '../../src/domain/criteria.js';
import { explainFtpRule, explainSite, resolveFtpRule, resolveSite, type FtpRuleCandidate, type SiteCandidate } from '../../src/domain/matching.js';

const city = (value: string): { name: string; condition: Condition } => ({
  name: `city-${value.toLowerCase()}`,
  condition: { attribute: 'city', op: 'equals', value },
});

const sites: SiteCandidate[] = [
  { name: 'chicago', moveCriteria: { microsoft: city('Chicago'), csv: city('Chicago') } },
  { name: 'chicago-north', moveCriteria: { microsoft: city('Chicago') } },
  { name: 'dallas', moveCriteria: { ldap: city('Dallas') } },
];

describe('resolveSite', () => {
  it('takes the first site in order whose criteria for the user type match', () => {
    expect(resolveSite({ city: 'Chicago' }, 'microsoft', sites)).toBe('chicago');
    expect(resolveSite({ city: 'Chicago' }, 'microsoft', [...sites].reverse())).toBe('chicago-north');
  });
  it('uses only the criteria of the user type', () => {
    expect(resolveSite({ city: 'Dallas' }, 'microsoft', sites)).toBeNull();
    expect(resolveSite({ city: 'Dallas' }, 'ldap', sites)).toBe('dallas');
    expect(resolveSite({ city: 'Chicago' }, 'ldap', sites)).toBeNull();
  });
  it('leaves a user nobody matches at customer level and says why', () => {
    const resolution = explainSite({ city: 'Boston' }, 'microsoft', sites);
    expect(resolution.site).toBeNull();
    expect(resolution.considered.map((c) => [c.site, c.criteria])).toEqual([
      ['chicago', 'city-chicago'],
      ['chicago-north', 'city-chicago'],
      ['dallas', null],
    ]);
    expect(resolution.considered[0]?.explanation).toMatchObject({ held: false, seen: 'Boston' });
  });
  it('stops explaining at the matching site', () => {
    expect(explainSite({ city: 'Chicago' }, 'microsoft', sites).considered).toHaveLength(1);
  });
});

describe('resolveFtpRule', () => {
  const rules: FtpRuleCandidate[] = [
    { criteria: { name: 'eng', condition: { attribute: 'department', op: 'equals', value: 'Engineering' } }, profile: 'engineering' },
    { criteria: { name: 'anyone', condition: { all: [] } }, profile: 'basic', role: 'user' },
  ];
  it('the first matching rule wins', () => {
    expect(resolveFtpRule({ department: 'engineering' }, rules)?.profile).toBe('engineering');
    expect(resolveFtpRule({ department: 'Sales' }, rules)?.profile).toBe('basic');
    expect(resolveFtpRule({ department: 'Sales' }, rules.slice(0, 1))).toBeNull();
  });
  it('explains which rule matched and why the earlier ones did not', () => {
    const resolution = explainFtpRule({ department: 'Sales' }, rules);
    expect(resolution.index).toBe(1);
    expect(resolution.considered).toHaveLength(2);
    expect(resolution.considered[0]?.explanation).toMatchObject({ held: false, seen: 'Sales' });
  });
});

import { describe, expect, it } from 'vitest';
import { SCIM_FIELDS as SCIM_PLUGIN_FIELDS } from '../../src/adapters/targets/scim.js';
import { customerParts, type TargetConfig } from '../../src/domain/config/schema.js';
import { templateProblem } from '../../src/domain/targets.js';
import { desiredAction, fieldsKey, formatNumber, planPushes, SCIM_FIELDS, targetEvent, targetFields, type TargetUserView } from '../../src/domain/targets.js';

/* The data filter, the provisioning group and the order of pushes: pure domain code (SPEC §4). */

const target = (raw: Record<string, unknown>): TargetConfig => customerParts.targets.parse({ name: 't', kind: 'webhook', url: 'https://h.example/in', secretEnv: 'S', ...raw });

const ada: TargetUserView = {
  userId: '7',
  externalId: 'E1',
  customer: 'acme',
  source: 'hr',
  userType: 'csv',
  status: 'provisioned',
  reason: null,
  site: 'chicago',
  siteDisplayName: 'Chicago',
  siteLocale: 'en-US',
  siteTimeZone: 'America/Chicago',
  profile: 'engineering',
  role: 'engineer',
  number: '+13125550142',
  services: ['phone', 'voicemail'],
  attributes: { username: 'ada', email: 'ada@acme.example', firstName: 'Ada', lastName: 'Lovelace', department: 'Engineering', attributes: { costCentre: 'R&D 42' } },
};

describe('the data filter', () => {
  it("gives each kind its defaults: a webhook sees the whole user, a user's own LDAP entry only the line", () => {
    expect(targetFields(target({}), ada)).toEqual({
      externalId: 'E1',
      username: 'ada',
      email: 'ada@acme.example',
      firstName: 'Ada',
      lastName: 'Lovelace',
      displayName: 'Ada Lovelace',
      department: 'Engineering',
      title: null,
      site: 'chicago',
      profile: 'engineering',
      role: 'engineer',
      number: '+13125550142',
      services: 'phone,voicemail',
      status: 'provisioned',
    });
    const ldap = customerParts.targets.parse({ name: 'd', kind: 'ldap', url: 'ldap://x', bindDn: 'cn=a', passwordEnv: 'P', baseDn: 'dc=x' });
    expect(targetFields(ldap, ada)).toEqual({ telephoneNumber: '+13125550142' });
  });

  it('renders templates over canonical and source attributes, unescaped; an empty result is no value', () => {
    const fields = targetFields(target({ fields: { label: '{{lastName}}, {{firstName}} <{{email}}>', cc: '{{attributes.costCentre}}', none: '{{mobile}}' } }), ada);
    expect(fields).toEqual({ label: 'Lovelace, Ada <ada@acme.example>', cc: 'R&D 42', none: null });
  });

  it("names the site's locale and time zone, and renders nothing for a site without them", () => {
    const scim = target({ fields: { locale: '{{siteLocale}}', timezone: '{{siteTimeZone}}' } });
    expect(targetFields(scim, ada)).toEqual({ locale: 'en-US', timezone: 'America/Chicago' });
    expect(targetFields(scim, { ...ada, siteLocale: null, siteTimeZone: null })).toEqual({ locale: null, timezone: null });
  });

  it('applies include and exclude', () => {
    expect(Object.keys(targetFields(target({ include: ['site', 'number', 'status'] }), ada))).toEqual(['site', 'number', 'status']);
    expect(Object.keys(targetFields(target({ exclude: ['email', 'firstName', 'lastName', 'displayName', 'username'] }), ada))).not.toContain('email');
  });

  it('formats the number: E.164, digits, or the last N digits; extensions stay as they are', () => {
    expect(formatNumber('+13125550142', 'e164', 4)).toBe('+13125550142');
    expect(formatNumber('+13125550142', 'digits', 4)).toBe('13125550142');
    expect(formatNumber('+13125550142', 'extension', 4)).toBe('0142');
    expect(formatNumber('4100', 'e164', 4)).toBe('4100');
    expect(formatNumber(null, 'extension', 4)).toBeNull();
    expect(targetFields(target({ numberFormat: 'extension', extensionDigits: 5, include: ['number'] }), ada)).toEqual({ number: '50142' });
    expect(targetFields(target({ fields: { ext: '{{extension}}', full: '{{e164}}' }, numberFormat: 'extension' }), ada)).toEqual({ ext: '0142', full: '+13125550142' });
  });

  it('shows a user waiting for their targets as provisioned', () => {
    expect(targetFields(target({ include: ['status'] }), { ...ada, status: 'provisioning' })).toEqual({ status: 'provisioned' });
  });

  it('refuses, at validate, a template naming an unknown variable or helper; any source attribute may be named', () => {
    expect(templateProblem('{{lastName}}, {{firstName}} {{attributes.costCentre}} {{#if number}}{{extension}}{{/if}}')).toBeNull();
    expect(templateProblem('{{nuber}}')).toMatch(/^"nuber" is not a template variable \(one of username, /);
    expect(templateProblem('{{upper firstName}}')).toBe(`unknown helper "upper" (only Handlebars' built-in helpers: if, unless, each, with, lookup)`);
    expect(templateProblem('{{#if firstName}}{{firstName}}')).toMatch(/^template does not parse: Parse error on line 1: Expecting/);
    // A block helper's argument is read like any variable: misspelt, its block would never be written.
    expect(templateProblem('{{#if numbr}}{{number}}{{/if}}')).toMatch(/^"numbr" is not a template variable/);
    expect(templateProblem('{{#if attributes.costCentre}}{{attributes.costCentre}}{{/if}}{{#each services}}{{this}}{{/each}}')).toBeNull();
  });

  it('compares fields whatever their order', () => {
    expect(fieldsKey({ a: '1', b: null })).toBe(fieldsKey({ b: null, a: '1' }));
    expect(fieldsKey({ a: '1' })).not.toBe(fieldsKey({ a: '2' }));
  });

  it('lists the same SCIM fields as the SCIM plugin maps', () => {
    expect([...SCIM_FIELDS].sort()).toEqual([...SCIM_PLUGIN_FIELDS].sort());
  });
});

describe('who a target holds', () => {
  const group = target({ group: { attribute: 'department', op: 'equals', value: 'Engineering' } });

  it('holds provisioned users of its group, lets go of leavers and of users with nothing, leaves blocked ones be', () => {
    expect(desiredAction(group, ada)).toBe('provision');
    expect(desiredAction(group, { ...ada, attributes: { ...ada.attributes, department: 'Sales' } })).toBe('deprovision');
    expect(desiredAction(target({}), { ...ada, attributes: { ...ada.attributes, department: 'Sales' } })).toBe('provision');
    for (const status of ['deleted', 'unmatched', 'unplaced', 'imported'] as const) expect(desiredAction(group, { ...ada, status })).toBe('deprovision');
    for (const status of ['blocked', 'failed', 'moved'] as const) expect(desiredAction(group, { ...ada, status })).toBe('none');
  });

  it('names the event: the first push provisions, a new site is a move, anything else a change', () => {
    expect(targetEvent('provision', { site: null, held: false }, 'chicago')).toBe('provisioned');
    expect(targetEvent('provision', { site: 'chicago', held: true }, 'dallas')).toBe('moved');
    expect(targetEvent('provision', { site: 'chicago', held: true }, 'chicago')).toBe('changed');
    expect(targetEvent('deprovision', { site: 'chicago', held: true }, null)).toBe('deprovisioned');
  });
});

describe('the order of pushes', () => {
  const targets = [
    target({ name: 'a', mode: 'automatic' }),
    target({ name: 'b', mode: 'manual' }),
    target({ name: 'c', mode: 'enrollment' }),
    target({ name: 'd', mode: 'queue', retryInterval: '0s', maxRetries: 0 }),
    target({ name: 'e', mode: 'disabled' }),
    target({ name: 'f', mode: 'queue-on-error' }),
  ];
  const interval = () => 900_000;

  it('runs in the configured order to provision, reversed to deprovision; manual and disabled are not in the pipeline', () => {
    expect(planPushes(targets, 'provision', interval).map((p) => p.target)).toEqual(['a', 'c', 'd', 'f']);
    expect(planPushes(targets, 'deprovision', interval).map((p) => p.target)).toEqual(['f', 'd', 'c', 'a']);
  });

  it("carries each target's retry policy", () => {
    expect(planPushes(targets, 'provision', (t) => (t.name === 'd' ? 0 : 900_000)).find((p) => p.target === 'd')).toMatchObject({ retryIntervalMs: 0, maxRetries: 0 });
  });
});

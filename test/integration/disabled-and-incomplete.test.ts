import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clearEntraTokenCache } from '../../src/adapters/sources/entra.js';
import type { PreviewReport } from '../../src/client/preview.js';
import { startFakeGraph, type FakeGraph, type GraphUser } from '../support/fake-graph.js';
import { oneSiteCustomer, PipelineHarness } from '../support/pipeline.js';

/*
 * Disabled accounts and incomplete reads through the real sync (Temporal, PostgreSQL, SMTP) and
 * preview: a disabled account is neither imported nor welcomed, only counted; a read that could
 * not identify every record says so, and preview then names nobody as gone.
 */

let h: PipelineHarness;
let graph: FakeGraph;
let version: number;

/** 9 of 25 disabled, as in the run that found it. */
const DISABLED = new Set([2, 3, 5, 8, 11, 13, 17, 21, 24]);
const graphUser = (i: number): GraphUser => ({
  id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  displayName: `Cloud ${i}`,
  givenName: 'Cloud',
  surname: `${i}`,
  userPrincipalName: `cloud${i}@tenant.example`,
  mail: `cloud${i}@tenant.example`,
  accountEnabled: !DISABLED.has(i),
});

const HR_HEADER = 'employee_id,login,mail,given_name,status';
const hrRow = (i: number, status = 'active') => `E${i},user${i},user${i}@hr.example,Person${i},${status}`;

function customer(name: string, source: Record<string, unknown>, range: string) {
  const base = oneSiteCustomer(name, { csvPath: 'unused.csv', smtpPort: h.smtp.port, range: { from: `+1312555${range}00`, to: `+1312555${range}99` } });
  return { ...base, sources: [source], sites: base.sites.map((s) => ({ ...s, moveCriteria: { csv: 'everyone', microsoft: 'everyone' } })) };
}

function entraSource(extra: Record<string, unknown> = {}) {
  return {
    name: 'tenant',
    type: 'entra',
    userType: 'microsoft',
    tenantId: graph.tenantId,
    clientId: graph.clientId,
    clientSecretEnv: 'TEST_DISABLED_GRAPH_SECRET',
    authorityUrl: graph.url,
    graphUrl: graph.url,
    caFile: graph.caFile,
    ...extra,
  };
}

function hrSource(extra: Record<string, unknown> = {}) {
  return {
    name: 'hr',
    type: 'csv',
    userType: 'csv',
    path: `${h.dir}/hr.csv`,
    externalId: 'employee_id',
    attributeMap: { employee_id: 'employeeId', login: 'username', mail: 'email', given_name: 'firstName' },
    disabledWhen: { attribute: 'attributes.status', op: 'equals', value: 'inactive' },
    ...extra,
  };
}

beforeAll(async () => {
  h = await PipelineHarness.create();
  graph = await startFakeGraph({ users: Array.from({ length: 25 }, (_, i) => graphUser(i + 1)), skus: [] });
  process.env.TEST_DISABLED_GRAPH_SECRET = graph.clientSecret;
  await h.startWorker();
  version = await h.apply({
    version: 1,
    customers: [
      customer('cloud', entraSource(), '01'),
      customer('cloudall', entraSource({ includeDisabled: true }), '02'),
      customer('hr', hrSource(), '03'),
    ],
  });
}, 120_000);

afterAll(async () => {
  await h?.close();
  clearEntraTokenCache();
  await graph?.stop();
});

async function externalIds(customerName: string): Promise<string[]> {
  const rows = await h.db
    .selectFrom('users')
    .innerJoin('customers', 'customers.id', 'users.customer_id')
    .select('users.external_id')
    .where('customers.name', '=', customerName)
    .orderBy('users.external_id')
    .execute();
  return rows.map((r) => r.external_id);
}

describe('disabled accounts', () => {
  it('an Entra sync skips users with accountEnabled false: not imported, no pipeline, no welcome; counted', async () => {
    const report = await h.sync('cloud', 'tenant', version);
    expect(report.counts).toMatchObject({ seen: 25, imported: 16, provisioned: 16, emailed: 16, disabled: 9, invalid: 0 });
    expect(report.counts.unidentified).toBe(0);
    const enabled = Array.from({ length: 25 }, (_, i) => i + 1).filter((i) => !DISABLED.has(i));
    expect(await externalIds('cloud')).toEqual(enabled.map((i) => graphUser(i).id));
    for (const i of DISABLED) expect(h.smtp.to(`cloud${i}@tenant.example`)).toHaveLength(0);
  });

  it('includeDisabled: true imports them too', async () => {
    const report = await h.sync('cloudall', 'tenant', version);
    expect(report.counts).toMatchObject({ seen: 25, imported: 25 });
    expect(report.counts.disabled).toBe(0);
    expect(await externalIds('cloudall')).toHaveLength(25);
  });
});

describe('a CSV export with inactive rows and an unterminated quote', () => {
  it('skips the inactive rows, reads past the bad line, and says the read was incomplete', async () => {
    h.writeFile(
      'hr.csv',
      [HR_HEADER, hrRow(1), hrRow(2, 'inactive'), hrRow(3), 'E4,"user4,user4@hr.example,Person4,active', hrRow(5), hrRow(6, 'Inactive'), hrRow(7)].join('\n') + '\n',
    );
    const { code, out } = await h.cli('sync', 'hr', '--customer', 'hr', '--mode', 'add', '--wait');
    expect(code).toBe(0);
    expect(out).toMatch(/imported 4, .*disabled 2, invalid 1, unidentified 1$/m);
    expect(out).toMatch(/The read was incomplete: 1 record could not be identified/);
    expect(out).toMatch(/line 5: unterminated quote: a quoted field opens on this line and is never closed; the line was skipped and reading resumed at line 6/);
    expect(await externalIds('hr')).toEqual(['E1', 'E3', 'E5', 'E7']);

    const json = JSON.parse((await h.cli('sync', 'hr', '--customer', 'hr', '--mode', 'add', '--wait', '--json')).out) as { counts: Record<string, number> };
    expect(json.counts).toMatchObject({ seen: 7, imported: 0, disabled: 2, unidentified: 1, invalid: 1 });
  });

  it('preview lists the disabled rows, and names nobody as gone while the read is incomplete', async () => {
    // E7 leaves; E3 becomes inactive; the bad line is still there.
    h.writeFile('hr.csv', [HR_HEADER, hrRow(1), hrRow(2, 'inactive'), hrRow(3, 'inactive'), 'E4,"user4,user4@hr.example,Person4,active', hrRow(5), hrRow(6, 'Inactive')].join('\n') + '\n');
    const incomplete = JSON.parse((await h.cli('preview', 'hr', '--customer', 'hr', '--json')).out) as PreviewReport;
    expect(incomplete.disabled).toEqual(['E2', 'E3', 'E6']);
    expect(incomplete.incomplete).toBe(true);
    expect(incomplete.deletions).toEqual([]);
    // seen: every record of the file, usable or not, as the sync below counts them.
    expect(incomplete.counts).toMatchObject({ seen: 6, disabled: 3, unidentified: 1, deletions: 0, unconfirmedDeletions: 1, invalid: 1 });
    const text = (await h.cli('preview', 'hr', '--customer', 'hr')).out;
    expect(text).toMatch(/3 disabled or locked accounts would be skipped \(not imported, not deletions\): E2, E3, E6\./);
    expect(text).toMatch(/The read is incomplete: 1 record could not be identified \(below\), so the 1 user on record it did not see is not listed as deletions/);
    expect(text).toMatch(/skipped line 5: unterminated quote/);

    // A delete sync of the incomplete read is held, and offers no --allow-deletes: it would be held again.
    const held = await h.cli('sync', 'hr', '--customer', 'hr', '--mode', 'delete', '--wait');
    expect(held.code).toBe(3);
    expect(held.out).toMatch(/Nobody was offboarded: the read was incomplete \(1 record could not be identified\), so nobody missing from it is taken for gone; fix the source and sync again$/m);
    expect(held.out).not.toMatch(/--allow-deletes/);
    expect(held.out).toMatch(/^ {2}seen 6, /m);

    // The line fixed: now the read is complete, E7 is gone, and E3 (disabled, still there) is not.
    h.writeFile('hr.csv', [HR_HEADER, hrRow(1), hrRow(2, 'inactive'), hrRow(3, 'inactive'), hrRow(4), hrRow(5), hrRow(6, 'Inactive')].join('\n') + '\n');
    const complete = JSON.parse((await h.cli('preview', 'hr', '--customer', 'hr', '--json')).out) as PreviewReport;
    expect(complete).toMatchObject({ incomplete: false, deletions: ['E7'], disabled: ['E2', 'E3', 'E6'] });
    expect(complete.counts).toMatchObject({ deletions: 1, unconfirmedDeletions: 0, unidentified: 0 });
  });
});

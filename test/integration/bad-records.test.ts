import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startFakeGraph, type FakeGraph, type GraphUser } from '../support/fake-graph.js';
import { PipelineHarness } from '../support/pipeline.js';
import { startSlapd, type SeedEntry, type Slapd } from '../support/slapd.js';

/*
 * Bad records, end to end (test/data/bad-records/README.md): each case is synced for real — a CSV
 * file, entries in slapd, users in the Graph stand-in — and every bad record must be reported with
 * a message naming it and skipped, the good ones imported, nothing of a bad record written, and
 * the sync must succeed.
 */

const DIR = join(import.meta.dirname, '../data/bad-records');

interface Case {
  about: string;
  source: 'csv' | 'ldap' | 'entra';
  csv?: string;
  entries?: Record<string, string | string[]>[];
  users?: GraphUser[];
  /** Settings of the source over the case's defaults (an attribute map that reads one more attribute). */
  settings?: Record<string, unknown>;
  imported: string[];
  stored?: Record<string, Record<string, string>>;
  problems: { at: string; message: string }[];
}

const names = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();
const cases = new Map(names.map((file) => [file.replace(/\.yaml$/, ''), parse(readFileSync(join(DIR, file), 'utf8')) as Case]));

/** The placeholders of the README, expanded in every string of a value. */
function expand<T>(value: T): T {
  if (typeof value === 'string') {
    return value
      .replaceAll('<<NUL>>', '\u0000')
      .replaceAll('<<LONE_SURROGATE>>', '\ud800')
      .replaceAll('<<1MB>>', 'x'.repeat(1_000_000))
      .replaceAll('<<5K>>', 'y'.repeat(5_000))
      .replaceAll('<<BOM>>', '\ufeff') as T;
  }
  if (Array.isArray(value)) return value.map(expand) as T;
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expand(v)])) as T;
  return value;
}

/** A CSV's bytes: its text as UTF-8, with <<INVALID_UTF8>> as bytes that are not. */
function csvBytes(text: string): Buffer {
  const parts = expand(text).split('<<INVALID_UTF8>>');
  return Buffer.concat(parts.flatMap((part, i) => (i === 0 ? [Buffer.from(part)] : [Buffer.from([0xc3, 0x28]), Buffer.from(part)])));
}

const customerName = (name: string) => `bad${[...cases.keys()].indexOf(name)}`;

let h: PipelineHarness;
let slapd: Slapd;
const graphs = new Map<string, FakeGraph>();
let version: number;

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
  // One slapd: each LDAP case in an organizational unit of its own.
  const seed: SeedEntry[] = [];
  for (const [name, c] of cases) {
    if (c.source !== 'ldap') continue;
    seed.push({ dn: `ou=${name},dc=flowthru,dc=test`, attributes: { objectClass: ['top', 'organizationalUnit'], ou: name } });
    for (const entry of expand(c.entries ?? [])) {
      seed.push({ dn: `uid=${entry.uid},ou=${name},dc=flowthru,dc=test`, attributes: { objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'], ...entry } });
    }
  }
  slapd = await startSlapd({ entries: seed });
  process.env.BAD_RECORDS_LDAP_PASSWORD = slapd.password;

  const customers = [];
  for (const [name, c] of cases) {
    let source: Record<string, unknown>;
    if (c.source === 'csv') {
      const path = join(h.dir, `${name}.csv`);
      writeFileSync(path, csvBytes(c.csv ?? ''));
      source = { type: 'csv', userType: 'csv', path, externalId: 'id', attributeMap: { id: 'employeeId', login: 'username', mail: 'email', first: 'firstName', last: 'lastName', dept: 'department' } };
    } else if (c.source === 'ldap') {
      source = { type: 'ldap', userType: 'ldap', url: slapd.url, bindDn: slapd.bindDn, passwordEnv: 'BAD_RECORDS_LDAP_PASSWORD', baseDn: `ou=${name},dc=flowthru,dc=test` };
    } else {
      const graph = await startFakeGraph({ users: expand(c.users ?? []) });
      graphs.set(name, graph);
      const secretEnv = `BAD_RECORDS_GRAPH_${customerName(name).toUpperCase()}`;
      process.env[secretEnv] = graph.clientSecret;
      source = { type: 'entra', userType: 'microsoft', tenantId: graph.tenantId, clientId: graph.clientId, clientSecretEnv: secretEnv, authorityUrl: graph.url, graphUrl: graph.url, caFile: graph.caFile };
    }
    // Import only: the case is about reading records, and nothing else may hide a problem.
    customers.push({ name: customerName(name), settings: { flowThrough: { enabled: false } }, sources: [{ name: 'src', ...source, ...c.settings }] });
  }
  version = await h.apply({ version: 1, customers });
}, 120_000);

afterAll(async () => {
  for (const graph of graphs.values()) await graph.stop();
  await slapd?.close();
  await h?.close();
});

describe('bad records, end to end', () => {
  it('has cases of every kind of source', () => {
    expect(new Set([...cases.values()].map((c) => c.source))).toEqual(new Set(['csv', 'ldap', 'entra']));
  });

  it.each([...cases.keys()])('%s', async (name) => {
    const c = cases.get(name)!;
    const customer = customerName(name);
    const report = await h.sync(customer, 'src', version);
    // Every expected problem, naming its record, and no other.
    for (const expected of c.problems) {
      expect(report.problems, `${name}: ${expected.at}: ${expected.message}`).toContainEqual({ at: expect.stringContaining(expected.at), message: expect.stringContaining(expected.message) });
    }
    expect(report.problems, `${name}: no other problem`).toHaveLength(c.problems.length);
    expect(report.counts.invalid).toBe(c.problems.length);

    // The good records, and only they, are on record: nothing of a bad one was written.
    const users = await h.db
      .selectFrom('users')
      .innerJoin('customers', 'customers.id', 'users.customer_id')
      .select(['users.username', 'users.attributes', 'users.external_id'])
      .where('customers.name', '=', customer)
      .execute();
    expect(users.map((u) => u.username).sort()).toEqual([...c.imported].sort());
    for (const [username, attributes] of Object.entries(expand(c.stored ?? {}))) {
      expect(users.find((u) => u.username === username)?.attributes, `${name}: ${username}`).toMatchObject(attributes);
    }
    expect(report.counts.imported).toBe(c.imported.length);
  });
});

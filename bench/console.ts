/*
 * flowthru console benchmark: the pages an operator opens most, with N users (default 100,000) in
 * the database, each with the steps a pipeline logs (create, move and profile with their
 * explanations, number, provision): server time per request, from the console's Server-Timing
 * header, over repeated requests (median and 95th percentile), beside the time the client saw.
 *
 *   npm run bench:console                 # 100,000 users
 *   npm run bench:console -- 20000        # fewer
 *
 * Its own database (created and dropped), no Temporal: the pages measured read PostgreSQL only.
 * Then `flowthru preview hr --config` over every user (from dist/: run npm run build first), with
 * its time and peak memory.
 * A measurement, not a test: it prints a report and asserts nothing.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { sql } from 'kysely';
import { loadConfigFile } from '../src/adapters/config-file.js';
import { applyConfig } from '../src/adapters/db/config-store.js';
import { createDatabase } from '../src/adapters/db/connection.js';
import { migrateToLatest } from '../src/adapters/db/migrate.js';
import { startConsole } from '../src/console/server.js';
import { readSettings } from '../src/settings.js';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { requests: { type: 'string', default: '30' } } });
const users = Number(positionals[0] ?? 100_000);
const requests = Number(values.requests);

const base = readSettings();
const dbName = `flowthru_bench_console_${randomBytes(3).toString('hex')}`;
const adminUrl = new URL(base.databaseUrl);
adminUrl.pathname = '/postgres';
const admin = async (statement: string) => {
  const client = new pg.Client({ connectionString: adminUrl.toString() });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
};

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

async function main(): Promise<void> {
  await admin(`create database "${dbName}"`);
  const url = new URL(base.databaseUrl);
  url.pathname = `/${dbName}`;
  const db = createDatabase(url.toString(), { max: 8 });
  try {
    await migrateToLatest(db);
    const loaded = await loadConfigFile(resolve('examples/acme.yaml'));
    if (!loaded.ok) throw new Error('examples/acme.yaml is invalid');
    await applyConfig(db, loaded.config, { sourceFile: 'examples/acme.yaml', appliedBy: 'bench' });

    const started = Date.now();
    // Users as a sync leaves them: a third at each site and a third unplaced; some blocked or failed.
    await sql`
      insert into users (customer_id, source_id, external_id, user_type, username, email, attributes, source_hash, site_id, role, profile_id, status, status_reason)
      select c.id, src.id, 'E' || g, src.user_type, 'user.' || g, 'user.' || g || '@acme.example',
        jsonb_build_object('city', (array['Chicago', 'Dallas', 'Boston'])[g % 3 + 1], 'department', (array['Engineering', 'Sales'])[g % 2 + 1], 'firstName', 'User', 'lastName', 'Number ' || g),
        md5(g::text),
        case g % 3 when 0 then chicago.id when 1 then dallas.id end,
        case when g % 3 < 2 then 'engineer' end,
        case when g % 3 < 2 then p.id end,
        case when g % 3 = 2 then 'unplaced' when g % 97 = 0 then 'blocked' when g % 89 = 0 then 'failed' else 'provisioned' end,
        case when g % 3 = 2 then 'no site''s microsoft move criteria match' when g % 97 = 0 then 'no available number in the site pool: add numbers, then retry' when g % 89 = 0 then 'target phones: 500 Internal Server Error' end
      from generate_series(1, ${users}) g
      cross join customers c
      join sync_sources src on src.customer_id = c.id and src.name = 'hr'
      join sites chicago on chicago.customer_id = c.id and chicago.name = 'chicago'
      join sites dallas on dallas.customer_id = c.id and dallas.name = 'dallas'
      join user_profiles p on p.customer_id = c.id and p.name = 'engineering'
      where c.name = 'acme'`.execute(db);
    const why = {
      site: 'chicago',
      considered: [{ site: 'chicago', criteria: 'city-chicago', explanation: { held: true, condition: 'city equals "Chicago"', seen: 'Chicago' } }],
    };
    const ftp = {
      rule: { criteria: { name: 'engineering' }, profile: 'engineering', role: 'engineer' },
      index: 0,
      considered: [
        {
          criteria: 'engineering',
          profile: 'engineering',
          explanation: {
            held: true,
            condition: 'all of 2',
            parts: [
              { held: true, condition: 'department equals "Engineering"', seen: 'Engineering' },
              { held: true, condition: 'not (title contains "intern")', parts: [{ held: false, condition: 'title contains "intern"', seen: 'Engineer' }] },
            ],
          },
        },
      ],
    };
    // Five steps per user, as a pipeline logs them.
    await sql`
      insert into transaction_log (customer_id, user_id, kind, action, subject, status, ended_at, details, workflow_id, run_id, idempotency_key)
      select u.customer_id, u.id, 'step', s.action, s.subject, 'succeeded', now(),
        case s.action when 'move' then jsonb_build_object('why', ${JSON.stringify(why)}::jsonb) when 'profile' then jsonb_build_object('why', ${JSON.stringify(ftp)}::jsonb) end,
        'onboard/acme/hr/' || u.external_id, 'run-' || u.id, u.id || '/' || s.action
      from users u
      cross join (values ('create', 'local user created'), ('move', 'moved to chicago'), ('profile', 'profile engineering (rule 1), role engineer'), ('number', 'reserved a number'), ('provision', 'provisioned')) s(action, subject)`.execute(db);
    await sql`analyze`.execute(db);
    const seeded = (Date.now() - started) / 1000;
    const logRows = await sql<{ n: string }>`select count(*) as n from transaction_log`.execute(db);

    const web = await startConsole({ settings: { ...base, databaseUrl: url.toString() }, host: '127.0.0.1', port: 0, db });
    const some = await db.selectFrom('users').select('id').where('external_id', '=', `E${Math.floor(users / 2)}`).executeTakeFirstOrThrow();
    const pages: [string, string][] = [
      ['overview', '/?customer=acme'],
      ['users, first page', '/users'],
      ['users, status blocked', '/users?status=blocked'],
      ['users, site + profile + status', '/users?customer=acme&site=chicago&profile=engineering&status=provisioned'],
      ['users, text search', `/users?q=user.${Math.floor(users / 3)}`],
      ['users, sorted by site, descending', '/users?sort=site&desc=1'],
      ['users, page 1,000', '/users?page=1000'],
      ['user page', `/users/${some.id}`],
      ['numbers', '/numbers?customer=acme&site=chicago'],
      ['syncs', '/syncs'],
    ];
    console.log(`flowthru console benchmark: ${users.toLocaleString('en-US')} users, ${Number(logRows.rows[0]!.n).toLocaleString('en-US')} transaction log entries (seeded in ${seeded.toFixed(1)} s), ${requests} requests per page`);
    console.log(`${'page'.padEnd(36)} ${'server median'.padStart(14)} ${'server p95'.padStart(11)} ${'client median'.padStart(14)}`);
    for (const [name, path] of pages) {
      const server: number[] = [];
      const client: number[] = [];
      for (let i = 0; i < requests + 2; i++) {
        const t0 = performance.now();
        const response = await fetch(`${web.url}${path}`);
        await response.text();
        const t1 = performance.now();
        if (response.status !== 200) throw new Error(`${path}: ${response.status}`);
        if (i < 2) continue; // warm-up
        server.push(Number(/dur=([\d.]+)/.exec(response.headers.get('server-timing') ?? '')?.[1]));
        client.push(t1 - t0);
      }
      const ms = (v: number) => `${v.toFixed(1)} ms`;
      console.log(`${name.padEnd(36)} ${ms(percentile(server, 50)).padStart(14)} ${ms(percentile(server, 95)).padStart(11)} ${ms(percentile(client, 50)).padStart(14)}`);
    }
    await web.close();

    // The impact preview over every user: its own process (the CLI, from dist/: npm run build), its peak memory.
    const candidate = join(mkdtempSync(join(tmpdir(), 'flowthru-bench-')), 'candidate.yaml');
    const example = readFileSync(resolve('examples/acme.yaml'), 'utf8')
      .replace('when: { attribute: city, op: equals, value: Dallas }', 'when: { attribute: city, op: in, values: [Dallas, Boston] }')
      .replace('model: Cisco 8865', 'model: Cisco 9871')
      .replaceAll('path: data/', `path: ${resolve('examples/data')}/`)
      .replaceAll('template: templates/', `template: ${resolve('examples/templates')}/`);
    writeFileSync(candidate, example);
    const run = spawnSync('/usr/bin/time', ['-f', '%M %e', process.execPath, 'bin/flowthru.js', 'preview', 'hr', '--config', candidate, '--json'], {
      env: { ...process.env, DATABASE_URL: url.toString() },
      encoding: 'utf8',
      maxBuffer: 1024 * 1024 * 1024,
    });
    const [kb, seconds] = (run.stderr.trim().split('\n').at(-1) ?? '').split(' ').map(Number);
    if (run.status !== 0 || !kb) throw new Error(`preview --config failed: ${run.stderr}`);
    const listed = JSON.parse(run.stdout) as { users: unknown[]; counts: { evaluated: number; changed: number } };
    console.log(
      `impact preview (preview hr --config, --json): ${listed.counts.evaluated.toLocaleString('en-US')} users evaluated, ${listed.counts.changed.toLocaleString('en-US')} listed, ` +
        `${seconds!.toFixed(1)} s, peak RSS ${(kb / 1024).toFixed(0)} MiB`,
    );
  } finally {
    await db.destroy();
    await admin(`drop database if exists "${dbName}" with (force)`);
  }
}

await main();

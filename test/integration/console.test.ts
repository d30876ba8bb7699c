import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/adapters/config-file.js';
import { applyConfig } from '../../src/adapters/db/config-store.js';
import { reconcileSchedules } from '../../src/client/schedules.js';
import { ConsoleRefused, startConsole, type RunningConsole } from '../../src/console/server.js';
import { acmeCsv, PipelineHarness, type Customer } from '../support/pipeline.js';

/*
 * The web console in a real browser (Debian's Chromium through playwright-core) against a real
 * worker, Temporal and PostgreSQL: what it shows, its one confirmed action end to end, and its
 * access rules. Screenshots of each page go to test-artifacts/.
 */

const ARTIFACTS = join(process.cwd(), 'test-artifacts');

let h: PipelineHarness;
let browser: Browser;
let web: RunningConsole;
const logLines: string[] = [];

function chromiumPath(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('Chromium is not installed: ./dev.sh test installs it (apt-get install chromium)');
  }
}

/** Two sites taking engineers by city, each with `size` numbers: more engineers than numbers are blocked. */
function raceCustomer(size: number): Customer {
  const range = (base: number) => ({ from: String(base), to: String(base + size - 1) });
  return {
    name: 'race',
    settings: { flowThrough: { enabled: true, addSync: true, criteria: 'ftp' } },
    criteria: [
      { name: 'in-hq', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'HQ' } },
      { name: 'engineers', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Engineering' } },
    ],
    profiles: [{ name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }] }],
    ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'engineers', profile: 'line' }] }],
    sources: [{ name: 'hr', type: 'csv', userType: 'csv', path: join(h.dir, 'race.csv'), externalId: 'employee_id', attributeMap: { employee_id: 'employeeId', login: 'username', department: 'department', city: 'city' } }],
    sites: [{ name: 'hq', moveCriteria: { csv: 'in-hq' }, numberRanges: [range(5000)] }],
  };
}

const configuration = (raceNumbers: number) => ({ version: 1, customers: [h.acmeCustomer('acme'), raceCustomer(raceNumbers)] });
const cities = ['Chicago', 'Dallas', 'Boston'];
/** 55 Acme people: more than a page of users (50). */
const acmePeople = Array.from({ length: 55 }, (_, i) => ({
  employee_id: `A${String(i + 1).padStart(3, '0')}`,
  login: `person${i + 1}`,
  mail: `person${i + 1}@acme.example`,
  given_name: 'Pat',
  surname: `Person${i + 1}`,
  department: i % 2 === 0 ? 'Engineering' : 'Sales',
  city: cities[i % 3]!,
  title: 'Engineer',
}));

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `console-${name}.png`), fullPage: true });
}

const settingsOf = (harness: PipelineHarness) => ({ databaseUrl: harness.t.url, temporalAddress: harness.temporalAddress, temporalNamespace: 'default', taskQueue: harness.taskQueue });

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
  const version = await h.apply(configuration(2));
  h.writeFile('acme.csv', acmeCsv(acmePeople));
  h.writeFile('race.csv', acmeCsv([1, 2, 3].map((i) => ({ employee_id: `H${i}`, login: `hq${i}`, department: 'Engineering', city: 'HQ' }))));
  await h.sync('acme', 'hr', version);
  expect((await h.sync('race', 'hr', version)).counts).toMatchObject({ seen: 3, provisioned: 2, blocked: 1 });
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  web = await startConsole({ settings: settingsOf(h), host: '127.0.0.1', port: 0, logger: pino({ level: 'info' }, sink) });
  browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update'] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await web?.close();
  await h?.close();
});

describe('the console in a browser', () => {
  it('overview: the customer’s users per site and status, its pools, syncs and who needs attention', async () => {
    const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(`${web.url}/?customer=acme`);
    const total = await h.db.selectFrom('users').innerJoin('customers', 'customers.id', 'users.customer_id').select((eb) => eb.fn.countAll<string>().as('n')).where('customers.name', '=', 'acme').executeTakeFirstOrThrow();
    expect(await page.getByTestId('total-users').textContent()).toBe(String(total.n));
    const provisioned = await h.db.selectFrom('users').innerJoin('customers', 'customers.id', 'users.customer_id').select((eb) => eb.fn.countAll<string>().as('n')).where('customers.name', '=', 'acme').where('status', '=', 'provisioned').executeTakeFirstOrThrow();
    expect(await page.getByTestId('status-provisioned').textContent()).toBe(String(provisioned.n));
    // The pools as flowthru numbers counts them.
    const used = await h.db.selectFrom('number_inventory').innerJoin('sites', 'sites.id', 'number_inventory.site_id').select((eb) => eb.fn.countAll<string>().as('n')).where('sites.name', '=', 'chicago').where('number_inventory.status', '=', 'used').executeTakeFirstOrThrow();
    expect(await page.getByTestId('pool-chicago').textContent()).toContain(`${used.n} used`);
    // The chart drew (Chart.js from the package, under the console's CSP), and the syncs are listed.
    await expect.poll(() => page.locator('#placement-chart').evaluate((c) => { const canvas = c as unknown as { width: number; toDataURL(): string }; return canvas.width > 0 && canvas.toDataURL().length > 5_000; })).toBe(true);
    expect(await page.getByTestId('syncs').locator('tbody tr').count()).toBe(1);
    expect(await page.getByTestId('syncs').textContent()).toContain('succeeded');
    // The table in the chart's order: sites as configured, customer level last, statuses along the pipeline.
    const rows = await page.getByTestId('placement').locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent!.trim())));
    const chart = JSON.parse((await page.locator('#placement-data').textContent())!) as { sites: (string | null)[] };
    const order = chart.sites.map((site) => site ?? '(customer level)');
    const statuses = ['provisioned', 'provisioning', 'moved', 'imported', 'unplaced', 'unmatched', 'blocked', 'failed', 'deleted'];
    const ranks = rows.map(([site, status]) => [order.indexOf(site!), statuses.indexOf(status!)]);
    expect(ranks.every(([site, status]) => site! >= 0 && status! >= 0), JSON.stringify(rows)).toBe(true);
    expect([...ranks].sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!)).toEqual(ranks);
    await shot(page, 'overview');

    // race: the engineer who lost the race for numbers needs attention, with the reason.
    await page.goto(`${web.url}/?customer=race`);
    const attention = page.getByTestId('attention');
    expect(await attention.locator('tbody tr').count()).toBe(1);
    expect(await attention.textContent()).toContain('no available number in the site hq pool');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('users: filtered on the server, sorted and paged', async () => {
    const page = await browser.newPage();
    await page.goto(`${web.url}/users`);
    expect(await page.getByTestId('user-count').textContent()).toContain('58 users, 1–50 shown');
    expect(await page.getByTestId('page').textContent()).toBe('Page 1 of 2');
    await page.getByRole('link', { name: 'Next →' }).click();
    expect(await page.getByTestId('page').textContent()).toBe('Page 2 of 2');
    expect(await page.getByTestId('users').locator('tbody tr').count()).toBe(8);
    await shot(page, 'users');

    // Filter with the form: customer, status, free text.
    await page.goto(`${web.url}/users`);
    await page.locator('select[name=customer]').selectOption('acme');
    await page.locator('select[name=site]').selectOption('dallas');
    await page.getByRole('button', { name: 'Filter' }).click();
    const dallas = acmePeople.filter((p) => p.city === 'Dallas').length;
    expect(await page.getByTestId('user-count').textContent()).toContain(`${dallas} users`);
    await page.getByLabel('Search').fill('PERSON1');
    await page.getByRole('button', { name: 'Filter' }).click();
    // person1, person10..19 … at dallas: i % 3 === 1, i = index (person number - 1).
    const expected = acmePeople.filter((p) => p.city === 'Dallas' && p.login.startsWith('person1')).map((p) => p.login);
    const names = await page.getByTestId('users').locator('tbody tr td:first-child').allTextContents();
    expect(names.sort()).toEqual(expected.sort());
    // Sorted by name, descending, on the server.
    await page.goto(`${web.url}/users?customer=acme&sort=name&desc=1`);
    const first = await page.getByTestId('users').locator('tbody tr td:first-child').first().textContent();
    expect(first).toBe('person9');
    // A status the list does not know is refused, not ignored (the page would list everyone).
    const bogus = await page.goto(`${web.url}/users?customer=acme&status=bogus`);
    expect(bogus?.status()).toBe(400);
    expect(await page.locator('main').textContent()).toContain('There is no user status "bogus": it is one of imported, unplaced');
    expect((await page.goto(`${web.url}/numbers?status=taken`))?.status()).toBe(400);
    await page.close();
  });

  it('a user page explains the site and profile decisions: each condition, the value seen', async () => {
    const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
    const user = await h.userRow('acme', 'A001'); // person1: Chicago, Engineering
    await page.goto(`${web.url}/users/${user.id}`);
    expect(await page.getByTestId('user-status').textContent()).toBe('provisioned');
    expect(await page.getByTestId('user-site').textContent()).toBe('chicago');
    const timeline = page.getByTestId('timeline');
    const text = (await timeline.textContent())!.replace(/\s+/g, ' ');
    expect(text).toContain('site chicago matched (move criteria city-chicago)');
    expect(text).toContain('site chicago, move criteria city-chicago: matched');
    expect(text).toContain('✓ city equals "Chicago" seen "Chicago"');
    expect(text).toContain('rule 1 matched (criteria engineering): profile engineering');
    expect(text).toContain('✓ department equals "Engineering" seen "Engineering"');
    expect(await page.getByTestId('attributes').textContent()).toContain('person1@acme.example');
    expect(await page.getByRole('link', { name: 'Pipeline in Temporal UI ↗' }).getAttribute('href')).toBe('http://127.0.0.1:8233/namespaces/default/workflows/onboard%2Facme%2Fhr%2FA001');
    await shot(page, 'user');
    await page.goto(`${web.url}/numbers?customer=acme&site=chicago&status=used`);
    expect(await page.getByTestId('numbers').locator('tbody tr').count()).toBeGreaterThan(0);
    await shot(page, 'numbers');
    await page.goto(`${web.url}/syncs`);
    await shot(page, 'syncs');
    await page.close();
  });

  it('retry of a blocked user, once numbers were added, ends provisioned; the log says who did it', async () => {
    await h.apply(configuration(3));
    const blocked = await h.db.selectFrom('users').select(['id', 'username']).where('status', '=', 'blocked').executeTakeFirstOrThrow();
    const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
    await page.goto(`${web.url}/users/${blocked.id}`);
    expect(await page.getByTestId('user-status').textContent()).toBe('blocked');
    await page.getByTestId('retry').click();
    expect(await page.locator('main p').first().textContent()).toContain(`Run the pipeline of ${blocked.username} again`);
    await shot(page, 'confirm');
    await page.getByLabel(/Your name/).fill('Dana Operator');
    await page.getByRole('button', { name: /Confirm/ }).click();
    expect(await page.getByRole('status').textContent()).toBe(`Handed ${blocked.username} to their pipeline.`);
    await expect.poll(async () => (await h.db.selectFrom('users').select('status').where('id', '=', blocked.id).executeTakeFirstOrThrow()).status, { timeout: 30_000, interval: 250 }).toBe('provisioned');
    await page.goto(`${web.url}/users/${blocked.id}`);
    expect(await page.getByTestId('user-status').textContent()).toBe('provisioned');
    expect(await page.getByTestId('timeline').textContent()).toContain(`retry ${blocked.username} (blocked) (by Dana Operator, console 127.0.0.1)`);
    const entry = await h.db.selectFrom('transaction_log').select(['kind', 'action', 'status', 'details']).where('kind', '=', 'operator').where('user_id', '=', blocked.id).executeTakeFirstOrThrow();
    expect(entry).toMatchObject({ kind: 'operator', action: 'retry', status: 'succeeded', details: { actor: { name: 'Dana Operator', via: 'console 127.0.0.1' } } });
    await page.close();
  });

  it('refuses an action sent from another site, and a form without its CSRF token', async () => {
    const user = await h.userRow('acme', 'A002');
    const before = await h.db.selectFrom('transaction_log').select((eb) => eb.fn.countAll<string>().as('n')).where('kind', '=', 'operator').executeTakeFirstOrThrow();
    // A page on another origin that posts to the console as soon as it loads.
    const attacker: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<form id="f" method="post" action="${web.url}/actions/retry-user"><input name="user" value="${user.id}"><input name="operator" value="mallory"></form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    try {
      const page = await browser.newPage();
      const answered = page.waitForResponse((r) => r.url().startsWith(`${web.url}/actions/`));
      await page.goto(`http://127.0.0.1:${(attacker.address() as { port: number }).port}/`);
      const response = await answered;
      expect(response.status()).toBe(403);
      expect(await response.text()).toContain('refused');
      await page.close();
    } finally {
      attacker.close();
    }
    // Same origin, but no token from the console's own form (a script, a forged request).
    const forged = await fetch(`${web.url}/actions/retry-user`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: web.url }, body: `user=${user.id}&operator=mallory` });
    expect(forged.status).toBe(403);
    const after = await h.db.selectFrom('transaction_log').select((eb) => eb.fn.countAll<string>().as('n')).where('kind', '=', 'operator').executeTakeFirstOrThrow();
    expect(after.n).toBe(before.n);
  });

  it('previews the impact of a candidate configuration from a chosen file, and writes nothing', async () => {
    const versions = async () => Number((await h.db.selectFrom('config_versions').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n);
    const before = { versions: await versions(), log: await h.db.selectFrom('transaction_log').select((eb) => eb.fn.max('id').as('id')).executeTakeFirstOrThrow() };
    // The candidate moves hq's engineers to a phone of another model, and adds a rule nobody matches.
    const next = raceCustomer(3);
    next.profiles[0].services[0].model = '9871';
    next.criteria.push({ name: 'legal', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Legal' } });
    next.ftpCriteria[0].rules.push({ criteria: 'legal', profile: 'line' });
    const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
    await page.goto(`${web.url}/preview`);
    await page.locator('select[name=source]').selectOption('race/hr');
    await page.locator('input[type=file]').setInputFiles({ name: 'candidate.yaml', mimeType: 'text/yaml', buffer: Buffer.from(stringify({ version: 1, customers: [next] })) });
    await expect.poll(() => page.locator('#yaml').inputValue()).toContain('name: race');
    await page.getByRole('button', { name: 'Preview the impact' }).click();
    const impact = page.getByTestId('impact');
    expect(await impact.locator('h2').textContent()).toBe('race/hr: 3 of 3 would change');
    expect(await page.getByTestId('impact-users').locator('tbody tr').count()).toBe(3);
    expect(await page.getByTestId('impact-users').textContent()).toContain('~phone');
    expect(await page.getByTestId('rules').textContent()).toMatch(/2\s*legal\s*line\s*0/);
    await shot(page, 'preview');
    // A candidate that is not valid says why, by line.
    await page.locator('#yaml').fill('version: 1\ncustomers: 3\n');
    await page.getByRole('button', { name: 'Preview the impact' }).click();
    expect(await page.getByTestId('preview-problems').textContent()).toContain('candidate');
    await page.close();
    expect({ versions: await versions(), log: await h.db.selectFrom('transaction_log').select((eb) => eb.fn.max('id').as('id')).executeTakeFirstOrThrow() }).toEqual(before);
  });

  it('keeps personal data out of its log: routes, not URLs', () => {
    const log = logLines.join('');
    expect(log).toContain('"route":"/users/:id"');
    expect(log).not.toMatch(/person1|PERSON1|acme\.example|Dana Operator|hq\d/);
  });
});

describe('access', () => {
  it('refuses to listen beyond loopback without FLOWTHRU_CONSOLE_TOKEN', async () => {
    await expect(startConsole({ settings: settingsOf(h), host: '0.0.0.0', port: 0 })).rejects.toThrow(ConsoleRefused);
    await expect(startConsole({ settings: settingsOf(h), host: '0.0.0.0', port: 0 })).rejects.toThrow(/needs FLOWTHRU_CONSOLE_TOKEN/);
  });

  it('with a token, a remote request without it is refused; the token as bearer or signed in opens it', async () => {
    const token = 'test-console-token-0123456789';
    const open = await startConsole({ settings: settingsOf(h), host: '0.0.0.0', port: 0, token });
    try {
      const port = new URL(open.url).port;
      // A remote address where the machine has one (else loopback: the token is asked of everyone).
      const remote = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.1';
      const base = `http://${remote}:${port}`;
      const refused = await fetch(`${base}/users`);
      expect(refused.status).toBe(401);
      expect(await refused.text()).not.toContain('person1');
      expect((await fetch(`${base}/users`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      const bearer = await fetch(`${base}/users?q=person1`, { headers: { authorization: `Bearer ${token}` } });
      expect(bearer.status).toBe(200);
      expect(await bearer.text()).toContain('person1');

      const page = await browser.newPage();
      await page.goto(`${base}/`);
      expect(await page.locator('h1').textContent()).toBe('Sign in');
      await page.getByLabel('Token').fill('not it');
      await page.getByRole('button', { name: 'Sign in' }).click();
      expect(await page.locator('.problem').textContent()).toContain('not the console');
      await page.getByLabel('Token').fill(token);
      await page.getByRole('button', { name: 'Sign in' }).click();
      expect(await page.locator('h1').textContent()).toBe('Overview');
      await page.close();
    } finally {
      await open.close();
    }
  });

  it('without a token answers loopback names only (no DNS rebinding)', async () => {
    // fetch will not send another Host: a plain HTTP request does, as a browser on a rebound name would.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      request(`${web.url}/`, { headers: { host: 'rebound.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      })
        .on('error', reject)
        .end();
    });
    expect(status).toBe(421);
  });

  it('read-only: every page, no action', async () => {
    const readOnly = await startConsole({ settings: settingsOf(h), host: '127.0.0.1', port: 0, readOnly: true });
    try {
      const user = await h.userRow('race', 'H2');
      const page = await browser.newPage();
      await page.goto(`${readOnly.url}/users/${user.id}`);
      expect(await page.getByTestId('user-status').textContent()).toBe('provisioned');
      expect(await page.getByTestId('retry').count()).toBe(0);
      expect(await page.locator('.badge').textContent()).toBe('read-only');
      await page.goto(`${readOnly.url}/actions/retry-user?user=${user.id}`);
      expect(await page.locator('.problem').textContent()).toContain('read-only');
      await page.close();
    } finally {
      await readOnly.close();
    }
  });
});

describe('actions on pools, deletions and schedules', () => {
  /** Confirms the action on the page it is on: name, then the button. */
  async function confirm(page: Page): Promise<string> {
    await page.getByLabel(/Your name/).fill('Sam Operator');
    await page.getByRole('button', { name: /Confirm/ }).click();
    return (await page.getByRole('status').textContent()) ?? '';
  }

  it("retries every blocked user of a pool, once numbers were added", async () => {
    // Two more engineers at hq, whose pool (3 numbers) is full: both blocked.
    h.writeFile('race.csv', acmeCsv([1, 2, 3, 4, 5].map((i) => ({ employee_id: `H${i}`, login: `hq${i}`, department: 'Engineering', city: 'HQ' }))));
    const version = await h.apply(configuration(3));
    expect((await h.sync('race', 'hr', version)).counts).toMatchObject({ blocked: 2 });
    await h.apply(configuration(5));
    const page = await browser.newPage();
    await page.goto(`${web.url}/?customer=race`);
    expect(await page.getByTestId('pool-hq').textContent()).toContain('2 blocked');
    await page.getByTestId('retry-pool-hq').click();
    expect(await page.locator('main p').first().textContent()).toContain("every blocked user whose line comes from the hq pool of customer race");
    expect(await confirm(page)).toBe('Handed 2 blocked users to their pipelines.');
    const statuses = async () => (await h.db.selectFrom('users').select('status').where('external_id', 'in', ['H4', 'H5']).execute()).map((u) => u.status);
    await expect.poll(statuses, { timeout: 30_000, interval: 250 }).toEqual(['provisioned', 'provisioned']);
    const entry = await h.db.selectFrom('transaction_log').select(['subject', 'details']).where('kind', '=', 'operator').where('action', '=', 'retry').orderBy('id', 'desc').executeTakeFirstOrThrow();
    expect(entry.subject).toBe('retry 2 blocked users drawing from the hq pool (by Sam Operator, console 127.0.0.1)');
    await page.close();
  });

  it('lets held deletions through, from the overview', async () => {
    // 10 of acme's 55 people leave the source: over the 10 % threshold, the delete sync is held.
    h.writeFile('acme.csv', acmeCsv(acmePeople.slice(10)));
    const version = await h.apply(configuration(5));
    const held = await h.sync('acme', 'hr', version, { mode: 'delete' });
    expect(held).toMatchObject({ status: 'held', held: { deletions: 10 } });
    const page = await browser.newPage();
    await page.goto(`${web.url}/?customer=acme`);
    expect(await page.locator('.held').textContent()).toContain('10 users gone from the source');
    await page.getByRole('link', { name: 'Let them through…' }).click();
    expect(await page.locator('main p').first().textContent()).toContain('may offboard up to 10 users');
    expect(await confirm(page)).toBe('Started sync/acme/hr.');
    const gone = async () => Number((await h.db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'deleted').where('external_id', 'in', acmePeople.slice(0, 10).map((p) => p.employee_id)).executeTakeFirstOrThrow()).n);
    await expect.poll(gone, { timeout: 30_000, interval: 250 }).toBe(10);
    await page.goto(`${web.url}/?customer=acme`);
    expect(await page.locator('.held').count()).toBe(0);
    await page.close();
  });

  it('pauses, unpauses and triggers a schedule', async () => {
    const document = configuration(5);
    const race = document.customers[1]!;
    race.sources[0].schedule = { every: '24h', modes: ['add'], paused: true };
    const file = h.writeFile('scheduled.yaml', stringify(document));
    const loaded = await loadConfigFile(file);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    await applyConfig(h.db, loaded.config);
    await reconcileSchedules(h.client, loaded.config, h.taskQueue);
    const page = await browser.newPage();
    await page.goto(`${web.url}/syncs?customer=race`);
    const schedules = page.getByTestId('schedules');
    expect(await schedules.textContent()).toContain('paused');
    await schedules.getByRole('link', { name: 'Unpause…' }).click();
    expect(await confirm(page)).toBe('Unpaused flowthru/race/hr.');
    await page.goto(`${web.url}/syncs?customer=race`);
    await schedules.getByRole('link', { name: 'Pause…' }).click();
    await page.getByLabel(/Why/).fill('numbers being ported');
    expect(await confirm(page)).toBe('Paused flowthru/race/hr.');
    const handle = h.client.schedule.getHandle('flowthru/race/hr');
    expect((await handle.describe()).state).toMatchObject({ paused: true, note: 'numbers being ported' });
    await page.goto(`${web.url}/syncs?customer=race`);
    await schedules.getByRole('link', { name: 'Run now…' }).click();
    expect(await confirm(page)).toMatch(/^Triggered flowthru\/race\/hr: started sync\/race\/hr/);
    const actions = await h.db.selectFrom('transaction_log').select('action').where('kind', '=', 'operator').where('action', 'like', 'schedule.%').orderBy('id').execute();
    expect(actions.map((a) => a.action)).toEqual(['schedule.unpause', 'schedule.pause', 'schedule.trigger']);
    await page.close();
  });

  it('shows the page without the schedules when Temporal does not answer, and says so', async () => {
    const away = await startConsole({ settings: { ...settingsOf(h), temporalAddress: '127.0.0.1:1' }, host: '127.0.0.1', port: 0 });
    try {
      const started = Date.now();
      const page = await (await fetch(`${away.url}/syncs?customer=race`)).text();
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(page).toContain('Temporal did not answer, so schedules cannot be shown');
      expect(page).toContain('data-testid="syncs"');
      const action = await (await fetch(`${away.url}/actions/schedule-trigger?customer=race&source=hr`)).text();
      expect(action).toContain('Confirm');
    } finally {
      await away.close();
    }
  });

  it("shows a running sync's live progress, then its report", async () => {
    // An import-only customer with 300 people: long enough a sync to watch.
    const document = configuration(5);
    document.customers.push({
      name: 'bulk',
      settings: { flowThrough: { enabled: false } },
      sources: [{ name: 'hr', type: 'csv', userType: 'csv', path: join(h.dir, 'bulk.csv'), externalId: 'employee_id', attributeMap: { employee_id: 'employeeId', login: 'username', city: 'city' } }],
    });
    // …and one record a sync cannot use (no id), skipped with its line.
    h.writeFile('bulk.csv', acmeCsv([...Array.from({ length: 300 }, (_, i) => ({ employee_id: `K${i}`, login: `bulk${i}`, city: 'Nowhere' })), { login: 'nobody', city: 'Nowhere' }]));
    const version = await h.apply(document);
    const handle = await h.startSync('bulk', 'hr', version, { window: 20 });
    const run = async () => h.db.selectFrom('transaction_log').select(['id', 'status']).where('kind', '=', 'sync').where('workflow_id', '=', handle.workflowId).where('run_id', 'is not', null).orderBy('id', 'desc').executeTakeFirst();
    await expect.poll(async () => (await run())?.status, { timeout: 20_000, interval: 50 }).toBe('started');
    const page = await browser.newPage();
    await page.goto(`${web.url}/syncs/${(await run())!.id}`);
    await expect.poll(() => page.getByTestId('progress').textContent(), { timeout: 10_000, interval: 100 }).toMatch(/\d+ read .* pipelines in flight/);
    await shot(page, 'sync-running');
    await handle.result();
    // When the sync ends the page reloads itself with the report.
    await expect.poll(() => page.getByTestId('report').count(), { timeout: 15_000, interval: 200 }).toBe(1);
    expect(await page.getByTestId('report').textContent()).toMatch(/seen\s*301/);
    expect(await page.getByTestId('problems').textContent()).toContain('line 302no employee_id (the external id)');
    await shot(page, 'sync-report');
    await page.close();
  }, 60_000);
});

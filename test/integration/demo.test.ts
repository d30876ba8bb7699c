import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runDemo } from '../../src/demo/run.js';
import { freePort } from '../../src/demo/ports.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => t?.drop());

describe('the demo', () => {
  it('syncs the Acme example end to end and prints a summary a person can read', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      DATABASE_URL: t.url,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      FLOWTHRU_TASK_QUEUE: `demo-${process.pid}`,
      FLOWTHRU_DEMO_SMTP_PORT: String(await freePort()),
      FLOWTHRU_DEMO_CODEC_PORT: String(await freePort()),
      FLOWTHRU_DEMO_CONSOLE_PORT: String(await freePort()),
      LOG_LEVEL: 'error',
    });
    // No key set: the demo makes one of its own, and keeps it beside its state.
    delete process.env.FLOWTHRU_PAYLOAD_KEYS;
    delete process.env.FLOWTHRU_PAYLOAD_KEY_ID;
    const out: string[] = [];
    let consoleOverview = '';
    const stateDir = mkdtempSync(join(tmpdir(), 'flowthru-demo-'));
    try {
      await runDemo(
        { out: (l) => out.push(l), err: (l) => out.push(l) },
        {
          users: 60,
          exit: true,
          config: resolve('examples/acme.yaml'),
          stateDir,
          onReady: async ({ consoleUrl }) => {
            consoleOverview = await (await fetch(`${consoleUrl}/`)).text();
          },
        },
      );
    } finally {
      process.env = saved;
    }
    const text = out.join('\n');
    expect(text).toMatch(/Done: hr \(csv\): 60 people read, 60 new or changed/);
    // The example's LDAP source reads contractors from a slapd the demo started.
    expect(text).toMatch(/Started OpenLDAP slapd at ldap:\/\/127\.0\.0\.1:\d+ with 15 contractors/);
    expect(text).toMatch(/Done: directory \(ldap\): 15 people read, 15 new or changed/);
    expect(text).toMatch(/chicago\s+engineering\s+provisioned\s+\d+/);
    expect(text).toMatch(/\(customer level\)\s+-\s+unplaced\s+\d+/);
    expect(text).toMatch(/Numbers in use: chicago \d+\/200, customer pool \d+\/50, dallas \d+\/200/);
    expect(text).toMatch(/Welcome emails sent: (\d+) in all, \1 during this run/);
    expect(text).toMatch(/FlowthruCustomer%3D%22acme%22/);
    // Payloads are encrypted with the demo's own key; its codec server decodes them for Temporal UI.
    expect(text).toContain(`Made a payload encryption key for the demo in ${join(stateDir, 'payload-keys.env')}.`);
    expect(readFileSync(join(stateDir, 'payload-keys.env'), 'utf8')).toMatch(/^FLOWTHRU_PAYLOAD_KEYS=demo=[A-Za-z0-9+/]{43}=\nFLOWTHRU_PAYLOAD_KEY_ID=demo\n$/);
    expect(statSync(join(stateDir, 'payload-keys.env')).mode & 0o077).toBe(0);
    expect(text).toMatch(/Codec server at http:\/\/127\.0\.0\.1:\d+: set it as the codec endpoint/);
    // The console ran beside Temporal UI, with the demo's numbers.
    expect(text).toMatch(/flowthru console at http:\/\/127\.0\.0\.1:\d+: customers, users, numbers, syncs/);
    expect(consoleOverview).toMatch(/data-testid="total-users">75</);
  }, 120_000);
});

describe('the bootstrap', () => {
  it('says in one sentence what to install when Go is missing', () => {
    // Every command of PATH but go: a PATH of links, so Go is missing wherever it came from (a
    // Go tree's bin/, or Debian's golang package in /usr/bin). No Temporal CLI to reuse, and the
    // test's own database, so setup could touch nothing of the demo's had it gone further.
    const bin = mkdtempSync(join(tmpdir(), 'flowthru-path-'));
    for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        if (name === 'go' || name === 'gofmt' || existsSync(join(bin, name))) continue;
        symlinkSync(join(dir, name), join(bin, name));
      }
    }
    // --norc: a bash started without a terminal may read ~/.bashrc, which can put Go back on PATH.
    const env = { ...process.env, PATH: bin };
    expect(spawnSync('bash', ['--norc', '-c', 'command -v go'], { env }).status).not.toBe(0);
    const result = spawnSync('bash', ['--norc', 'dev.sh', 'setup'], {
      env: { ...env, DATABASE_URL: t.url, FLOWTHRU_TEMPORAL_BIN: '/nonexistent/temporal', FLOWTHRU_CACHE: mkdtempSync(join(tmpdir(), 'flowthru-cache-')) },
      encoding: 'utf8',
    });
    expect(result.status).toBe(1);
    expect(result.stderr.trim().split('\n').at(-1)).toMatch(/^flowthru setup: Go 1\.22 or newer is needed to build the Temporal CLI v1\.5\.1: install it/);
  }, 120_000);
});

import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { once } from 'node:events';
import { sql } from 'kysely';
import { loadConfigFile } from '../adapters/config-file.js';
import { applyConfig } from '../adapters/db/config-store.js';
import { createDatabase } from '../adapters/db/connection.js';
import { migrateToLatest } from '../adapters/db/migrate.js';
import { SmtpSink } from '../adapters/mail/sink.js';
import { freshPayloadKeyEnv } from '../adapters/temporal/codec.js';
import { DEFAULT_CODEC_PORT, serveCodec } from '../client/commands/codec-server.js';
import { escapeDnValue } from '../adapters/sources/ldap-escape.js';
import type { CliIo } from '../client/cli.js';
import { startSync } from '../client/sync.js';
import { connectClient } from '../client/temporal.js';
import { readSettings } from '../settings.js';
import { syncProgressQuery, type SyncCounts } from '../workflows/messages.js';
import { sampleDirectory, sampleLdapPeople } from './directory.js';
import { startSlapd } from './slapd.js';
import { startTemporalDevServer, temporalReachable, type DevServer } from './temporal-dev-server.js';

export interface DemoOptions {
  readonly users: number;
  /** Stop after the summary instead of waiting for Ctrl-C (for scripts and tests). */
  readonly exit: boolean;
  readonly config: string;
  readonly stateDir: string;
  /** Called once the summary is printed, while everything still runs (tests look at the console then). */
  readonly onReady?: (running: { consoleUrl: string | undefined }) => Promise<void>;
}

async function writeDirectory(path: string, users: number): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  for (const line of sampleDirectory(users)) {
    if (!out.write(`${line}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/**
 * The Acme demo end to end: Temporal (with its Web UI), an SMTP sink, a worker, the example
 * configuration, a generated directory synced through the full pipeline, and a summary.
 */
export async function runDemo(io: CliIo, options: DemoOptions): Promise<void> {
  const settings = readSettings();
  mkdirSync(options.stateDir, { recursive: true });
  const keyFile = usePayloadKey(io, options.stateDir);
  const cleanup: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
  };
  try {
    let temporal: DevServer | undefined;
    let uiUrl = process.env.FLOWTHRU_TEMPORAL_UI ?? 'http://127.0.0.1:8233';
    const reachable = await temporalReachable(settings.temporalAddress);
    const uiPort = Number(process.env.FLOWTHRU_DEMO_UI_PORT ?? 8233);
    if (!reachable) uiUrl = `http://127.0.0.1:${uiPort}`;
    // Payloads are encrypted: the codec server lets Temporal UI show them decoded.
    const codec = await serveCodec({ host: '127.0.0.1', port: Number(process.env.FLOWTHRU_DEMO_CODEC_PORT ?? DEFAULT_CODEC_PORT), origins: uiOrigins(uiUrl) });
    cleanup.push(() => codec.close());
    if (reachable) {
      io.out(`Using the Temporal server at ${settings.temporalAddress}.`);
      io.out(`Codec server at ${codec.url}: set it as the codec endpoint in Temporal UI's settings to see payloads decoded.`);
    } else {
      io.out('Starting the Temporal dev server (history kept in .flowthru/temporal.db)…');
      const port = Number(settings.temporalAddress.split(':').pop());
      temporal = await startTemporalDevServer({ port, uiPort, dbFile: join(options.stateDir, 'temporal.db'), uiCodecEndpoint: codec.url });
      uiUrl = temporal.uiUrl;
      cleanup.push(() => temporal!.stop());
      io.out(`Temporal UI at ${uiUrl} decodes payloads through the codec server at ${codec.url}.`);
    }

    const sink = new SmtpSink();
    const smtpPort = Number(process.env.FLOWTHRU_DEMO_SMTP_PORT ?? 2525);
    await sink.start(smtpPort);
    cleanup.push(() => sink.stop());
    io.out(`SMTP sink listening on 127.0.0.1:${sink.port}; received mail is saved to ${join(options.stateDir, 'mail')}/.`);

    const loaded = await loadConfigFile(options.config);
    if (!loaded.ok) throw new Error(`${options.config} is invalid: ${loaded.problems.map((p) => p.message).join('; ')}`);
    // The example points its customers' mail at the sink's usual port; follow the sink if it moved.
    const config = {
      ...loaded.config,
      customers: loaded.config.customers.map((c) => (c.settings.smtp ? { ...c, settings: { ...c.settings, smtp: { ...c.settings.smtp, port: sink.port } } } : c)),
    };
    let customer = config.customers[0]!;
    const source = customer.sources.find((s) => s.type === 'csv');
    if (!source || source.type !== 'csv') throw new Error(`${options.config} has no CSV source for the demo to fill`);
    await writeDirectory(source.path, options.users);
    io.out(`Generated ${options.users} people in ${source.path}.`);

    // An LDAP source in the example gets a directory of its own: a slapd started for the demo.
    const ldapSource = customer.sources.find((s) => s.type === 'ldap');
    if (ldapSource && ldapSource.type === 'ldap') {
      const contractors = sampleLdapPeople(Math.max(10, Math.round(options.users / 4)));
      const slapd = await startSlapd({
        entries: contractors.map((p) => ({
          dn: `uid=${escapeDnValue(p.uid)},ou=people,dc=flowthru,dc=test`,
          attributes: { objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'], uid: p.uid, ...p.attributes },
        })),
      });
      cleanup.push(() => slapd.close());
      process.env[ldapSource.passwordEnv] = slapd.password;
      const pointed = { ...ldapSource, url: slapd.url, bindDn: slapd.bindDn };
      customer = { ...customer, sources: customer.sources.map((s) => (s === ldapSource ? pointed : s)) };
      config.customers[0] = customer;
      io.out(`Started OpenLDAP slapd at ${slapd.url} with ${contractors.length} contractors under ou=people,dc=flowthru,dc=test.`);
    }

    const db = createDatabase(settings.databaseUrl, { max: 4 });
    cleanup.push(() => db.destroy());
    await migrateToLatest(db);
    const applied = await applyConfig(db, config, { sourceFile: options.config, appliedBy: 'demo' });
    io.out(`Configuration ${options.config} is version ${applied.version}${applied.changed ? '' : ' (unchanged)'}.`);

    // Expected outcomes (a user who cannot get a service) are in the summary and the log, not the console.
    process.env.LOG_LEVEL ??= 'error';
    const { startWorker } = await import('../worker/main.js');
    const worker = await startWorker({ ...settings, temporalAddress: temporal?.address ?? settings.temporalAddress });
    cleanup.push(() => worker.stop());

    const client = await connectClient({ ...settings, temporalAddress: temporal?.address ?? settings.temporalAddress });
    cleanup.push(() => client.connection.close());

    // The web console, beside Temporal UI: loopback only, no token needed there.
    const { startConsole } = await import('../console/server.js');
    const { DEFAULT_CONSOLE_PORT } = await import('../client/commands/console.js');
    const consolePort = Number(process.env.FLOWTHRU_DEMO_CONSOLE_PORT ?? DEFAULT_CONSOLE_PORT);
    const webConsole = await startConsole({
      settings: { ...settings, temporalAddress: temporal?.address ?? settings.temporalAddress },
      host: '127.0.0.1',
      port: consolePort,
      temporalUi: uiUrl,
    }).catch((error: unknown) => {
      io.out(`The console could not start on port ${consolePort} (${error instanceof Error ? error.message : String(error)}); set FLOWTHRU_DEMO_CONSOLE_PORT to another port.`);
      return undefined;
    });
    if (webConsole) {
      cleanup.push(() => webConsole.close());
      io.out(`flowthru console at ${webConsole.url}: customers, users, numbers, syncs (flowthru console runs it on its own).`);
    }
    const reports: { source: string; type: string; counts: SyncCounts; seconds: number }[] = [];
    for (const synced of customer.sources.filter((s) => s.type === 'csv' || s.type === 'ldap')) {
      const started = Date.now();
      const handle = await startSync(client, { customer: customer.name, source: synced.name, mode: 'add', configVersion: applied.version, taskQueue: settings.taskQueue });
      io.out(`Syncing ${customer.name}/${synced.name} (${synced.type}): ${uiUrl}/namespaces/${settings.temporalNamespace}/workflows/${encodeURIComponent(handle.workflowId)}`);
      let polling: Promise<unknown> = Promise.resolve();
      const ticker = setInterval(() => {
        polling = handle
          .query(syncProgressQuery)
          .then((p) => io.out(`  … ${p.counts.seen} read, ${p.counts.provisioned} provisioned, ${p.inFlight} in flight`))
          .catch(() => undefined);
      }, 3_000);
      const report = await handle.result().finally(() => clearInterval(ticker));
      await polling; // a query still under way must not outlive the connection
      reports.push({ source: synced.name, type: synced.type, counts: report.counts, seconds: (Date.now() - started) / 1000 });
    }

    await printSummary(io, db, customer.name, reports, sink, uiUrl, settings.temporalNamespace);
    if (keyFile) io.out(`  The CLI's Temporal commands (sync, retry, target) need the demo's key: set -a; . ${relative(process.cwd(), keyFile)}; set +a`);
    mkdirSync(join(options.stateDir, 'mail'), { recursive: true });
    sink.messages.forEach((m, i) => writeFileSync(join(options.stateDir, 'mail', `${String(i + 1).padStart(4, '0')}.eml`), m.raw));

    await options.onReady?.({ consoleUrl: webConsole?.url });
    if (!options.exit) {
      io.out('\nEverything keeps running so you can look around. Press Ctrl-C to stop.');
      await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
      io.out('Stopping…');
    }
  } finally {
    await stop();
  }
}

async function printSummary(
  io: CliIo,
  db: ReturnType<typeof createDatabase>,
  customer: string,
  reports: readonly { source: string; type: string; counts: SyncCounts; seconds: number }[],
  sink: SmtpSink,
  uiUrl: string,
  namespace: string,
): Promise<void> {
  const placement = await sql<{ site: string | null; profile: string | null; status: string; users: string }>`
    select s.name as site, p.name as profile, u.status, count(*) as users
    from users u join customers c on c.id = u.customer_id
    left join sites s on s.id = u.site_id left join user_profiles p on p.id = u.profile_id
    where c.name = ${customer} group by 1, 2, 3 order by 1 nulls last, 2 nulls last, 3`.execute(db);
  const pools = await sql<{ pool: string; used: string; total: string }>`
    select coalesce(s.name, 'customer pool') as pool, count(*) filter (where n.status in ('used', 'reserved')) as used, count(*) as total
    from number_inventory n join customers c on c.id = n.customer_id left join sites s on s.id = n.site_id
    where c.name = ${customer} group by 1 order by 1`.execute(db);
  const emails = await sql<{ sent: string }>`
    select count(*) filter (where o.status = 'sent') as sent from email_outbox o join customers c on c.id = o.customer_id where c.name = ${customer}`.execute(db);

  io.out('');
  for (const { source, type, counts, seconds } of reports) {
    io.out(`Done: ${source} (${type}): ${counts.seen} people read, ${counts.imported} new or changed, in ${seconds.toFixed(1)} s${counts.invalid ? ` (${counts.invalid} records skipped)` : ''}.`);
  }
  io.out('');
  io.out('  SITE              PROFILE        STATUS        USERS');
  for (const row of placement.rows) {
    io.out(`  ${(row.site ?? '(customer level)').padEnd(18)}${(row.profile ?? '-').padEnd(15)}${row.status.padEnd(14)}${row.users.padStart(5)}`);
  }
  io.out('');
  io.out(`  Numbers in use: ${pools.rows.map((p) => `${p.pool} ${p.used}/${p.total}`).join(', ')}`);
  io.out(`  Welcome emails sent: ${emails.rows[0]?.sent ?? 0} in all, ${sink.messages.length} during this run`);
  io.out('');
  io.out(`  Temporal UI, every run of this customer: ${uiUrl}/namespaces/${namespace}/workflows?query=${encodeURIComponent(`FlowthruCustomer="${customer}"`)}`);
  io.out(`  Blocked users:   ${uiUrl}/namespaces/${namespace}/workflows?query=${encodeURIComponent(`FlowthruStatus="blocked"`)}`);
  io.out('  Look closer:     node bin/flowthru.js users --site chicago');
  io.out('                   node bin/flowthru.js numbers --site dallas');
  io.out('                   node bin/flowthru.js log --limit 20');
}

/** Temporal UI's origin, and its localhost twin, as a browser may reach it either way. */
function uiOrigins(uiUrl: string): string[] {
  const origin = new URL(uiUrl).origin;
  const twin = origin.replace('//127.0.0.1:', '//localhost:');
  return twin === origin ? [origin, origin.replace('//localhost:', '//127.0.0.1:')] : [origin, twin];
}

/**
 * The demo's payload key: the environment's when set, else one the demo made, kept in the state
 * directory beside the Temporal history it encrypts (so a later demo run still decodes it).
 */
function usePayloadKey(io: CliIo, stateDir: string): string | null {
  if (process.env.FLOWTHRU_PAYLOAD_KEYS) return null;
  const file = join(stateDir, 'payload-keys.env');
  if (!existsSync(file)) {
    const fresh = freshPayloadKeyEnv('demo');
    writeFileSync(file, `FLOWTHRU_PAYLOAD_KEYS=${fresh.FLOWTHRU_PAYLOAD_KEYS}\nFLOWTHRU_PAYLOAD_KEY_ID=${fresh.FLOWTHRU_PAYLOAD_KEY_ID}\n`, { mode: 0o600 });
    io.out(`Made a payload encryption key for the demo in ${file}.`);
  }
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) process.env[line.slice(0, at)] = line.slice(at + 1);
  }
  return file;
}

export const DEMO_DEFAULTS = { users: 300, config: resolve('examples/acme.yaml'), stateDir: resolve('.flowthru') };

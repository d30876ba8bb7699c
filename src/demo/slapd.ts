import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './ports.js';
import { makeCertificates } from './certificates.js';

/**
 * A real OpenLDAP slapd for tests: its own directory, configuration (old-style slapd.conf), data
 * (loaded with slapadd, fast for thousands of entries) and free ports on 127.0.0.1.
 */

const SLAPD = '/usr/sbin/slapd';
// src/demo or dist/demo: the repository (or package) root is two levels up.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const run = promisify(execFile);

/** An entry to seed: string values are UTF-8 text, Buffers binary. */
export interface SeedEntry {
  readonly dn: string;
  readonly attributes: Readonly<Record<string, string | Buffer | readonly (string | Buffer)[]>>;
}

export interface SlapdOptions {
  readonly entries: readonly SeedEntry[];
  /** The server's size limit for ordinary searches (the reader may page past it, `limited` may not). */
  readonly sizeLimit?: number;
  /** Also serve ldaps:// and StartTLS, with a certificate from a CA generated for the run. */
  readonly tls?: boolean;
  /** `access to ...` lines placed before the general ones (e.g. hide an attribute of one entry). */
  readonly acl?: readonly string[];
  /** More schema files to include (e.g. /etc/ldap/schema/msuser.schema for Active Directory's attributes). */
  readonly schemas?: readonly string[];
  /** Overlay modules to load and stack on the database (e.g. ppolicy, whose schema is built in from 2.5 on). */
  readonly overlays?: readonly string[];
}

export interface Slapd {
  readonly url: string;
  readonly port: number;
  /** ldaps:// URL when `tls` was asked for. */
  readonly ldapsUrl: string | null;
  /** The CA certificate (PEM) that issued the server's certificate, when `tls` was asked for. */
  readonly caFile: string | null;
  readonly baseDn: string;
  /** A plain entry with read access, subject to the size limit but allowed unlimited paged results. */
  readonly bindDn: string;
  readonly password: string;
  /** A plain entry with read access and no paged-results exemption: the size limit truncates it. */
  readonly limitedBindDn: string;
  readonly limitedPassword: string;
  readonly adminDn: string;
  readonly adminPassword: string;
  readonly dir: string;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s); data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same ports with the same data. */
  start(): Promise<void>;
  /** Applies LDIF changes (changetype: modify / modrdn / add / delete) as the root DN. */
  ldapmodify(ldif: string): Promise<string>;
  /** Stops the server and removes its directory. */
  close(): Promise<void>;
}

/** Installs slapd with scripts/ensure-slapd.sh when it is missing (a fresh machine). */
export function ensureSlapdInstalled(): void {
  if ([SLAPD, '/usr/sbin/slapadd', '/usr/bin/ldapmodify'].every((tool) => existsSync(tool))) return;
  execFileSync(join(ROOT, 'scripts/ensure-slapd.sh'), { stdio: 'inherit' });
}

/** RFC 2849: values that are not SAFE-STRINGs (and all binary ones) are written base64-encoded. */
function isSafeString(value: string): boolean {
  const codes = [...value].map((c) => c.codePointAt(0)!);
  const safe = (code: number) => code > 0 && code < 0x80 && code !== 0x0a && code !== 0x0d;
  const first = codes[0];
  if (first !== undefined && (first === 0x20 || first === 0x3a || first === 0x3c)) return false;
  return codes.every(safe) && !value.endsWith(' ');
}

function ldifLine(name: string, value: string | Buffer): string {
  if (typeof value === 'string' && isSafeString(value)) return `${name}: ${value}`;
  return `${name}:: ${Buffer.from(value).toString('base64')}`;
}

export function toLdif(entries: readonly SeedEntry[]): string {
  return entries
    .map((entry) => {
      const lines = [ldifLine('dn', entry.dn)];
      for (const [name, value] of Object.entries(entry.attributes)) {
        for (const v of Array.isArray(value) ? value : [value]) lines.push(ldifLine(name, v as string | Buffer));
      }
      return `${lines.join('\n')}\n`;
    })
    .join('\n');
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`slapd exited (${child.exitCode ?? child.signalCode}) before listening on ${port}:\n${output()}`);
    }
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`slapd did not listen on ${port} within 15 s:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}


const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startSlapd(options: SlapdOptions): Promise<Slapd> {
  ensureSlapdInstalled();
  const dir = mkdtempSync(join(tmpdir(), 'flowthru-slapd-'));
  const data = join(dir, 'data');
  mkdirSync(data);
  const baseDn = 'dc=flowthru,dc=test';
  const bindDn = `cn=reader,${baseDn}`;
  const limitedBindDn = `cn=limited,${baseDn}`;
  const adminDn = `cn=admin,${baseDn}`;
  const password = 'reader-secret';
  const limitedPassword = 'limited-secret';
  const adminPassword = 'admin-secret';
  const sizeLimit = options.sizeLimit ?? 500;
  const port = await freePort();
  const tlsPort = options.tls ? await freePort() : null;
  const certs = options.tls ? makeCertificates(dir) : null;

  const config = [
    'include /etc/ldap/schema/core.schema',
    'include /etc/ldap/schema/cosine.schema',
    'include /etc/ldap/schema/inetorgperson.schema',
    'include /etc/ldap/schema/nis.schema',
    ...(options.schemas ?? []).map((file) => `include ${file}`),
    `pidfile ${join(dir, 'slapd.pid')}`,
    `argsfile ${join(dir, 'slapd.args')}`,
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    ...(options.overlays ?? []).map((overlay) => `moduleload ${overlay}`),
    `sizelimit ${sizeLimit}`,
    ...(certs
      ? [`TLSCACertificateFile ${certs.ca}`, `TLSCertificateFile ${certs.cert}`, `TLSCertificateKeyFile ${certs.key}`]
      : []),
    'database mdb',
    'maxsize 268435456',
    // As a real directory is set up: what clients search by is indexed (a write-back target finds
    // entries by entryUUID; without an index every such search scans the whole database).
    'index objectClass eq',
    'index entryUUID eq',
    'index uid eq',
    `suffix "${baseDn}"`,
    `rootdn "${adminDn}"`,
    `rootpw ${adminPassword}`,
    `directory ${data}`,
    `sizelimit ${sizeLimit}`,
    // The root DN bypasses limits: the readers are ordinary entries. Only `reader` may page past
    // the size limit (as a sync account would be set up); `limited` gets the defaults, under which
    // OpenLDAP caps even a paged search at the hard size limit.
    `limits dn.exact="${bindDn}" size.soft=${sizeLimit} size.hard=${sizeLimit} size.prtotal=unlimited`,
    'access to attrs=userPassword',
    '  by anonymous auth',
    `  by dn.exact="${bindDn}" read`,
    '  by * none',
    ...(options.acl ?? []),
    'access to *',
    `  by dn.exact="${bindDn}" read`,
    `  by dn.exact="${limitedBindDn}" read`,
    '  by * none',
    ...(options.overlays ?? []).map((overlay) => `overlay ${overlay}`),
    '',
  ].join('\n');
  const configFile = join(dir, 'slapd.conf');
  writeFileSync(configFile, config);

  const base: SeedEntry[] = [
    { dn: baseDn, attributes: { objectClass: ['dcObject', 'organization'], dc: 'flowthru', o: 'flowthru' } },
    { dn: `ou=people,${baseDn}`, attributes: { objectClass: 'organizationalUnit', ou: 'people' } },
    { dn: `ou=staff,${baseDn}`, attributes: { objectClass: 'organizationalUnit', ou: 'staff' } },
    { dn: bindDn, attributes: { objectClass: ['organizationalRole', 'simpleSecurityObject'], cn: 'reader', userPassword: password } },
    {
      dn: limitedBindDn,
      attributes: { objectClass: ['organizationalRole', 'simpleSecurityObject'], cn: 'limited', userPassword: limitedPassword },
    },
  ];
  const seed = join(dir, 'seed.ldif');
  writeFileSync(seed, toLdif([...base, ...options.entries]));
  try {
    await run('/usr/sbin/slapadd', ['-q', '-f', configFile, '-l', seed], { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`slapadd failed: ${e.stderr || e.message}`, { cause: error });
  }

  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = tlsPort ? `ldaps://127.0.0.1:${tlsPort}` : null;
  let child: ChildProcess | null = null;

  async function start(): Promise<void> {
    if (child) return;
    const listen = [`${url}/`, ...(ldapsUrl ? [`${ldapsUrl}/`] : [])].join(' ');
    let output = '';
    // -d 0: stay in the foreground, log nothing (we run it; it is not a daemon here).
    const proc = spawn(SLAPD, ['-f', configFile, '-h', listen, '-d', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    child = proc;
    try {
      await waitForPort(port, proc, () => output);
    } catch (error) {
      proc.kill('SIGKILL');
      child = null;
      throw error;
    }
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc) return;
    child = null;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  async function ldapmodify(ldif: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const proc = spawn('ldapmodify', ['-x', '-H', url, '-D', adminDn, '-w', adminPassword], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
      proc.once('error', reject);
      proc.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`ldapmodify exited ${code}: ${out}`))));
      proc.stdin.end(ldif);
    });
  }

  await start();
  return {
    url,
    port,
    ldapsUrl,
    caFile: certs?.ca ?? null,
    baseDn,
    bindDn,
    password,
    limitedBindDn,
    limitedPassword,
    adminDn,
    adminPassword,
    dir,
    stop,
    start,
    ldapmodify,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

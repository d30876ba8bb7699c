import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/demo/ports.js';

const run = promisify(execFile);

/**
 * A PostgreSQL server of a test's own (initdb + pg_ctl from the installed server binaries, on a
 * free port, trust auth on loopback), so a test can restart or stop it without touching the
 * server every other test file uses. PostgreSQL refuses to run as root: as root, it runs as the
 * `postgres` system user.
 */
export class PrivatePostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly bindir: string,
  ) {}

  static async start(): Promise<PrivatePostgres> {
    const { stdout } = await run('pg_config', ['--bindir']);
    const dir = mkdtempSync(join(tmpdir(), 'flowthru-pg-'));
    if (process.getuid?.() === 0) chownSync(dir, Number((await run('id', ['-u', 'postgres'])).stdout), Number((await run('id', ['-g', 'postgres'])).stdout));
    const server = new PrivatePostgres(dir, await freePort(), stdout.trim());
    await server.exec('initdb', ['-D', server.data, '--auth=trust', '--username=postgres', '--no-sync', '--encoding=UTF8', '--locale=C']);
    await server.ctl('start');
    return server;
  }

  get data(): string {
    return join(this.dir, 'data');
  }

  /** A connection string for a database on this server. */
  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** A fast restart: the server ends every session (57P01), then accepts connections again. */
  async restart(): Promise<void> {
    await this.ctl('restart', ['-m', 'fast']);
  }

  /** Stops the server and keeps its data: `resume` starts it again, on the same port. */
  async pause(): Promise<void> {
    await this.ctl('stop', ['-m', 'fast']);
  }

  async resume(): Promise<void> {
    await this.ctl('start');
  }

  async stop(): Promise<void> {
    await this.ctl('stop', ['-m', 'fast']).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async ctl(action: string, extra: string[] = []): Promise<void> {
    const options = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`;
    await this.exec('pg_ctl', ['-D', this.data, '-l', join(this.dir, 'server.log'), '-w', '-t', '60', '-o', options, ...extra, action]);
  }

  private async exec(program: string, args: string[]): Promise<void> {
    const path = join(this.bindir, program);
    if (process.getuid?.() === 0) await run('runuser', ['-u', 'postgres', '--', path, ...args], { cwd: this.dir });
    else await run(path, args, { cwd: this.dir });
  }
}

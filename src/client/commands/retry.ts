import { Option, type Command } from 'commander';
import type { Client } from '@temporalio/client';
import { loadConfigVersion } from '../../adapters/db/config-store.js';
import { usersInStatus } from '../../adapters/db/queries.js';
import { startUserPipeline } from '../../adapters/temporal/user-pipeline.js';
import type { UserStatus } from '../../domain/user.js';
import { readSettings } from '../../settings.js';
import { table, temporalUiUrl, UserError, withDatabase, type CliIo } from '../cli.js';
import { withClient } from '../temporal.js';
import { findOneUser } from './user.js';

export const RETRYABLE_STATUSES = ['blocked', 'failed'] as const satisfies readonly UserStatus[];

export interface RetryOptions {
  readonly customer?: string | undefined;
  readonly status?: (typeof RETRYABLE_STATUSES)[number] | undefined;
  readonly site?: string | undefined;
  readonly source?: string | undefined;
  readonly json?: boolean | undefined;
}

interface RetryTarget {
  readonly id: string;
  readonly customer: string;
  readonly source: string;
  readonly externalId: string;
  readonly username: string | null;
  readonly site: string | null;
  readonly status: string;
  /** At a site: their retry is an update pass (the line and services brought to their profile); else an add. */
  readonly placed: boolean;
}

/** How many pipelines are handed their retry at once. */
const RETRY_CONCURRENCY = 20;

/** The users a retry names: USER (one, any status but deleted), or every user in `--status`. */
async function chooseTargets(who: string | undefined, opts: RetryOptions): Promise<{ targets: RetryTarget[]; version: number }> {
  return withDatabase(async (db) => {
    const version = (await loadConfigVersion(db))?.version;
    if (version === undefined) throw new UserError('no configuration has been applied yet: run flowthru config apply FILE');
    if (who !== undefined) {
      const user = await findOneUser(db, who, opts.customer);
      if (user.status === 'deleted') throw new UserError(`user ${who} was offboarded; a sync that sees them again restores them`);
      return { targets: [{ ...user, site: null }], version };
    }
    return { targets: await usersInStatus(db, { status: opts.status!, customer: opts.customer, site: opts.site, source: opts.source }), version };
  });
}

/** Hands each user's pipeline a new change (signal-with-start): a blocked pipeline wakes and runs again; a finished one starts anew. */
async function handToPipelines(client: Client, taskQueue: string, targets: readonly RetryTarget[], version: number): Promise<string[]> {
  const workflowIds: string[] = [];
  for (let i = 0; i < targets.length; i += RETRY_CONCURRENCY) {
    const batch = targets.slice(i, i + RETRY_CONCURRENCY);
    workflowIds.push(
      ...(await Promise.all(
        batch.map((user) =>
          startUserPipeline(client, {
            taskQueue,
            customer: user.customer,
            source: user.source,
            externalId: user.externalId,
            userId: user.id,
            // A placed user (blocked or failed at their site) is brought to their profile where they are, as an
            // update does; keep-existing and updateSyncProfile hold, and a first provisioning still welcomes them.
            change: { configVersion: version, mode: user.placed ? 'update' : 'add', retry: true },
          }),
        ),
      )),
    );
  }
  return workflowIds;
}

function describeScope(opts: RetryOptions): string {
  const parts = [opts.site && `at site ${opts.site}`, opts.source && `from source ${opts.source}`, opts.customer && `of customer ${opts.customer}`].filter(Boolean);
  return parts.length > 0 ? ` ${parts.join(' ')}` : '';
}

/** `flowthru retry USER | --status blocked|failed`: runs the pipelines of one user, or of every user in that status, again. */
export async function retryUsers(io: CliIo, who: string | undefined, opts: RetryOptions): Promise<void> {
  if (who === undefined && opts.status === undefined) throw new UserError('say whom to retry: a USER, or --status blocked|failed');
  if (who !== undefined && opts.status !== undefined) throw new UserError('retry takes a USER or --status, not both');
  if (who !== undefined && (opts.site !== undefined || opts.source !== undefined)) throw new UserError('--site and --source choose users with --status; a USER names one already');
  const settings = readSettings();
  const { targets, version } = await chooseTargets(who, opts);
  if (targets.length === 0) {
    if (opts.json) io.out(JSON.stringify({ status: opts.status, configVersion: version, retried: 0, users: [] }));
    else io.out(`No ${opts.status} users${describeScope(opts)}: nothing to retry.`);
    return;
  }
  const workflowIds = await withClient(settings, (client) => handToPipelines(client, settings.taskQueue, targets, version));
  const retried = targets.map((user, i) => ({
    customer: user.customer,
    source: user.source,
    externalId: user.externalId,
    username: user.username,
    site: user.site,
    status: user.status,
    workflowId: workflowIds[i]!,
  }));
  if (opts.json) {
    io.out(JSON.stringify({ status: opts.status ?? null, configVersion: version, retried: retried.length, users: retried }, null, 2));
    return;
  }
  if (who !== undefined) {
    const user = retried[0]!;
    io.out(`Retrying ${user.externalId} (${user.status}): ${temporalUiUrl(settings, user.workflowId)}`);
    return;
  }
  io.out(`Handed ${retried.length} ${opts.status} user${retried.length === 1 ? '' : 's'}${describeScope(opts)} to their pipelines (configuration version ${version}):`);
  table(io, retried, ['customer', 'source', 'externalId', 'username', 'site']);
}

export function registerRetryCommand(program: Command, io: CliIo): void {
  program
    .command('retry')
    .argument('[user]', 'username, external id or email')
    .option('--customer <name>', 'the customer, when the user is ambiguous; with --status, only this customer')
    .addOption(new Option('--status <status>', 'retry every user in this status').choices(RETRYABLE_STATUSES))
    .option('--site <name>', 'with --status: only users at this site')
    .option('--source <name>', 'with --status: only users of this source')
    .option('--json', 'machine-readable output')
    .description("run users' pipelines again: one USER, or every blocked or failed user (once numbers or licences were added)")
    .action((who: string | undefined, opts: RetryOptions) => retryUsers(io, who, opts));
}

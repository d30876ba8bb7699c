import { Option, type Command } from 'commander';
import { readSettings } from '../../settings.js';
import { table, temporalUiUrl, UserError, withDatabase, type CliIo } from '../cli.js';
import { cliActor, retryPipelines, RETRYABLE_STATUSES, type RetryableStatus, type RetrySelection } from '../operations.js';
import { checkScope } from '../scope.js';
import { withClient } from '../temporal.js';

export { RETRYABLE_STATUSES };

export interface RetryOptions {
  readonly customer?: string | undefined;
  readonly status?: RetryableStatus | undefined;
  readonly site?: string | undefined;
  readonly source?: string | undefined;
  readonly pool?: string | undefined;
  readonly json?: boolean | undefined;
}

function describeScope(opts: RetryOptions): string {
  const pool = opts.pool && (opts.pool === 'customer' ? "drawing from the customer's pool" : `drawing from the ${opts.pool} pool`);
  const parts = [opts.site && `at site ${opts.site}`, opts.source && `from source ${opts.source}`, pool, opts.customer && `of customer ${opts.customer}`].filter(Boolean);
  return parts.length > 0 ? ` ${parts.join(' ')}` : '';
}

/** `flowthru retry USER | --status blocked|failed`: runs the pipelines of one user, or of every user in that status, again. */
export async function retryUsers(io: CliIo, who: string | undefined, opts: RetryOptions): Promise<void> {
  if (who === undefined && opts.status === undefined) throw new UserError('say whom to retry: a USER, or --status blocked|failed');
  if (who !== undefined && opts.status !== undefined) throw new UserError('retry takes a USER or --status, not both');
  if (who !== undefined && (opts.site !== undefined || opts.source !== undefined || opts.pool !== undefined)) throw new UserError('--site, --source and --pool choose users with --status; a USER names one already');
  const settings = readSettings();
  const selection: RetrySelection = who !== undefined ? { who, customer: opts.customer } : { status: opts.status!, customer: opts.customer, site: opts.site, source: opts.source, pool: opts.pool };
  const { configVersion: version, users: retried } = await withDatabase(async (db) => {
    // A misspelt scope would read as "nothing to retry".
    if (who === undefined) await checkScope(db, { customer: opts.customer, site: opts.site, source: opts.source, pool: opts.pool });
    return withClient(settings, (client) => retryPipelines(db, client, settings.taskQueue, selection, cliActor()));
  });
  if (retried.length === 0) {
    if (opts.json) io.out(JSON.stringify({ status: opts.status, configVersion: version, retried: 0, users: [] }));
    else io.out(`No ${opts.status} users${describeScope(opts)}: nothing to retry.`);
    return;
  }
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
    .option('--pool <pool>', "with --status: only users whose line comes from this pool: customer, or a site's name")
    .option('--json', 'machine-readable output')
    .description("run users' pipelines again: one USER, or every blocked or failed user (once numbers or licences were added)")
    .action((who: string | undefined, opts: RetryOptions) => retryUsers(io, who, opts));
}

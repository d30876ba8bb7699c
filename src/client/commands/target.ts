import { Option, type Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { loadConfigVersion } from '../../adapters/db/config-store.js';
import type { TargetStateStatus } from '../../adapters/db/schema.js';
import { listTargetJobs, type TargetJobView } from '../../adapters/db/targets.js';
import { handToTargetJob } from '../../adapters/temporal/target-jobs.js';
import { retryIntervalMs } from '../../activities/targets.js';
import type { TargetConfig } from '../../domain/config/schema.js';
import { readSettings } from '../../settings.js';
import { reprovisionSummary, reprovisionWorkflowId, searchAttributes, targetJobWorkflowId } from '../../workflows/config.js';
import { reprovisionProgressQuery, type ReprovisionCounts, type ReprovisionInput, type TargetJobResult } from '../../workflows/messages.js';
import type { reprovisionTarget } from '../../workflows/reprovision.js';
import type { targetJob } from '../../workflows/target-job.js';
import { parseCount, table, temporalUiUrl, UserError, withDatabase, type CliIo } from '../cli.js';
import { withClient } from '../temporal.js';
import { findOneUser } from './user.js';
import { checkScope } from '../scope.js';

/*
 * `flowthru target list|jobs|provision|reprovision|cancel`: the provisioning targets declared in
 * the configuration, what they hold, and the operator's levers on them.
 */

const JOB_STATUSES = ['pending', 'failed', 'cancelled', 'provisioned', 'deprovisioned'] as const satisfies readonly TargetStateStatus[];

interface TargetRef {
  readonly customer: string;
  readonly config: TargetConfig;
}

/** TARGET in the newest configuration: its customer must be named when several customers have one of that name. */
async function resolveTarget(name: string, customer: string | undefined): Promise<TargetRef> {
  return withDatabase(async (db) => {
    const newest = await loadConfigVersion(db);
    if (!newest) throw new UserError('no configuration has been applied yet: run flowthru config apply FILE');
    const found = newest.config.customers
      .filter((c) => customer === undefined || c.name === customer)
      .flatMap((c) => c.targets.filter((t) => t.name === name).map((t) => ({ customer: c.name, config: t })));
    if (found.length === 0) throw new UserError(`no target "${name}"${customer ? ` for customer ${customer}` : ''} in configuration version ${newest.version}`);
    if (found.length > 1) throw new UserError(`several customers have a target "${name}" (${found.map((f) => f.customer).join(', ')}): say which with --customer`);
    return found[0]!;
  });
}

const when = (date: Date | null) => (date ? date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : null);

function printJobs(io: CliIo, jobs: readonly TargetJobView[]): void {
  if (jobs.length === 0) {
    io.out('No target jobs in that state.');
    return;
  }
  table(
    io,
    jobs.map((j) => ({ customer: j.customer, target: j.target, user: j.username ?? j.externalId, status: j.status, event: j.event, attempts: j.attempts, updated: when(j.updatedAt), error: j.error })),
    ['customer', 'target', 'user', 'status', 'event', 'attempts', 'updated', 'error'],
  );
}

async function reprovision(client: Client, taskQueue: string, ref: TargetRef, window: number): Promise<{ workflowId: string; started: boolean }> {
  const workflowId = reprovisionWorkflowId(ref.customer, ref.config.name);
  try {
    await client.workflow.start<typeof reprovisionTarget>('reprovisionTarget', {
      workflowId,
      taskQueue,
      args: [{ customer: ref.customer, target: ref.config.name, window } satisfies ReprovisionInput],
      typedSearchAttributes: [{ key: searchAttributes.customer, value: ref.customer }],
      staticSummary: reprovisionSummary(ref.customer, ref.config.name),
    });
    return { workflowId, started: true };
  } catch (error) {
    // One reprovision of a target at a time: a second request watches the running one.
    if (error instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, started: false };
    throw error;
  }
}

/** `setExit`: the CLI's exit status (a push that failed, a reprovision with failures: 1). */
export function registerTargetCommand(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const target = program.command('target').description('provisioning targets (LDAP write-back, SCIM, webhooks): what they hold, queued jobs, provision and reprovision');

  target
    .command('list')
    .option('--customer <name>', 'only this customer')
    .option('--json', 'machine-readable output')
    .description('the targets of the newest configuration, in order, with how many users each holds, is pushing or failed')
    .action(async (opts: { customer?: string; json?: boolean }) => {
      const rows = await withDatabase(async (db) => {
        const newest = await loadConfigVersion(db);
        if (!newest) throw new UserError('no configuration has been applied yet: run flowthru config apply FILE');
        await checkScope(db, { customer: opts.customer });
        const counts = await db
          .selectFrom('target_state as t')
          .innerJoin('customers as c', 'c.id', 't.customer_id')
          .select(['c.name as customer', 't.target', 't.status', db.fn.countAll<string>().as('n')])
          .groupBy(['c.name', 't.target', 't.status'])
          .execute();
        const count = (customer: string, name: string, status: TargetStateStatus) =>
          Number(counts.find((c) => c.customer === customer && c.target === name && c.status === status)?.n ?? 0);
        return newest.config.customers
          .filter((c) => !opts.customer || c.name === opts.customer)
          .flatMap((c) =>
            c.targets.map((t, i) => ({
              customer: c.name,
              order: i + 1,
              target: t.name,
              kind: t.kind,
              mode: t.mode,
              group: t.group !== undefined,
              provisioned: count(c.name, t.name, 'provisioned'),
              pending: count(c.name, t.name, 'pending'),
              failed: count(c.name, t.name, 'failed'),
            })),
          );
      });
      if (opts.json) io.out(JSON.stringify(rows, null, 2));
      else if (rows.length === 0) io.out('No targets: add targets: to a customer in the configuration and apply it.');
      // A target without a provisioning group applies to everyone (README): say so, not "false".
      else table(io, rows.map((r) => ({ ...r, group: r.group ? 'its group' : 'everyone' })), ['customer', 'order', 'target', 'kind', 'mode', 'group', 'provisioned', 'pending', 'failed']);
    });

  target
    .command('jobs')
    .option('--customer <name>', 'only this customer')
    .option('--target <name>', 'only this target')
    .addOption(new Option('--status <status>', 'only jobs in this state (default: pending and failed)').choices([...JOB_STATUSES, 'all']))
    .option('--json', 'machine-readable output')
    .description('pushes waiting, being retried, failed for good (with the reason) or cancelled, newest first')
    .action(async (opts: { customer?: string; target?: string; status?: TargetStateStatus | 'all'; json?: boolean }) => {
      const statuses: TargetStateStatus[] = opts.status === 'all' ? [] : opts.status ? [opts.status] : ['pending', 'failed'];
      const jobs = await withDatabase((db) => listTargetJobs(db, { customer: opts.customer, target: opts.target, statuses }));
      if (opts.json) io.out(JSON.stringify(jobs, null, 2));
      else printJobs(io, jobs);
    });

  target
    .command('provision')
    .argument('<target>', 'the target')
    .argument('<user>', 'username, email or external id')
    .option('--customer <name>', 'the customer (needed when several have a target or user of that name)')
    .option('--wait', 'wait for the push and print its outcome')
    .option('--json', 'machine-readable output')
    .description("push USER to TARGET now, whatever the target's mode (also how a failed job is retried); the target is called even if nothing changed")
    .action(async (name: string, who: string, opts: { customer?: string; wait?: boolean; json?: boolean }) => {
      const settings = readSettings();
      const ref = await resolveTarget(name, opts.customer);
      const user = await withDatabase((db) => findOneUser(db, who, ref.customer));
      const workflowId = await withClient(settings, (client) =>
        handToTargetJob(
          client,
          settings.taskQueue,
          { customer: ref.customer, target: ref.config.name, userId: user.id },
          { retryIntervalMs: retryIntervalMs(ref.config), maxRetries: ref.config.maxRetries, timeoutMs: ref.config.timeoutMs, force: true },
        ),
      );
      if (!opts.wait) {
        if (opts.json) io.out(JSON.stringify({ workflowId, status: 'queued' }));
        else io.out(`Queued ${who} for target ${ref.config.name}: ${temporalUiUrl(settings, workflowId)}`);
        return;
      }
      const result: TargetJobResult = await withClient(settings, (client) => client.workflow.getHandle<typeof targetJob>(workflowId).result());
      if (opts.json) io.out(JSON.stringify({ workflowId, ...result }));
      else io.out(`Target ${ref.config.name}, ${who}: ${result.status}: ${result.summary}`);
      if (result.status !== 'succeeded') setExit(1);
    });

  target
    .command('reprovision')
    .argument('<target>', 'the target')
    .option('--customer <name>', 'the customer (needed when several have a target of that name)')
    .option('--window <n>', 'pushes in flight at once (1-50)', parseCount('--window'), 10)
    .option('--wait', 'follow its progress until it ends')
    .option('--json', 'machine-readable output (with --wait: the final counts)')
    .description('push every user the target holds or should hold again, in the background (one at a time per target); survives worker restarts')
    .action(async (name: string, opts: { customer?: string; window: number; wait?: boolean; json?: boolean }) => {
      if (!Number.isInteger(opts.window) || opts.window < 1 || opts.window > 50) throw new UserError('--window is a whole number from 1 to 50');
      const settings = readSettings();
      const ref = await resolveTarget(name, opts.customer);
      await withClient(settings, async (client) => {
        const { workflowId, started } = await reprovision(client, settings.taskQueue, ref, opts.window);
        if (!opts.wait) {
          if (opts.json) io.out(JSON.stringify({ workflowId, started }));
          else io.out(`${started ? 'Started' : 'Already running:'} reprovision of ${ref.config.name}: ${temporalUiUrl(settings, workflowId)}`);
          return;
        }
        const handle = client.workflow.getHandle<typeof reprovisionTarget>(workflowId);
        const outcome = handle.result();
        let last = '';
        for (;;) {
          const finished = await Promise.race([outcome.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 2_000))]);
          if (finished) break;
          if (opts.json) continue;
          const progress = await handle.query(reprovisionProgressQuery).catch(() => null);
          if (!progress) continue;
          const line = `  succeeded ${progress.counts.succeeded}, unchanged ${progress.counts.unchanged}, failed ${progress.counts.failed}, in flight ${progress.inFlight}`;
          if (line !== last) io.out(line);
          last = line;
        }
        const counts: ReprovisionCounts = await outcome;
        if (opts.json) io.out(JSON.stringify({ workflowId, ...counts }));
        else io.out(`Reprovisioned ${ref.config.name}: succeeded ${counts.succeeded}, unchanged ${counts.unchanged}, failed ${counts.failed}.`);
        if (counts.failed > 0) setExit(1);
      });
    });

  target
    .command('cancel')
    .argument('<target>', 'the target')
    .argument('<user>', 'username, email or external id')
    .option('--customer <name>', 'the customer (needed when several have a target or user of that name)')
    .description("end USER's queued job for TARGET (waiting or retrying); the target keeps what it has")
    .action(async (name: string, who: string, opts: { customer?: string }) => {
      const settings = readSettings();
      const ref = await resolveTarget(name, opts.customer);
      const user = await withDatabase((db) => findOneUser(db, who, ref.customer));
      const workflowId = targetJobWorkflowId(ref.customer, ref.config.name, user.id);
      await withClient(settings, async (client) => {
        const handle = client.workflow.getHandle<typeof targetJob>(workflowId);
        try {
          const running = (await handle.describe()).status.name === 'RUNNING';
          if (!running) throw new UserError(`${who} has no job for target ${ref.config.name} running`);
          await handle.cancel();
          await handle.result().catch(() => undefined);
        } catch (error) {
          if (error instanceof WorkflowNotFoundError) throw new UserError(`${who} has no job for target ${ref.config.name}`);
          throw error;
        }
      });
      io.out(`Cancelled ${who}'s job for target ${ref.config.name}.`);
    });
}

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import type { Kysely } from 'kysely';
import type { Database } from '../adapters/db/schema.js';
import { ConfigSnapshots } from '../adapters/db/snapshots.js';
import type { Mailer } from '../adapters/mail/smtp.js';
import { createActivities } from '../activities/index.js';
import type { TargetPlugins } from '../adapters/targets/index.js';

/**
 * Tuned for a small machine (2 cores) running worker, Temporal and PostgreSQL together; see the
 * README's benchmark section. Larger deployments run more workers rather than bigger ones.
 */
export const WORKER_TUNING = {
  maxConcurrentWorkflowTaskExecutions: 40,
  maxConcurrentLocalActivityExecutions: 40,
  maxConcurrentActivityTaskExecutions: 40,
  maxCachedWorkflows: 2_000,
} satisfies Partial<WorkerOptions>;

/** The prebuilt bundle (`npm run build`) when running from dist/, the sources when running tests. */
export function workflowSource(): Pick<WorkerOptions, 'workflowsPath' | 'workflowBundle'> {
  const bundle = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));
  if (existsSync(bundle)) return { workflowBundle: { codePath: bundle } };
  const ts = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
  return { workflowsPath: existsSync(ts) ? ts : fileURLToPath(new URL('../workflows/index.js', import.meta.url)) };
}

export interface WorkerDeps {
  readonly connection: NativeConnection;
  readonly client: Client;
  /** flowthru's data converter (flowthruDataConverter), the one its clients use. */
  readonly dataConverter: DataConverter;
  readonly db: Kysely<Database>;
  readonly mailer: Mailer;
  readonly namespace: string;
  readonly taskQueue: string;
  /** Where user pipelines run (default: taskQueue); another queue lets another pool of workers run them. */
  readonly pipelineTaskQueue?: string;
  readonly tuning?: Partial<WorkerOptions>;
  /** The targets' plugins (their pooled connections), for the caller to close at shutdown; else the worker's own. */
  readonly plugins?: TargetPlugins;
}

export async function createWorker(deps: WorkerDeps): Promise<Worker> {
  const activities = createActivities({
    db: deps.db,
    snapshots: new ConfigSnapshots(deps.db),
    mailer: deps.mailer,
    client: deps.client,
    taskQueue: deps.pipelineTaskQueue ?? deps.taskQueue,
    ...(deps.plugins ? { plugins: deps.plugins } : {}),
  });
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue,
    dataConverter: deps.dataConverter,
    activities,
    ...workflowSource(),
    ...WORKER_TUNING,
    ...deps.tuning,
  });
}

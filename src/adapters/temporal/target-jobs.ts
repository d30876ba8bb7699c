import type { Client } from '@temporalio/client';
import { searchAttributes, targetJobSummary, targetJobWorkflowId } from '../../workflows/config.js';
import { targetPushSignal, type TargetJobInput, type TargetPushRequest } from '../../workflows/messages.js';
import type { targetJob } from '../../workflows/target-job.js';

/**
 * Hands a push to the (target, user) job, the one way every caller (the pipeline's queue modes,
 * `flowthru target provision`) does it: signal-with-start on the job's deterministic id, so a job
 * already waiting or pushing takes the request over (requests collapse, the newest wins) and a
 * finished one starts anew. Returns the workflow id.
 */
export async function handToTargetJob(client: Client, taskQueue: string, job: TargetJobInput, request: TargetPushRequest): Promise<string> {
  const workflowId = targetJobWorkflowId(job.customer, job.target, job.userId);
  await client.workflow.signalWithStart<typeof targetJob, [TargetPushRequest]>('targetJob', {
    workflowId,
    taskQueue,
    args: [job],
    signal: targetPushSignal,
    signalArgs: [request],
    typedSearchAttributes: [{ key: searchAttributes.customer, value: job.customer }],
    staticSummary: targetJobSummary(job.customer, job.target, job.userId),
  });
  return workflowId;
}

import type { Client } from '@temporalio/client';
import { PIPELINE_SHAPE, onboardWorkflowId, pipelineDetails, pipelineSummary, searchAttributes } from '../../workflows/config.js';
import { userChangedSignal, type OnboardUserInput, type UserChange } from '../../workflows/messages.js';
import type { onboardUser } from '../../workflows/onboard-user.js';

export interface UserPipelineStart {
  readonly taskQueue: string;
  readonly customer: string;
  readonly source: string;
  readonly externalId: string;
  readonly userId: string;
  /** What the pipeline is to do: the sync's change, or an operator's retry. */
  readonly change: UserChange;
}

/**
 * Hands a change to a user's pipeline, the one way every caller (a sync, `flowthru retry`) does it:
 * signal-with-start on the user's one workflow id, so a running pipeline (a blocked user, an add
 * still in flight) receives the change and a finished one starts anew. Returns the workflow id.
 */
export async function startUserPipeline(client: Client, start: UserPipelineStart): Promise<string> {
  const workflowId = onboardWorkflowId(start.customer, start.source, start.externalId);
  // The shape a new run takes (a running pipeline that receives the signal keeps the shape it started with).
  const input: OnboardUserInput = { customer: start.customer, source: start.source, externalId: start.externalId, userId: start.userId, shape: PIPELINE_SHAPE };
  await client.workflow.signalWithStart<typeof onboardUser, [UserChange]>('onboardUser', {
    workflowId,
    taskQueue: start.taskQueue,
    args: [input],
    signal: userChangedSignal,
    signalArgs: [start.change],
    // Set when a run starts (a signal to a running one leaves them): the pipeline upserts site and status as it goes.
    typedSearchAttributes: [
      { key: searchAttributes.customer, value: start.customer },
      { key: searchAttributes.source, value: start.source },
      { key: searchAttributes.syncMode, value: start.change.mode },
      { key: searchAttributes.status, value: 'running' },
    ],
    staticSummary: pipelineSummary(start.customer, start.source, start.externalId, start.userId),
    staticDetails: pipelineDetails(start.customer, start.source, start.externalId, start.userId),
  });
  return workflowId;
}

// The workflows the worker registers (its workflowsPath bundles this file).
export { onboardUser } from './onboard-user.js';
export { syncSource } from './sync-source.js';
export { targetJob } from './target-job.js';
export { reprovisionTarget } from './reprovision.js';

import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { FAILURE_CONVERTER_PATH } from '../adapters/temporal/data-converter.js';

/*
 * Bundles the workflows at build time (`npm run build`): the worker starts faster from the bundle,
 * and a workflow that imports anything the sandbox cannot run (node:fs, pg, …) fails the build
 * here rather than a worker in production.
 */
const workflowsPath = fileURLToPath(new URL('../workflows/index.js', import.meta.url));
const { code } = await bundleWorkflowCode({ workflowsPath, failureConverterPath: FAILURE_CONVERTER_PATH, logger: { log: () => undefined, trace: () => undefined, debug: () => undefined, info: () => undefined, warn: (m) => console.warn(m), error: (m) => console.error(m) } });
await writeFile(fileURLToPath(new URL('../workflow-bundle.js', import.meta.url)), code);

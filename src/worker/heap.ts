import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets a worker's heap grow past what survived the last full collection before the
 * next one: 1.2×. V8's own factor, chosen for a process that allocates little, reaches 4× for a
 * heap collected as quickly as a worker's: a live set of about 75 MiB grew to 200 MiB of mostly
 * garbage on the main thread (a worker's peak resident memory, 466 MiB at 5,000 users, 527 MiB at
 * 100,000). See the README's "Memory at scale".
 */
export const WORKER_HEAP_GROWING_PERCENT = 20;

/** The V8 options an operator sizes a heap with (`-` or `_`, as V8 accepts both). */
const HEAP_OPTIONS = /(?:^|\s)--(?:max[-_]old[-_]space[-_]size|max[-_]heap[-_]size|heap[-_]growing[-_]percent)(?:[=\s]|$)/;

/**
 * The growing factor to set for a worker process, as a percent over 1 (`--heap-growing-percent`),
 * or null when the operator sized the heap themselves (on node's command line, or
 * `--max-old-space-size` in NODE_OPTIONS): theirs is kept.
 */
export function workerHeapGrowth(execArgv: readonly string[], nodeOptions: string | undefined): number | null {
  return HEAP_OPTIONS.test([...execArgv, nodeOptions ?? ''].join(' ')) ? null : WORKER_HEAP_GROWING_PERCENT;
}

/**
 * Applies workerHeapGrowth to this process. V8 reads the factor at each full collection, so it
 * takes effect when set after start (on every thread, the workflows' one included: V8's options
 * are the process's). Returns the percent set, or null.
 */
export function tuneWorkerHeap(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS): number | null {
  const percent = workerHeapGrowth(execArgv, nodeOptions);
  if (percent !== null) setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}

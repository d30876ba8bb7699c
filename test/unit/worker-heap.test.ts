import { describe, expect, it } from 'vitest';
import { WORKER_HEAP_GROWING_PERCENT, workerHeapGrowth } from '../../src/worker/heap.js';

describe("a worker's heap growing factor", () => {
  it('is set when the operator sized nothing', () => {
    expect(workerHeapGrowth([], undefined)).toBe(WORKER_HEAP_GROWING_PERCENT);
    expect(workerHeapGrowth(['--enable-source-maps'], '--import tsx --max-semi-space-size=32')).toBe(WORKER_HEAP_GROWING_PERCENT);
  });

  it("keeps the operator's own heap sizing, on node's command line or in NODE_OPTIONS, with - or _", () => {
    expect(workerHeapGrowth(['--max-old-space-size=512'], undefined)).toBeNull();
    expect(workerHeapGrowth(['--heap-growing-percent=100'], '')).toBeNull();
    expect(workerHeapGrowth([], '--max_old_space_size=768')).toBeNull();
    expect(workerHeapGrowth([], '--enable-source-maps --max-heap-size 1024')).toBeNull();
  });

  it('is not fooled by options that only look alike', () => {
    expect(workerHeapGrowth(['--max-old-space-size-ish=1'], '--max-semi-space-size=64')).toBe(WORKER_HEAP_GROWING_PERCENT);
  });
});

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { workflowSource } from '../src/worker/index.js';

// Recorded histories of every workflow type must replay against the current workflow code: a
// change that would break running workflows fails here (see the README on patched()).
const DIR = join(import.meta.dirname, 'histories');
const files = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

describe('replay of recorded histories', () => {
  it('covers every workflow type', () => {
    expect(new Set(files.map((f) => f.split('-')[0]))).toEqual(new Set(['syncSource', 'onboardUser', 'targetJob', 'reprovisionTarget']));
  });

  it('replays every history deterministically', async () => {
    const histories = files.map((file) => JSON.parse(readFileSync(join(DIR, file), 'utf8')) as { workflowId: string; history: unknown });
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ ...workflowSource(), replayName: 'flowthru-replay' }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);
});

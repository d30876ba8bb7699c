import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { dataConverterFromEnv } from '../src/adapters/temporal/data-converter.js';
import { workflowSource } from '../src/worker/index.js';

// Recorded histories of every workflow type must replay against the current workflow code: a
// change that would break running workflows fails here (see the README on patched()). Each set
// (test/histories/<set>/) was recorded from the code of its day: `plaintext` before payloads were
// encrypted, the later ones sealed with the fixed replay key (test/support/payload-keys.ts).
const DIR = join(import.meta.dirname, 'histories');
const files = readdirSync(DIR, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.json')).sort();

describe('replay of recorded histories', () => {
  it('covers every workflow type', () => {
    expect(new Set(files.map((f) => basename(f).split('-')[0]))).toEqual(new Set(['syncSource', 'onboardUser', 'targetJob', 'reprovisionTarget']));
  });

  it('keeps a set from before payloads were encrypted, and records sealed ones since', () => {
    // Plaintext by Temporal's design, and free of personal data: search attributes, and the
    // metadata the SDK records beside a local activity's (sealed) result or a patch.
    const byDesign = /searchAttributes|markerRecordedEventAttributes\.details\.(data|patch-data)\b/;
    const encodings = (set: string) => {
      const found = new Set<string>();
      const walk = (value: unknown, path: string): void => {
        if (Array.isArray(value)) value.forEach((item) => walk(item, path));
        else if (value && typeof value === 'object') {
          const encoding = (value as { metadata?: { encoding?: unknown } }).metadata?.encoding;
          if (typeof encoding === 'string' && !byDesign.test(path)) found.add(Buffer.from(encoding, 'base64').toString());
          for (const [key, item] of Object.entries(value)) walk(item, `${path}.${key}`);
        }
      };
      for (const file of files.filter((f) => f.startsWith(`${set}/`))) walk(JSON.parse(readFileSync(join(DIR, file), 'utf8')), '');
      return found;
    };
    expect(encodings('plaintext')).toContain('json/plain');
    expect(encodings('plaintext')).not.toContain('binary/encrypted');
    const sealed = [...new Set(files.map((f) => f.split('/')[0]!))].filter((set) => set !== 'plaintext');
    expect(sealed).toEqual(expect.arrayContaining(['encrypted', 'branches']));
    for (const set of sealed) expect(encodings(set), set).toEqual(new Set(['binary/encrypted']));
  });

  it('replays every history deterministically', async () => {
    const histories = files.map((file) => JSON.parse(readFileSync(join(DIR, file), 'utf8')) as { workflowId: string; history: unknown });
    const failures: string[] = [];
    const options = { ...workflowSource(), dataConverter: dataConverterFromEnv(), replayName: 'flowthru-replay' };
    for await (const result of Worker.runReplayHistories(options, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);
});

/*
 * A corpus of bad (and awkward) CSV files, each read the way a sync reads it.
 *
 * Every `test/data/csv/<name>.csv` has a `<name>.expect.json` next to it; adding a case is adding
 * those two files, no test code. The expectation holds:
 *
 *   "about":      what the file exercises (for the reader of the corpus)
 *   "source":     optional: settings of the CSV source over the defaults below (externalId,
 *                 attributeMap, disabledWhen, includeDisabled, delimiter), as in configuration
 *   "users":      { externalId: line } — every user read and kept, at the line its record starts on
 *   "disabled":   optional: external ids skipped as disabled
 *   "problems":   [{ "line": N, "message": "a fragment of the message" }], in line order
 *   "incomplete": whether some record could not be identified (the read must not be trusted to
 *                 say who left)
 *   or "error":   a fragment of the message of the error that makes the file unreadable
 *
 * Files whose bytes matter (NUL, invalid UTF-8, CRLF, a BOM) are written by test/data/csv/generate.ts;
 * commit the .csv itself either way. Each file is read at several page sizes, which must agree.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../src/adapters/errors.js';
import { mapRecords, readSourceRecords } from '../../src/adapters/sources/index.js';
import type { RawRecord } from '../../src/adapters/sources/records.js';
import { customerParts, type SourceConfig } from '../../src/domain/config/schema.js';
import type { SourceCursor, SourceProblem } from '../../src/workflows/messages.js';
import { rejection } from '../support/assert.js';

const CORPUS = join(dirname(fileURLToPath(import.meta.url)), '../data/csv');

interface Expectation {
  about: string;
  source?: Record<string, unknown>;
  users?: Record<string, number>;
  disabled?: string[];
  problems?: { line: number; message: string }[];
  incomplete?: boolean;
  error?: string;
}

function sourceFor(file: string, overrides: Record<string, unknown> = {}): SourceConfig & { id: number } {
  const config = customerParts.sources.parse({ name: 'corpus', type: 'csv', userType: 'csv', path: file, externalId: 'id', ...overrides });
  return { ...config, id: 1 };
}

async function readAll(source: SourceConfig, pageSize: number) {
  const records: RawRecord[] = [];
  const problems: SourceProblem[] = [];
  let unidentified = 0;
  let cursor: SourceCursor | null = null;
  do {
    const page = await readSourceRecords(source, cursor, pageSize, { watermark: null, heartbeat: () => undefined });
    records.push(...page.records);
    problems.push(...page.problems);
    unidentified += page.unidentified;
    cursor = page.next;
  } while (cursor);
  return { records, problems, unidentified };
}

const lineOf = (at: string) => Number(/^line (\d+)$/.exec(at)?.[1] ?? Number.NaN);

const cases = readdirSync(CORPUS)
  .filter((f) => f.endsWith('.csv'))
  .sort()
  .map((f) => f.slice(0, -'.csv'.length));

describe('the CSV corpus (test/data/csv)', () => {
  it('has an expectation for every file', () => {
    expect(cases.length).toBeGreaterThan(0);
    for (const name of cases) expect(readdirSync(CORPUS), `${name}.expect.json`).toContain(`${name}.expect.json`);
  });

  for (const name of cases) {
    it(name, async () => {
      const expected = JSON.parse(readFileSync(join(CORPUS, `${name}.expect.json`), 'utf8')) as Expectation;
      const source = sourceFor(join(CORPUS, `${name}.csv`), expected.source);

      if (expected.error !== undefined) {
        const error = await rejection(readAll(source, 1000));
        expect(error).toBeInstanceOf(PermanentError);
        expect(error.message).toContain(expected.error);
        return;
      }

      const whole = await readAll(source, 1000);
      // Paging must not change what is read: cursors resume exactly, past recovered lines too.
      for (const size of [1, 2, 3, 7]) expect(await readAll(source, size), `page size ${size}`).toEqual(whole);

      // Mapped as one page, so that ids repeated across pages are found too.
      const mapped = mapRecords(source, whole.records);
      expect(Object.fromEntries(mapped.users.map((u) => [u.externalId, lineOf(u.at)]))).toEqual(expected.users ?? {});
      expect(mapped.disabled.map((d) => d.externalId)).toEqual(expected.disabled ?? []);
      const problems = [...whole.problems, ...mapped.problems].map((p) => ({ line: lineOf(p.at), message: p.message })).sort((a, b) => a.line - b.line);
      expect(problems).toEqual((expected.problems ?? []).map((p) => ({ line: p.line, message: expect.stringContaining(p.message) })));
      expect(whole.unidentified + mapped.unidentified > 0, 'incomplete').toBe(expected.incomplete ?? false);
    });
  }
});

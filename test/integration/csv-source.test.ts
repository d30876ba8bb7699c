import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CsvSourceError, readCsvPage, type CsvCursor } from '../../src/adapters/sources/csv.js';

const dir = mkdtempSync(join(tmpdir(), 'flowthru-csv-'));

async function readAll(path: string, pageSize: number) {
  const records = [];
  const problems = [];
  let cursor: CsvCursor | null = null;
  let pages = 0;
  do {
    const page = await readCsvPage({ path, delimiter: ',' }, cursor, pageSize);
    records.push(...page.records);
    problems.push(...page.problems);
    cursor = page.next;
    pages++;
  } while (cursor);
  return { records, problems, pages };
}

describe('the CSV source', () => {
  const tricky = [
    '\uFEFFid,name,city',
    '1,Ann,Chicago',
    // A line break inside a quoted field (LF here; csv-parse counts an embedded CRLF as two lines).
    '2,"Bob ""B"" Jones","Dal\nlas"',
    '3,Cy,Austin',
    '',
    '4,Di',
    '5,"Émile, Jr.",Zürich',
    '6,Fay,Boston',
  ].join('\r\n');

  it('reads RFC 4180: BOM, quotes, embedded newlines, CRLF, UTF-8; reports a bad row by line', async () => {
    const path = join(dir, 'tricky.csv');
    writeFileSync(path, tricky);
    const { records, problems } = await readAll(path, 100);
    expect(records.map((r) => r.attributes)).toEqual([
      { id: '1', name: 'Ann', city: 'Chicago' },
      { id: '2', name: 'Bob "B" Jones', city: 'Dal\nlas' },
      { id: '3', name: 'Cy', city: 'Austin' },
      { id: '5', name: 'Émile, Jr.', city: 'Zürich' },
      { id: '6', name: 'Fay', city: 'Boston' },
    ]);
    expect(problems).toEqual([{ at: 'line 7', message: expect.stringMatching(/columns length is 3, got 2/) }]);
    expect(records[0]?.at).toBe('line 2');
  });

  it('gives the same records and problems whatever the page size', async () => {
    const path = join(dir, 'tricky.csv');
    const whole = await readAll(path, 100);
    for (const size of [1, 2, 3]) {
      const paged = await readAll(path, size);
      expect(paged.records).toEqual(whole.records);
      expect(paged.problems).toEqual(whole.problems);
    }
  });

  it('streams: a page of a 100,000-row file is read from where the last one stopped', async () => {
    const path = join(dir, 'big.csv');
    const rows = ['id,name,city'];
    for (let i = 0; i < 100_000; i++) rows.push(`${i},Person ${i},City ${i % 50}`);
    writeFileSync(path, `${rows.join('\n')}\n`);
    const first = await readCsvPage({ path, delimiter: ',' }, null, 500);
    expect(first.records).toHaveLength(500);
    expect(first.next!.offset).toBeLessThan(statSync(path).size / 50);
    const middle = await readCsvPage({ path, delimiter: ',' }, { offset: first.next!.offset, line: first.next!.line, header: first.next!.header }, 500);
    expect(middle.records[0]).toEqual({ at: 'line 502', attributes: { id: '500', name: 'Person 500', city: 'City 0' } });
    const { records, pages } = await readAll(path, 5_000);
    expect(records).toHaveLength(100_000);
    expect(pages).toBe(21);
  }, 60_000);

  it('a missing file is a clear error', async () => {
    await expect(readCsvPage({ path: join(dir, 'nope.csv'), delimiter: ',' }, null, 10)).rejects.toThrow(CsvSourceError);
    await expect(readCsvPage({ path: join(dir, 'nope.csv'), delimiter: ',' }, null, 10)).rejects.toThrow(/cannot read .*nope\.csv: ENOENT/);
  });
});

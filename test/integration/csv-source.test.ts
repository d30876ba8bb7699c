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
  let unidentified = 0;
  do {
    const page = await readCsvPage({ path, delimiter: ',' }, cursor, pageSize);
    records.push(...page.records);
    problems.push(...page.problems);
    unidentified += page.unidentified;
    cursor = page.next;
    pages++;
  } while (cursor);
  return { records, problems, pages, unidentified };
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
    expect(problems).toEqual([{ at: 'line 7', message: expect.stringMatching(/^2 fields where the header has 3: 1 "," missing/) }]);
    // Each record at the line it starts on: the one with a line break inside counts two lines.
    expect(records.map((r) => r.at)).toEqual(['line 2', 'line 3', 'line 5', 'line 8', 'line 9']);
  });

  it('counts a CRLF inside quotes as one line (the parser counts two)', async () => {
    const path = join(dir, 'crlf-in-quotes.csv');
    writeFileSync(path, ['id,name', '1,"a\r\nb"', '2,c', '3', '4,d'].join('\r\n'));
    const { records, problems } = await readAll(path, 100);
    expect(records.map((r) => [r.attributes.id, r.at])).toEqual([
      ['1', 'line 2'],
      ['2', 'line 4'],
      ['4', 'line 6'],
    ]);
    expect(problems).toEqual([{ at: 'line 5', message: expect.stringMatching(/^1 field where the header has 2: 1 "," missing/) }]);
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

  it('an unterminated quote early in a large file costs a bounded re-read, and the rest is read', async () => {
    const path = join(dir, 'early-quote.csv');
    const rows = ['id,name,city', '1,Ann,Chicago', '2,"Broken,Dallas'];
    for (let i = 3; i <= 40_000; i++) rows.push(`${i},Person ${i},City ${i % 50}`);
    writeFileSync(path, `${rows.join('\n')}\n`);
    const whole = await readAll(path, 5_000);
    // The quote would take the remaining 1.3 MB into one field: the parser stops at 1 MiB.
    expect(whole.problems).toEqual([{ at: 'line 3', message: expect.stringMatching(/^a record longer than 1048576 characters starts on this line .*resumed at line 4$/) }]);
    expect(whole.records).toHaveLength(39_999);
    expect(whole.records[1]).toEqual({ at: 'line 4', attributes: { id: '3', name: 'Person 3', city: 'City 3' } });
    expect(whole.records.at(-1)!.at).toBe('line 40001');
    expect(whole.unidentified).toBe(1);
  }, 60_000);

  it('gives up on a file with too many unterminated quotes, saying which lines were not read', async () => {
    const path = join(dir, 'many-quotes.csv');
    const rows = ['id,name'];
    // A good row, then a broken one, 150 times: line 2k is good, line 2k+1 broken.
    for (let k = 1; k <= 150; k++) rows.push(`${k},Good ${k}`, `b${k},"Broken ${k}`);
    writeFileSync(path, `${rows.join('\n')}\n`);
    const whole = await readAll(path, 1_000);
    expect(whole.records).toHaveLength(101);
    expect(whole.records.at(-1)!.at).toBe('line 202');
    expect(whole.problems).toHaveLength(101);
    expect(whole.problems[99]).toEqual({ at: 'line 201', message: expect.stringMatching(/resumed at line 202$/) });
    expect(whole.problems[100]).toEqual({
      at: 'line 203',
      // (Its quote pairs with the next broken line's: that is caught too.)
      message: expect.stringMatching(/^unterminated quote: a quoted field opens on this line .*; after 100 such lines the file is given up on: lines 203 to 301 \(99\) were not read$/),
    });
    expect(whole.unidentified).toBe(101);
    // The count survives paging: the cursor carries it.
    const paged = await readAll(path, 1);
    expect(paged.records).toEqual(whole.records);
    expect(paged.problems).toEqual(whole.problems);
  });

  it('a missing file is a clear error', async () => {
    await expect(readCsvPage({ path: join(dir, 'nope.csv'), delimiter: ',' }, null, 10)).rejects.toThrow(CsvSourceError);
    await expect(readCsvPage({ path: join(dir, 'nope.csv'), delimiter: ',' }, null, 10)).rejects.toThrow(/cannot read .*nope\.csv: ENOENT/);
  });
});

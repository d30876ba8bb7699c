import { describe, expect, it } from 'vitest';
import { jsonArrayStream, table, tableStream } from '../../src/client/cli.js';

function capture() {
  const lines: string[] = [];
  return { io: { out: (line: string) => lines.push(line), err: () => undefined }, text: () => lines.join('\n'), lines };
}

describe('jsonArrayStream: a JSON object printed as its array arrives', () => {
  const rest = { customer: 'acme', counts: { seen: 3 }, deletions: ['x'], threshold: null };

  it.each([
    ['no item', []],
    ['one item', [[{ id: 1, why: { site: 'hq' } }]]],
    ['items in several batches, some empty', [[{ id: 1 }, { id: 2, s: 'a "quoted" \n line' }], [], [{ id: 3, nested: [1, [2]] }]]],
  ])('parses to the object JSON.stringify prints (%s)', (_name, batches) => {
    const out = capture();
    const stream = jsonArrayStream(out.io, 'users');
    for (const batch of batches as unknown[][]) stream.items(batch);
    stream.end(rest);
    expect(JSON.parse(out.text())).toEqual({ users: (batches as unknown[][]).flat(), ...rest });
  });

  it('prints nothing before the first batch, so a command that fails early prints no half document', () => {
    const out = capture();
    jsonArrayStream(out.io, 'users');
    expect(out.lines).toEqual([]);
  });

  it('an object with no other field is still valid', () => {
    const out = capture();
    const stream = jsonArrayStream(out.io, 'users');
    stream.items([{ id: 1 }]);
    stream.end({});
    expect(JSON.parse(out.text())).toEqual({ users: [{ id: 1 }] });
  });
});

describe('tableStream: a table printed batch by batch', () => {
  it('prints what table prints when everything comes in one batch', () => {
    const rows = [
      { a: 'x', b: null },
      { a: 'longer value', b: ['p', 'q'] },
    ];
    const whole = capture();
    table(whole.io, rows, ['a', 'b']);
    const streamed = capture();
    const stream = tableStream<(typeof rows)[number]>(streamed.io, ['a', 'b']);
    stream.rows([]);
    stream.rows(rows);
    stream.end();
    expect(streamed.lines).toEqual(whole.lines);
    expect(whole.lines).toEqual(['A             B', 'x             -', 'longer value  p q']);
  });

  it('takes the widths from the first batch with rows; later rows overflow rather than wait', () => {
    const out = capture();
    const stream = tableStream<{ a: string; b: string }>(out.io, ['a', 'b']);
    stream.rows([{ a: 'x', b: '1' }]);
    stream.rows([{ a: 'much longer', b: '2' }]);
    stream.end();
    expect(out.lines).toEqual(['A  B', 'x  1', 'much longer  2']);
  });

  it('prints the header alone when no row comes', () => {
    const out = capture();
    tableStream<{ a: string }>(out.io, ['a']).end();
    expect(out.lines).toEqual(['A']);
  });
});

describe('the flowthru command', () => {
  it('stops quietly when its reader closes the pipe (`flowthru --help | head -0`)', async () => {
    const { spawn } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const bin = fileURLToPath(new URL('../../bin/flowthru.js', import.meta.url));
    // The reader is gone before the command writes its first line.
    const child = spawn(process.execPath, [bin, 'config', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});

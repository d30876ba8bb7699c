import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { parse, type CsvError, type InfoRecord } from 'csv-parse';
import type { RawRecord } from './records.js';

export interface CsvSettings {
  readonly path: string;
  readonly delimiter: string;
}

/** Where the previous page stopped: a byte offset, the number of lines before it, and the header read at the start. */
export interface CsvCursor {
  readonly offset: number;
  readonly line: number;
  readonly header: readonly string[];
  /** Lines skipped so far in this read to get past a record that swallowed the rest of the file. */
  readonly resyncs?: number;
}

export interface CsvPage {
  readonly records: RawRecord[];
  readonly problems: { at: string; message: string }[];
  readonly next: CsvCursor | null;
  /**
   * Records that were not read, so whose external id is unknown: the malformed rows and the lines
   * given up on. Non-zero makes the read incomplete.
   */
  readonly unidentified: number;
}

export class CsvSourceError extends Error {}

/**
 * A record longer than this is a broken file (an unterminated quote swallowing the lines after it),
 * not a person: the parser stops there instead of holding the rest of the file in one field.
 */
const MAX_RECORD_CHARS = 1 << 20;
/** Resynchronising costs up to a MAX_RECORD_CHARS re-read each: a file this broken is given up on. */
const MAX_RESYNCS = 100;

const LF = 0x0a;

interface Position {
  /** Byte offset in the file. */
  readonly offset: number;
  /** Lines before that offset. */
  readonly line: number;
}

type SegmentEnd =
  | { readonly kind: 'full'; readonly next: Position }
  | { readonly kind: 'eof' }
  /** A record starting at `line` could not be parsed and took what followed with it. */
  | { readonly kind: 'lost'; readonly line: number; readonly lineStart: number; readonly resume: Position | null; readonly message: string };

/** A record the parser skipped, in a reader's words (csv-parse's own: "Invalid Record Length: columns length is 4, got 5"). */
function recordProblem(error: CsvError, delimiter: string): string {
  const length = /^Invalid Record Length: (?:columns length is|expect) (\d+), got (\d+)/.exec(error.message);
  if (length) {
    const [want, got] = [Number(length[1]), Number(length[2])];
    const shown = JSON.stringify(delimiter);
    return got > want
      ? `${got} fields where the header has ${want}: ${got - want} ${shown} too many (a value holding ${shown} must be quoted)`
      : `${got} field${got === 1 ? '' : 's'} where the header has ${want}: ${want - got} ${shown} missing (or the row is cut short)`;
  }
  return error.message.replace(/ (at|on) line \d+/, '');
}

/**
 * Whether a quoted field of this record ran across a line break and was closed by a quote that is
 * followed by more text. Lenient parsing (relax_quotes) accepts that, but it is two unterminated
 * quotes on different lines paired up: the lines between are taken into one field and the record
 * after the first is lost without a word. `raw` is the record's text as the parser read it.
 */
function quotesPairedAcrossLines(raw: string, delimiter: string): boolean {
  const text = raw.replace(/^[\r\n]+|[\r\n]+$/g, '');
  if (!/[\r\n]/.test(text)) return false;
  const fieldEnd = (c: string | undefined) => c === undefined || c === delimiter || c === '\r' || c === '\n';
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '"') {
      while (!fieldEnd(text[i])) i++;
      continue;
    }
    let multiline = false;
    for (i++; i < text.length; i++) {
      if (text[i] === '\r' || text[i] === '\n') multiline = true;
      else if (text[i] === '"' && text[i + 1] === '"') i++;
      else if (text[i] === '"') break;
    }
    if (multiline && !fieldEnd(text[i + 1])) return true;
    i++;
  }
  return false;
}

/** How many entries of the ascending list are below `value`. */
function countBelow(sorted: readonly number[], value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sorted[mid]! < value) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * Parses from `from` until `want` records are read, the file ends, or a record swallows the rest.
 * Line numbers are counted here from the bytes (LF), not by the parser, which counts a CRLF inside
 * quotes as two lines; a record is reported at the line it starts on.
 */
async function readSegment(
  settings: CsvSettings,
  from: Position,
  header: readonly string[] | undefined,
  want: number,
  out: { records: RawRecord[]; problems: CsvPage['problems']; header?: readonly string[] },
): Promise<SegmentEnd> {
  const stream = createReadStream(settings.path, { start: from.offset });
  // Offsets (from `from`) of every LF read so far: the parser reads ahead, so they are known
  // for every byte it has seen. Registered before the pipe, so a chunk is indexed before it is parsed.
  const newlines: number[] = [];
  let read = 0;
  stream.on('data', (chunk) => {
    const bytes = chunk as Buffer;
    for (let i = bytes.indexOf(LF); i !== -1; i = bytes.indexOf(LF, i + 1)) newlines.push(read + i);
    read += bytes.length;
  });
  const linesBefore = (offset: number) => from.line + countBelow(newlines, offset);
  const lineStart = (line: number): number | null => {
    if (line === from.line + 1) return 0;
    const lf = newlines[line - from.line - 2];
    return lf === undefined ? null : lf + 1;
  };

  // Where the previous record (or the header) ended, and how many empty lines the parser had
  // skipped by then: the next record starts that many lines further on.
  let lastEnd = 0;
  let lastEmpty = 0;
  const startLine = (emptyLines: number | undefined) => linesBefore(lastEnd) + 1 + ((emptyLines ?? lastEmpty) - lastEmpty);
  let end: SegmentEnd | null = null;

  const parser = parse<Record<string, string>, { record: Record<string, string>; raw: string }>({
    bom: from.offset === 0,
    delimiter: settings.delimiter,
    columns: header
      ? [...header]
      : (names: string[]) => {
          const trimmed = names.map((h) => h.trim());
          out.header = trimmed;
          lastEnd = parser.info.bytes;
          lastEmpty = parser.info.empty_lines;
          return trimmed;
        },
    skip_empty_lines: true,
    skip_records_with_error: true,
    // A stray quote inside a field (`"Bob" Jr`) is kept as text rather than losing the rest of the file.
    relax_quotes: true,
    max_record_size: MAX_RECORD_CHARS,
    // With raw, each record comes with its text as read (see quotesPairedAcrossLines).
    raw: true,
    // Records are collected here, in the parser's own order with its skips: nothing is emitted.
    on_record: ({ record, raw }: { record: Record<string, string>; raw: string }, context: InfoRecord) => {
      if (end) return null;
      const line = startLine(context.empty_lines);
      if (quotesPairedAcrossLines(raw, settings.delimiter)) {
        lose(line, 'unterminated quote: a quoted field opens on this line and runs on into the next ones, where a quote closes it mid-field');
        return null;
      }
      lastEnd = context.bytes;
      lastEmpty = context.empty_lines;
      // Bytes that are not UTF-8 arrive as U+FFFD: the field's text is not what the file says.
      const undecodable = Object.keys(record).filter((name) => record[name]!.includes('\uFFFD'));
      out.records.push({ at: `line ${line}`, attributes: record, ...(undecodable.length > 0 ? { undecodable } : {}) });
      if (--want <= 0) stop({ kind: 'full', next: { offset: from.offset + lastEnd, line: linesBefore(lastEnd) } });
      return null;
    },
  });

  /** Ends the segment: no more bytes are read, and whatever the parser still holds is ignored. */
  const stop = (how: SegmentEnd) => {
    end = how;
    stream.unpipe(parser);
    stream.destroy();
    if (!parser.writableEnded) parser.end();
  };

  /** The record starting on `line` took what followed with it: give up on that line and read on from the next. */
  const lose = (line: number, message: string) => {
    const next = lineStart(line + 1);
    stop({
      kind: 'lost',
      line,
      lineStart: from.offset + (lineStart(line) ?? lastEnd),
      resume: next === null ? null : { offset: from.offset + next, line },
      message,
    });
  };

  parser.on('skip', (error: CsvError) => {
    if (end) return;
    const line = startLine(error.empty_lines as number | undefined);
    if (error.code === 'CSV_QUOTE_NOT_CLOSED') {
      lose(line, 'unterminated quote: a quoted field opens on this line and is never closed');
      return;
    }
    if (error.code === 'CSV_MAX_RECORD_SIZE') {
      lose(line, `a record longer than ${MAX_RECORD_CHARS} characters starts on this line (an unterminated quote?)`);
      return;
    }
    out.problems.push({ at: `line ${line}`, message: recordProblem(error, settings.delimiter) });
    // A record of the wrong length ends where its line does; the parser says where.
    const bytes = error.bytes as number | undefined;
    if (typeof bytes === 'number' && bytes > lastEnd) lastEnd = bytes;
    lastEmpty = (error.empty_lines as number | undefined) ?? lastEmpty;
  });

  stream.on('error', (error: NodeJS.ErrnoException) => {
    parser.destroy(new CsvSourceError(`cannot read ${settings.path}: ${error.code ?? error.message}`));
  });
  stream.pipe(parser);
  try {
    for await (const _ of parser) {
      // on_record keeps every record: nothing is emitted.
    }
  } catch (error) {
    if (error instanceof CsvSourceError) throw error;
    throw new CsvSourceError(`${settings.path}: ${(error as Error).message}`);
  } finally {
    stream.destroy();
  }
  const result = end as SegmentEnd | null;
  if (result?.kind === 'lost' && result.resume === null) {
    // The LF ending the lost line may lie beyond what the parser read (a line over the size limit).
    const after = await offsetAfterNextLf(settings.path, result.lineStart);
    return { ...result, resume: after === null ? null : { offset: after, line: result.line } };
  }
  return result ?? { kind: 'eof' };
}

/** The offset just after the first LF at or after `offset`, or null at the end of the file. */
async function offsetAfterNextLf(path: string, offset: number): Promise<number | null> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    for (let position = offset; ; ) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return null;
      const i = buffer.subarray(0, bytesRead).indexOf(LF);
      if (i !== -1) return position + i + 1;
      position += bytesRead;
    }
  } finally {
    await file.close();
  }
}

/** How many lines the file has from `offset` on (a last line without LF counts). */
async function linesFrom(path: string, offset: number): Promise<number> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    let lines = 0;
    let last = LF;
    for (let position = offset; ; ) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return lines + (last === LF ? 0 : 1);
      for (let i = buffer.indexOf(LF, 0); i !== -1 && i < bytesRead; i = buffer.indexOf(LF, i + 1)) lines++;
      last = buffer[bytesRead - 1]!;
      position += bytesRead;
    }
  } finally {
    await file.close();
  }
}

/**
 * Reads up to `pageSize` records of an RFC 4180 file from `cursor`, streaming: only one page is
 * ever in memory. Quoted fields, embedded newlines, CRLF and a UTF-8 BOM are handled; a malformed
 * row is reported at the line it starts on and skipped. A record that never ends (an unterminated
 * quote) is reported at its first line, that line skipped, and reading resumes on the next line,
 * so the rows after it are not lost.
 */
export async function readCsvPage(settings: CsvSettings, cursor: CsvCursor | null, pageSize: number): Promise<CsvPage> {
  const out: { records: RawRecord[]; problems: CsvPage['problems']; header?: readonly string[] } = { records: [], problems: [] };
  let header = cursor?.header;
  let position: Position = cursor ? { offset: cursor.offset, line: cursor.line } : { offset: 0, line: 0 };
  let resyncs = cursor?.resyncs ?? 0;
  let unidentified = 0;
  const want = Math.max(1, Math.floor(pageSize));
  for (;;) {
    const problemsBefore = out.problems.length;
    const end = await readSegment(settings, position, header, want - out.records.length, out);
    header ??= out.header;
    unidentified += out.problems.length - problemsBefore;
    const page = (next: CsvCursor | null): CsvPage => ({ records: out.records, problems: out.problems, next, unidentified });
    switch (end.kind) {
      case 'eof':
        return page(null);
      case 'full':
        return page({ offset: end.next.offset, line: end.next.line, header: header ?? [], ...(resyncs > 0 ? { resyncs } : {}) });
      case 'lost': {
        if (header === undefined) {
          throw new CsvSourceError(`${settings.path}: line ${end.line}: the header cannot be read (${end.message})`);
        }
        unidentified++;
        resyncs++;
        if (end.resume === null) {
          out.problems.push({ at: `line ${end.line}`, message: `${end.message}; it is the last line, nothing after it was lost` });
          return page(null);
        }
        if (resyncs > MAX_RESYNCS) {
          const lost = await linesFrom(settings.path, end.lineStart);
          out.problems.push({
            at: `line ${end.line}`,
            message: `${end.message}; after ${MAX_RESYNCS} such lines the file is given up on: lines ${end.line} to ${end.line + lost - 1} (${lost}) were not read`,
          });
          return page(null);
        }
        out.problems.push({ at: `line ${end.line}`, message: `${end.message}; the line was skipped and reading resumed at line ${end.line + 1}` });
        position = end.resume;
      }
    }
  }
}

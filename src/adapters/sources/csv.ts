import { createReadStream } from 'node:fs';
import { parse, type CsvError } from 'csv-parse';
import type { RawRecord } from './records.js';

export interface CsvSettings {
  readonly path: string;
  readonly delimiter: string;
}

/** Where the previous page stopped: a byte offset, the line there, and the header read at the start. */
export interface CsvCursor {
  readonly offset: number;
  readonly line: number;
  readonly header: readonly string[];
}

export interface CsvPage {
  readonly records: RawRecord[];
  readonly problems: { at: string; message: string }[];
  readonly next: CsvCursor | null;
}

export class CsvSourceError extends Error {}

/**
 * Reads up to `pageSize` records of an RFC 4180 file from `cursor`, streaming: only one page is
 * ever in memory. Quoted fields, embedded newlines and a UTF-8 BOM are handled; a malformed row is
 * reported with its line number and skipped.
 */
export async function readCsvPage(settings: CsvSettings, cursor: CsvCursor | null, pageSize: number): Promise<CsvPage> {
  const start = cursor?.offset ?? 0;
  const stream = createReadStream(settings.path, { start });
  const parser = parse({
    bom: start === 0,
    delimiter: settings.delimiter,
    columns: cursor ? [...cursor.header] : (header: string[]) => header.map((h) => h.trim()),
    skip_empty_lines: true,
    skip_records_with_error: true,
    info: true,
    // A stray quote inside a field (`"Bob" Jr`) is kept as text rather than losing the rest of the file.
    relax_quotes: true,
  });
  const records: RawRecord[] = [];
  const problems: CsvPage['problems'] = [];
  const baseLine = cursor?.line ?? 0;
  let header = cursor?.header;
  let consumedBytes = 0;
  let lastLine = baseLine;
  let full = false;

  const skipped: { line: number; message: string }[] = [];
  parser.on('skip', (error: CsvError) => {
    const line = baseLine + ((error as CsvError & { lines?: number }).lines ?? 0);
    skipped.push({ line, message: error.message.replace(/ (at|on) line \d+/, '') });
  });

  stream.on('error', (error: NodeJS.ErrnoException) => {
    parser.destroy(new CsvSourceError(`cannot read ${settings.path}: ${error.code ?? error.message}`));
  });
  stream.pipe(parser);
  try {
    for await (const item of parser as AsyncIterable<{ record: Record<string, string>; info: { bytes: number; lines: number } }>) {
      header ??= Object.keys(item.record);
      records.push({ at: `line ${baseLine + item.info.lines}`, attributes: item.record });
      consumedBytes = item.info.bytes;
      lastLine = baseLine + item.info.lines;
      if (records.length >= pageSize) {
        full = true;
        break;
      }
    }
  } catch (error) {
    if (error instanceof CsvSourceError) throw error;
    throw new CsvSourceError(`${settings.path}: ${(error as Error).message}`);
  } finally {
    stream.destroy();
  }

  // The parser reads ahead: rows past this page are reported by the page that reads them.
  for (const skip of skipped) if (!full || skip.line <= lastLine) problems.push({ at: `line ${skip.line}`, message: skip.message });
  if (!full) return { records, problems, next: null };
  // info.bytes counts through the record's line break: the next page starts on the following line.
  return { records, problems, next: { offset: start + consumedBytes, line: lastLine, header: header ?? [] } };
}

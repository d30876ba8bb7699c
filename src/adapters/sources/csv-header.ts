import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';

/** The file could not be opened or read (missing, a directory, no permission). */
export class CsvUnreadable extends Error {
  constructor(readonly code: string) {
    super(code);
    this.name = 'CsvUnreadable';
  }
}

/**
 * The column names of a CSV file's header row, read as a sync reads them (BOM, delimiter, quoted
 * names, names trimmed) without reading past the first record; null for an empty file. Throws
 * CsvUnreadable when the file cannot be read, and csv-parse's error when the header is malformed.
 */
export async function readCsvHeader(path: string, delimiter: string): Promise<string[] | null> {
  const stream = createReadStream(path);
  const parser = parse({ bom: true, delimiter, skip_empty_lines: true, relax_quotes: true, to: 1 });
  stream.on('error', (error: NodeJS.ErrnoException) => parser.destroy(new CsvUnreadable(error.code ?? error.message)));
  stream.pipe(parser);
  try {
    for await (const record of parser as AsyncIterable<string[]>) return record.map((name) => name.trim());
    return null;
  } finally {
    stream.destroy();
  }
}

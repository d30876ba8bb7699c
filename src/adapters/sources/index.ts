import type { SourceConfig } from '../../domain/config/schema.js';
import type { SourceCursor, SourceProblem } from '../../workflows/messages.js';
import { PermanentError } from '../errors.js';
import { CsvSourceError, readCsvPage, type CsvCursor } from './csv.js';
import type { RawRecord } from './records.js';

export interface RecordPage {
  readonly records: readonly RawRecord[];
  readonly problems: readonly SourceProblem[];
  readonly next: SourceCursor | null;
}

/** One page of raw records from any source type: the pipeline does not care where users come from. */
export async function readSourceRecords(
  source: SourceConfig,
  cursor: SourceCursor | null,
  pageSize: number,
  _heartbeat: () => void,
): Promise<RecordPage> {
  switch (source.type) {
    case 'csv':
      try {
        const page = await readCsvPage(source, cursor as CsvCursor | null, pageSize);
        return { records: page.records, problems: page.problems, next: page.next as SourceCursor | null };
      } catch (error) {
        // A missing or unreadable file will not fix itself by retrying within this sync.
        if (error instanceof CsvSourceError) throw new PermanentError('SourceUnreadable', error.message);
        throw error;
      }
    case 'ldap':
    case 'entra':
      throw new PermanentError('SourceNotSupported', `${source.type} sources are not supported yet (source "${source.name}")`);
  }
}

import type { SourceConfig } from '../../domain/config/schema.js';
import type { SourceCursor, SourceProblem } from '../../workflows/messages.js';
import { PermanentError } from '../errors.js';
import { CsvSourceError, readCsvPage, type CsvCursor } from './csv.js';
import { entraDefaultAttributeMap, readEntraPage, type EntraCursor, type EntraWatermark } from './entra.js';
import { presetAttributeMap, readLdapPage, type LdapCursor, type LdapWatermark } from './ldap.js';
import { InvalidRecord, toSourceUser, type RawRecord, type SourceUser } from './records.js';

/** What a source remembers between syncs to read only what changed: LDAP's highest modifyTimestamp/uSNChanged, Graph's deltaLink. */
export type SourceWatermark = Readonly<Record<string, unknown>>;

export interface RecordPage {
  readonly records: readonly RawRecord[];
  readonly problems: readonly SourceProblem[];
  readonly next: SourceCursor | null;
  /** On the last page of a source that reads incrementally: what to persist once the sync succeeds. */
  readonly watermark: SourceWatermark | null;
  /** External ids the source reported removed (Graph's `@removed`); the delete sync's input. */
  readonly removed: readonly string[];
}

export interface ReadOptions {
  /** The watermark of the last successful sync: read only what changed since. Null reads everything. */
  readonly watermark: SourceWatermark | null;
  readonly heartbeat: () => void;
}

/**
 * The attribute map a source's records are read with: the type's defaults (an LDAP preset, the
 * Graph properties) under the source's own `attributeMap`, which wins.
 */
function effectiveAttributeMap(source: SourceConfig): Readonly<Record<string, string>> {
  switch (source.type) {
    case 'csv':
      return source.attributeMap;
    case 'ldap':
      return { ...presetAttributeMap(source.preset), ...source.attributeMap };
    case 'entra':
      return { ...entraDefaultAttributeMap(), ...source.attributeMap };
  }
}

/** The raw attribute that identifies a user across syncs: a CSV column, or what the adapter fills in. */
function externalIdAttribute(source: SourceConfig): string {
  return source.type === 'csv' ? source.externalId : 'externalId';
}

export interface MappedRecords {
  /** One per external id; when a page has an id twice, the later record wins. */
  readonly users: SourceUser[];
  /** Records that could not be used (invalid, or a duplicate id), by where they are in the source. */
  readonly problems: SourceProblem[];
  /** External ids of invalid records that had one: still in the source, though unusable. */
  readonly unusableIds: string[];
}

/** Maps a page's raw records onto users with the source's attribute map, as a sync and a preview both do. */
export function mapRecords(source: SourceConfig, records: readonly RawRecord[]): MappedRecords {
  const attributeMap = effectiveAttributeMap(source);
  const idAttribute = externalIdAttribute(source);
  const byId = new Map<string, SourceUser>();
  const problems: SourceProblem[] = [];
  const unusableIds: string[] = [];
  for (const record of records) {
    try {
      const user = toSourceUser(record, attributeMap, idAttribute);
      if (byId.has(user.externalId)) problems.push({ at: record.at, message: `duplicate external id "${user.externalId}"; the later record wins` });
      byId.set(user.externalId, user);
    } catch (error) {
      if (!(error instanceof InvalidRecord)) throw error;
      const raw = record.attributes[idAttribute];
      const id = (typeof raw === 'string' ? raw : raw?.[0])?.trim();
      if (id) unusableIds.push(id);
      const [at, ...rest] = error.message.split(': ');
      problems.push({ at: at ?? record.at, message: rest.join(': ') });
    }
  }
  return { users: [...byId.values()], problems, unusableIds };
}

/** One page of raw records from any source type: the pipeline does not care where users come from. */
export async function readSourceRecords(
  source: SourceConfig,
  cursor: SourceCursor | null,
  pageSize: number,
  options: ReadOptions,
): Promise<RecordPage> {
  switch (source.type) {
    case 'csv':
      try {
        const page = await readCsvPage(source, cursor as CsvCursor | null, pageSize);
        return { records: page.records, problems: page.problems, next: page.next as SourceCursor | null, watermark: null, removed: [] };
      } catch (error) {
        // A missing or unreadable file will not fix itself by retrying within this sync.
        if (error instanceof CsvSourceError) throw new PermanentError('SourceUnreadable', error.message);
        throw error;
      }
    case 'ldap': {
      const page = await readLdapPage(source, cursor as LdapCursor | null, pageSize, {
        watermark: (options.watermark as LdapWatermark | null) ?? null,
        heartbeat: options.heartbeat,
      });
      return { records: page.records, problems: page.problems, next: page.next as SourceCursor | null, watermark: page.watermark as SourceWatermark | null, removed: [] };
    }
    case 'entra': {
      const page = await readEntraPage(source, cursor as EntraCursor | null, pageSize, {
        watermark: (options.watermark as EntraWatermark | null) ?? null,
        heartbeat: options.heartbeat,
      });
      return { records: page.records, problems: page.problems, next: page.next as SourceCursor | null, watermark: page.watermark as SourceWatermark | null, removed: page.removed };
    }
  }
}

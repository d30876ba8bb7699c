import type { SourceConfig } from '../../domain/config/schema.js';
import { describe, matches } from '../../domain/criteria.js';
import type { SourceCursor, SourceProblem } from '../../domain/source.js';
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
  /**
   * Records the source holds but whose external id could not be read (a malformed CSV row, lines
   * lost to an unterminated quote, an entry without entryUUID). Non-zero makes the read incomplete:
   * someone missing from it may still be in the source, so it must never count as having left.
   */
  readonly unidentified: number;
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

/** A disabled or locked account: in the source, not imported (unless the source has `includeDisabled`). */
export interface DisabledRecord {
  readonly externalId: string;
  readonly at: string;
  /** What says so: the adapter's reason (`accountEnabled is false`) or the source's `disabledWhen`. */
  readonly why: string;
}

export interface MappedRecords {
  /** One per external id; when a page has an id twice, the later record wins. */
  readonly users: SourceUser[];
  /** Disabled or locked accounts, skipped: still in the source, so never deletions. */
  readonly disabled: DisabledRecord[];
  /** Records that could not be used (invalid, or a duplicate id), by where they are in the source. */
  readonly problems: SourceProblem[];
  /** External ids of invalid records that had one: still in the source, though unusable. */
  readonly unusableIds: string[];
  /** Invalid records whose external id could not be read either (see RecordPage.unidentified). */
  readonly unidentified: number;
}

/** The record's external id as read, if it can be read at all (for records that are not mapped). */
function readableId(record: RawRecord, idAttribute: string): string | undefined {
  if (record.undecodable?.includes(idAttribute)) return undefined;
  const raw = record.attributes[idAttribute];
  return (typeof raw === 'string' ? raw : raw?.[0])?.trim() || undefined;
}

/**
 * Maps a page's raw records onto users with the source's attribute map, as a sync and a preview
 * both do. Disabled accounts (marked by the adapter, or matching the source's `disabledWhen`) are
 * set apart unless the source has `includeDisabled`.
 */
export function mapRecords(source: SourceConfig, records: readonly RawRecord[]): MappedRecords {
  const attributeMap = effectiveAttributeMap(source);
  const idAttribute = externalIdAttribute(source);
  // Old configuration snapshots have no includeDisabled: they skip disabled accounts too.
  const includeDisabled = source.includeDisabled === true;
  const byId = new Map<string, { at: string; user: SourceUser } | { at: string; disabled: DisabledRecord }>();
  const problems: SourceProblem[] = [];
  const unusableIds: string[] = [];
  let unidentified = 0;
  const keep = (externalId: string, at: string, entry: { at: string; user: SourceUser } | { at: string; disabled: DisabledRecord }) => {
    // The earlier record is the one dropped: the problem points at it and names the one kept.
    const earlier = byId.get(externalId);
    if (earlier) {
      problems.push({ at: earlier.at, message: `duplicate external id "${externalId}": ${at} has the same id and wins; this record is skipped` });
      byId.delete(externalId);
    }
    byId.set(externalId, entry);
  };
  for (const record of records) {
    // An account the source itself calls disabled is skipped before validation: its data is not used.
    const skippedId = record.disabled !== undefined && !includeDisabled ? readableId(record, idAttribute) : undefined;
    if (skippedId !== undefined) {
      keep(skippedId, record.at, { at: record.at, disabled: { externalId: skippedId, at: record.at, why: record.disabled! } });
      continue;
    }
    let user: SourceUser;
    try {
      user = toSourceUser(record, attributeMap, idAttribute);
    } catch (error) {
      if (!(error instanceof InvalidRecord)) throw error;
      const id = readableId(record, idAttribute);
      if (id) unusableIds.push(id);
      else unidentified++;
      const [at, ...rest] = error.message.split(': ');
      problems.push({ at: at ?? record.at, message: rest.join(': ') });
      continue;
    }
    const why = includeDisabled || !source.disabledWhen || !matches(source.disabledWhen, user.user) ? undefined : `disabledWhen: ${describe(source.disabledWhen)}`;
    keep(user.externalId, record.at, why ? { at: record.at, disabled: { externalId: user.externalId, at: record.at, why } } : { at: record.at, user });
  }
  const users: SourceUser[] = [];
  const disabled: DisabledRecord[] = [];
  for (const entry of byId.values()) {
    if ('user' in entry) users.push(entry.user);
    else disabled.push(entry.disabled);
  }
  return { users, disabled, problems, unusableIds, unidentified };
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
        return {
          records: page.records,
          problems: page.problems,
          next: page.next as SourceCursor | null,
          watermark: null,
          removed: [],
          unidentified: page.unidentified,
        };
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
      return {
        records: page.records,
        problems: page.problems,
        next: page.next as SourceCursor | null,
        watermark: page.watermark as SourceWatermark | null,
        removed: [],
        // Each problem an LDAP page reports is an entry whose stable id could not be read.
        unidentified: page.problems.length,
      };
    }
    case 'entra': {
      const page = await readEntraPage(source, cursor as EntraCursor | null, pageSize, {
        watermark: (options.watermark as EntraWatermark | null) ?? null,
        heartbeat: options.heartbeat,
      });
      return {
        records: page.records,
        problems: page.problems,
        next: page.next as SourceCursor | null,
        watermark: page.watermark as SourceWatermark | null,
        removed: page.removed,
        // Each problem a Graph page reports is a user without an id.
        unidentified: page.problems.length,
      };
    }
  }
}

import { createHash } from 'node:crypto';
import { CANONICAL_ATTRIBUTES, isCanonicalAttribute, type AttributeValue, type CanonicalUser } from '../../domain/user.js';

/** A user as a source delivers it, before mapping: raw attribute names and values. */
export interface RawRecord {
  /** Where the record sits in the source, for error messages: `line 12`, a DN, an object id. */
  readonly at: string;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  /** LDAP sources: the local copy of the entry (`dn` and the textual attributes read; binary ones dropped). */
  readonly entry?: Readonly<Record<string, string | string[]>>;
  /** Set by the adapter when the account is disabled or locked at the source: why (`accountEnabled is false`). */
  readonly disabled?: string;
  /** CSV: columns whose bytes were not valid UTF-8 (Node decodes them to U+FFFD without a word). */
  readonly undecodable?: readonly string[];
}

export interface SourceUser {
  readonly externalId: string;
  readonly user: CanonicalUser;
  /** Hash of what was read: an unchanged record is recognised without comparing attributes. */
  readonly hash: string;
  /** Where the record sits in the source (`line 12`, a DN): for problems found after mapping. */
  readonly at: string;
  /** LDAP sources: the local copy of the entry, kept with the user (SPEC §2 step 2). */
  readonly entry?: Readonly<Record<string, string | string[]>>;
}

export class InvalidRecord extends Error {}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** A generous bound: beyond it a value is a broken export, not a name. */
const MAX_VALUE_LENGTH = 4096;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * What PostgreSQL cannot store in text or jsonb: NUL, and UTF-16 surrogates that are not part of a
 * pair (Graph's JSON may carry a lone `\ud800` escape). Either would fail the page's whole import.
 */
function unstorable(text: string): string | undefined {
  if (text.includes('\u0000')) return 'contains a NUL character';
  if (LONE_SURROGATE.test(text)) return 'contains a lone UTF-16 surrogate (not valid Unicode)';
  return undefined;
}

function single(value: AttributeValue): string | undefined {
  if (value === null || value === undefined) return undefined;
  const text = (typeof value === 'string' ? value : value[0])?.trim();
  return text === '' ? undefined : text;
}

/**
 * Maps a raw record onto canonical attributes with the source's attribute map; every raw attribute
 * stays available under `attributes.<name>`. Throws InvalidRecord naming what is wrong.
 */
export function toSourceUser(record: RawRecord, attributeMap: Readonly<Record<string, string>>, externalIdAttribute: string): SourceUser {
  const canonical: Partial<Record<string, string>> = {};
  const raw: Record<string, AttributeValue> = {};
  const undecodable = record.undecodable?.[0];
  if (undecodable !== undefined) throw new InvalidRecord(`${record.at}: column ${undecodable} is not valid UTF-8`);
  for (const [name, value] of Object.entries(record.attributes)) {
    const values = typeof value === 'string' ? [value] : (value ?? []);
    if (values.some((v) => v.length > MAX_VALUE_LENGTH)) {
      throw new InvalidRecord(`${record.at}: ${name} is longer than ${MAX_VALUE_LENGTH} characters`);
    }
    const nameFlaw = unstorable(name);
    if (nameFlaw) throw new InvalidRecord(`${record.at}: the attribute name ${JSON.stringify(name)} ${nameFlaw}`);
    for (const v of values) {
      const flaw = unstorable(v);
      if (flaw) throw new InvalidRecord(`${record.at}: ${name} ${flaw}`);
    }
    raw[name] = value;
    const target = attributeMap[name];
    if (target && isCanonicalAttribute(target)) {
      const text = single(value);
      if (text !== undefined) canonical[target] = text.normalize('NFC');
    } else if (target?.startsWith('attributes.')) {
      raw[target.slice('attributes.'.length)] = value;
    }
  }
  // The entry copy is stored too (jsonb): it holds a few attributes the record does not (the DN).
  for (const [name, value] of Object.entries(record.entry ?? {})) {
    for (const v of typeof value === 'string' ? [value] : value) {
      const flaw = unstorable(v);
      if (flaw) throw new InvalidRecord(`${record.at}: ${name} ${flaw}`);
    }
  }
  const externalId = single(record.attributes[externalIdAttribute]);
  if (!externalId) throw new InvalidRecord(`${record.at}: no ${externalIdAttribute} (the external id)`);
  if (canonical.email !== undefined && !EMAIL.test(canonical.email)) {
    throw new InvalidRecord(`${record.at}: "${canonical.email}" is not an email address`);
  }
  if (canonical.displayName === undefined && (canonical.firstName || canonical.lastName)) {
    canonical.displayName = [canonical.firstName, canonical.lastName].filter(Boolean).join(' ');
  }
  const ordered: Record<string, string> = {};
  for (const name of CANONICAL_ATTRIBUTES) if (canonical[name] !== undefined) ordered[name] = canonical[name]!;
  const user: CanonicalUser = { ...ordered, attributes: raw };
  const hash = createHash('sha256').update(JSON.stringify([externalId, user])).digest('base64url');
  return record.entry ? { externalId, user, hash, at: record.at, entry: record.entry } : { externalId, user, hash, at: record.at };
}

/**
 * Encodings of values that go to or come from an LDAP server: filter and DN escaping, Active
 * Directory GUIDs, generalized times and USNs. Pure functions, no I/O.
 */

/**
 * Escapes a value for use inside an RFC 4515 filter assertion, e.g. `(uid=${escapeFilterValue(v)})`.
 * `\`, `*`, `(`, `)` and NUL become `\5c`, `\2a`, `\28`, `\29` and `\00`: the value can then only
 * ever be compared as text, never widen the filter (`*)(uid=*` matches the literal string).
 *
 * Other characters, non-ASCII ones included, are left as they are and travel as UTF-8, which
 * RFC 4515 allows. (Escaping them byte by byte as `\c3\a9` would also be valid LDAP, but ldapts's
 * filter parser turns each `\xx` into one UTF-16 code unit and would re-encode the bytes wrongly.)
 */
export function escapeFilterValue(value: string): string {
  return value.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * Escapes a value for use as an attribute value in an RFC 4514 DN, e.g.
 * `uid=${escapeDnValue(v)},ou=people,dc=example,dc=com`: `, + " \ < > ; =` get a backslash, so do a
 * leading space or `#` and a trailing space; NUL becomes `\00`.
 */
export function escapeDnValue(value: string): string {
  const chars = [...value];
  return chars
    .map((c, i) => {
      if (c === '\0') return '\\00';
      if (',+"\\<>;='.includes(c)) return `\\${c}`;
      if (i === 0 && (c === ' ' || c === '#')) return `\\${c}`;
      if (i === chars.length - 1 && c === ' ') return '\\ ';
      return c;
    })
    .join('');
}

/**
 * Renders a 16-byte Active Directory objectGUID as the standard GUID string. The first three
 * groups (Data1 as 4 bytes, Data2 and Data3 as 2 bytes) are stored little-endian, the last 8 bytes
 * in order: the bytes `33 22 11 00 55 44 77 66 88 99 aa bb cc dd ee ff` are the GUID
 * `00112233-4455-6677-8899-aabbccddeeff`. Lower-case, without braces, like an entryUUID.
 */
export function formatObjectGuid(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError(`an objectGUID is 16 bytes, not ${bytes.length}`);
  const hex = (indexes: number[]) => indexes.map((i) => bytes[i]!.toString(16).padStart(2, '0')).join('');
  return [hex([3, 2, 1, 0]), hex([5, 4]), hex([7, 6]), hex([8, 9]), hex([10, 11, 12, 13, 14, 15])].join('-');
}

/**
 * The inverse of formatObjectGuid: the 16 bytes, in the order Active Directory stores and compares
 * them, of a GUID string (braces and case do not matter). Null when the text is not a GUID. A filter
 * matches an objectGUID by these bytes (in filter text, `\33\22\11\00…`).
 */
export function parseObjectGuid(guid: string): Buffer | null {
  const m = /^\{?([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\}?$/i.exec(guid.trim());
  if (!m) return null;
  const bytes = (hex: string) => Buffer.from(hex, 'hex');
  const [, data1, data2, data3, data4, data5] = m;
  return Buffer.concat([bytes(data1!).reverse(), bytes(data2!).reverse(), bytes(data3!).reverse(), bytes(data4!), bytes(data5!)]);
}

const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:[.,](\d+))?(Z|[+-]\d{2}(?:\d{2})?)$/;

/**
 * A generalized time (RFC 4517 §3.3.13: `YYYYMMDDHH[MM[SS]][.fraction](Z|±HH[MM])`, as in
 * modifyTimestamp `20250102030405Z` or AD's `20250102030405.0Z`) as nanoseconds since the epoch in
 * UTC, so that times with or without fractions and in any offset compare correctly. A fraction
 * belongs to the last unit given (seconds, minutes or hours). Null when the text is not one.
 */
export function generalizedTimeNanos(value: string): bigint | null {
  const m = GENERALIZED_TIME.exec(value.trim());
  if (!m) return null;
  const [, year, month, day, hour, minute, second, fraction, zone] = m;
  const millis = Date.UTC(Number(year), Number(month) - 1, Number(day), Number(hour), Number(minute ?? 0), Number(second ?? 0));
  if (Number.isNaN(millis)) return null;
  let nanos = BigInt(millis) * 1_000_000n;
  if (fraction) {
    const unit = second !== undefined ? 1_000_000_000n : minute !== undefined ? 60_000_000_000n : 3_600_000_000_000n;
    const digits = fraction.slice(0, 18);
    nanos += (BigInt(digits) * unit) / 10n ** BigInt(digits.length);
  }
  if (zone && zone !== 'Z') {
    const sign = zone.startsWith('-') ? -1n : 1n;
    const offsetMinutes = BigInt(Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5) || 0));
    nanos -= sign * offsetMinutes * 60_000_000_000n;
  }
  return nanos;
}

/** Orders two watermark values: generalized times by instant, USNs (decimal integers) numerically. */
export function compareWatermarkValues(kind: 'time' | 'usn', a: string, b: string): number {
  const key = (v: string) => (kind === 'usn' ? (/^\d+$/.test(v.trim()) ? BigInt(v.trim()) : null) : generalizedTimeNanos(v));
  const ka = key(a);
  const kb = key(b);
  if (ka === null || kb === null) return ka === kb ? 0 : ka === null ? -1 : 1;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

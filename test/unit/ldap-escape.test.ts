import fc from 'fast-check';
import { AndFilter, EqualityFilter, FilterParser } from 'ldapts';
import { describe, expect, it } from 'vitest';
import {
  compareWatermarkValues,
  escapeDnValue,
  escapeFilterValue,
  formatObjectGuid,
  generalizedTimeNanos,
} from '../../src/adapters/sources/ldap-escape.js';

const SPECIALS = ['*', '(', ')', '\\', '\0', ' ', '#', ',', '+', '"', '<', '>', ';', '=', 'é', '渡'];
/** Strings rich in the characters that matter to filters and DNs, plus any code point. */
const tricky = fc.string({
  unit: fc.oneof(fc.constantFrom(...SPECIALS), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })),
  maxLength: 20,
});

/** RFC 4514 §3 unescaping: `\XX` (hex pair) or `\` and the character itself. */
function unescapeDnValue(escaped: string): string {
  return escaped.replace(/\\([0-9a-fA-F]{2}|[\s\S])/g, (_, s: string) => (s.length === 2 ? String.fromCharCode(parseInt(s, 16)) : s));
}

describe('escapeFilterValue (RFC 4515)', () => {
  it('escapes the filter metacharacters and leaves the rest, non-ASCII included, as UTF-8 text', () => {
    expect(escapeFilterValue('*)(uid=*')).toBe('\\2a\\29\\28uid=\\2a');
    expect(escapeFilterValue('a\\b')).toBe('a\\5cb');
    expect(escapeFilterValue('nul\0')).toBe('nul\\00');
    expect(escapeFilterValue('Zoë Ångström 渡辺')).toBe('Zoë Ångström 渡辺');
    expect(escapeFilterValue('20250102030405Z')).toBe('20250102030405Z');
  });

  it('cannot widen a search: `*)(uid=*` stays one equality assertion on the literal text', () => {
    const filter = FilterParser.parseString(`(&(objectClass=person)(uid=${escapeFilterValue('*)(uid=*')}))`);
    expect(filter).toBeInstanceOf(AndFilter);
    const parts = (filter as AndFilter).filters;
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBeInstanceOf(EqualityFilter);
    expect((parts[1] as EqualityFilter).value).toBe('*)(uid=*');
    // Unescaped, the same text would have been a wildcard.
    expect(() => FilterParser.parseString('(&(objectClass=person)(uid=*)(uid=*))')).not.toThrow();
  });

  it('round-trips any value through a filter as one equality assertion', () => {
    fc.assert(
      fc.property(tricky, (value) => {
        const filter = FilterParser.parseString(`(&(objectClass=person)(uid=${escapeFilterValue(value)}))`) as AndFilter;
        expect(filter.filters).toHaveLength(2);
        expect(filter.filters[1]).toBeInstanceOf(EqualityFilter);
        expect((filter.filters[1] as EqualityFilter).value).toBe(value);
      }),
    );
  });
});

describe('escapeDnValue (RFC 4514)', () => {
  it('escapes the special characters, a leading space or #, a trailing space and NUL', () => {
    expect(escapeDnValue("O'Brien, Jr.")).toBe("O'Brien\\, Jr.");
    expect(escapeDnValue('a+b"c\\d<e>f;g=h')).toBe('a\\+b\\"c\\\\d\\<e\\>f\\;g\\=h');
    expect(escapeDnValue('#1 fan')).toBe('\\#1 fan');
    expect(escapeDnValue(' lead and trail ')).toBe('\\ lead and trail\\ ');
    expect(escapeDnValue(' ')).toBe('\\ ');
    expect(escapeDnValue('in # the middle')).toBe('in # the middle');
    expect(escapeDnValue('nul\0')).toBe('nul\\00');
    expect(escapeDnValue('Zoë 渡辺')).toBe('Zoë 渡辺');
  });

  it('round-trips any value and leaves nothing that would end or split the RDN', () => {
    fc.assert(
      fc.property(tricky, (value) => {
        const escaped = escapeDnValue(value);
        expect(unescapeDnValue(escaped)).toBe(value);
        const bare = escaped.replace(/\\([0-9a-fA-F]{2}|[\s\S])/g, 'x');
        expect(bare).not.toMatch(/[,+"\\<>;=\0]/);
        expect(bare).not.toMatch(/^[ #]|[ ]$/);
      }),
    );
  });
});

describe('formatObjectGuid', () => {
  it('reads the first three groups little-endian (Microsoft GUID layout)', () => {
    // 00112233-4455-6677-8899-aabbccddeeff is stored as 33 22 11 00 55 44 77 66 88 99 aa bb cc dd ee ff.
    const bytes = Buffer.from('33221100554477668899aabbccddeeff', 'hex');
    expect(formatObjectGuid(bytes)).toBe('00112233-4455-6677-8899-aabbccddeeff');
    // {00010203-0405-0607-0809-0a0b0c0d0e0f} is stored as 03 02 01 00 05 04 07 06 08 09 0a 0b 0c 0d 0e 0f.
    expect(formatObjectGuid(Buffer.from('030201000504070608090a0b0c0d0e0f', 'hex'))).toBe('00010203-0405-0607-0809-0a0b0c0d0e0f');
  });
  it('rejects anything but 16 bytes', () => {
    expect(() => formatObjectGuid(Buffer.alloc(15))).toThrow(/16 bytes/);
  });
});

describe('watermark values', () => {
  it('reads generalized times with or without fractions and offsets as instants', () => {
    expect(generalizedTimeNanos('20250102030405Z')).toBe(BigInt(Date.UTC(2025, 0, 2, 3, 4, 5)) * 1_000_000n);
    expect(generalizedTimeNanos('20250102030405.0Z')).toBe(generalizedTimeNanos('20250102030405Z'));
    expect(generalizedTimeNanos('20250102050405+0200')).toBe(generalizedTimeNanos('20250102030405Z'));
    expect(generalizedTimeNanos('202501020304Z')).toBe(generalizedTimeNanos('20250102030400Z'));
    expect(generalizedTimeNanos('2025010203.5Z')).toBe(generalizedTimeNanos('20250102033000Z'));
    expect(generalizedTimeNanos('yesterday')).toBeNull();
  });
  it('orders times by instant and USNs as integers, not as strings', () => {
    expect(compareWatermarkValues('time', '20250102030405Z', '20250102030405.5Z')).toBe(-1);
    expect(compareWatermarkValues('time', '20250102030405.0Z', '20250102030405Z')).toBe(0);
    expect(compareWatermarkValues('time', '20250102040405+0100', '20250102030404Z')).toBe(1);
    expect(compareWatermarkValues('time', '20251231235959Z', '20260101000000Z')).toBe(-1);
    expect(compareWatermarkValues('usn', '9', '10')).toBe(-1);
    expect(compareWatermarkValues('usn', '123456789012345678901', '123456789012345678900')).toBe(1);
  });
});

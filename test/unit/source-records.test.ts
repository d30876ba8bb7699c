import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { mapRecords } from '../../src/adapters/sources/index.js';
import { InvalidRecord, toSourceUser, type RawRecord } from '../../src/adapters/sources/records.js';
import { validateConfigText } from '../../src/domain/config/document.js';
import { customerParts, type SourceConfig } from '../../src/domain/config/schema.js';
import { formatPath } from '../../src/domain/config/validate.js';

/*
 * From raw records to users, as a sync and a preview both map them: what PostgreSQL could not
 * store is refused per record, disabled accounts are set apart, duplicates name the record dropped.
 */

const csvSource = (extra: Record<string, unknown> = {}): SourceConfig =>
  customerParts.sources.parse({ name: 'hr', type: 'csv', userType: 'csv', path: 'hr.csv', externalId: 'id', attributeMap: { mail: 'email', name: 'displayName' }, ...extra });

const row = (line: number, attributes: Record<string, string>, extra: Partial<RawRecord> = {}): RawRecord => ({ at: `line ${line}`, attributes, ...extra });

function refusal(record: RawRecord): string {
  try {
    toSourceUser(record, { mail: 'email', name: 'displayName' }, 'id');
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidRecord);
    return (error as Error).message;
  }
  throw new Error('expected the record to be refused');
}

describe('records PostgreSQL cannot store', () => {
  it('refuses a NUL anywhere, naming the record and the attribute', () => {
    expect(refusal(row(5, { id: 'A4', name: 'Nul\u0000Byte' }))).toBe('line 5: name contains a NUL character');
    expect(refusal(row(6, { id: 'A5', 'bad\u0000name': 'x' }))).toBe('line 6: the attribute name "bad\\u0000name" contains a NUL character');
    // Multi-valued attributes (LDAP) and the LDAP entry copy are stored too.
    expect(refusal({ at: 'uid=x', attributes: { id: 'x', memberOf: ['a', 'b\u0000'] } })).toBe('uid=x: memberOf contains a NUL character');
    expect(refusal({ at: 'uid=x', attributes: { id: 'x' }, entry: { dn: 'uid=x', description: 'a\u0000b' } })).toBe('uid=x: description contains a NUL character');
  });

  it('refuses a lone UTF-16 surrogate, and accepts a pair', () => {
    expect(refusal(row(2, { id: 'A1', name: 'Broken \ud800 name' }))).toBe('line 2: name contains a lone UTF-16 surrogate (not valid Unicode)');
    expect(refusal(row(2, { id: 'A1', name: 'trailing \udc00' }))).toBe('line 2: name contains a lone UTF-16 surrogate (not valid Unicode)');
    expect(refusal(row(2, { id: 'A1', name: 'reversed \udc00\ud800' }))).toMatch(/lone UTF-16 surrogate/);
    expect(refusal(row(2, { id: 'A1', name: 'ends \ud83d' }))).toMatch(/lone UTF-16 surrogate/);
    expect(toSourceUser(row(2, { id: 'A1', name: 'Ann 😀 𝒜' }), { name: 'displayName' }, 'id').user.displayName).toBe('Ann 😀 𝒜');
  });

  it('refuses a CSV column the adapter could not decode as UTF-8', () => {
    expect(refusal(row(3, { id: 'A2', name: 'Ren\uFFFDe' }, { undecodable: ['name'] }))).toBe('line 3: column name is not valid UTF-8');
  });
});

describe('mapping a page', () => {
  it('names the record dropped for a duplicate id, and the line that wins', () => {
    const mapped = mapRecords(csvSource(), [
      row(13, { id: 'A12', name: 'Twelve' }),
      row(14, { id: 'A17', name: 'First' }),
      row(15, { id: 'A14', name: 'Fourteen' }),
      row(16, { id: 'A17', name: 'Second' }),
    ]);
    expect(mapped.problems).toEqual([{ at: 'line 14', message: 'duplicate external id "A17": line 16 has the same id and wins; this record is skipped' }]);
    expect(mapped.users.map((u) => [u.externalId, u.at, u.user.displayName])).toEqual([
      ['A12', 'line 13', 'Twelve'],
      ['A14', 'line 15', 'Fourteen'],
      ['A17', 'line 16', 'Second'],
    ]);
  });

  it('sets apart accounts the adapter marks disabled, before validating them, unless includeDisabled', () => {
    const records = [
      row(2, { id: 'A1', mail: 'a1@example.com' }),
      // A disabled account's data is not used, so its bad email is no problem.
      row(3, { id: 'A2', mail: 'not an email' }, { disabled: 'accountEnabled is false' }),
    ];
    const mapped = mapRecords(csvSource(), records);
    expect(mapped.users.map((u) => u.externalId)).toEqual(['A1']);
    expect(mapped.disabled).toEqual([{ externalId: 'A2', at: 'line 3', why: 'accountEnabled is false' }]);
    expect(mapped.problems).toEqual([]);
    // Imported after all: then it is validated like any other.
    const included = mapRecords(csvSource({ includeDisabled: true }), records);
    expect(included.disabled).toEqual([]);
    expect(included.problems).toEqual([{ at: 'line 3', message: '"not an email" is not an email address' }]);
  });

  it('applies disabledWhen to the mapped user, on top of what the adapter says', () => {
    const source = csvSource({ disabledWhen: { attribute: 'attributes.status', op: 'in', values: ['inactive', 'terminated'] } });
    const mapped = mapRecords(source, [
      row(2, { id: 'E1', status: 'active' }),
      row(3, { id: 'E2', status: 'Inactive' }),
      row(4, { id: 'E3', status: 'TERMINATED' }),
      row(5, { id: 'E4', status: 'active' }, { disabled: 'locked: pwdAccountLockedTime 000001010000Z' }),
    ]);
    expect(mapped.users.map((u) => u.externalId)).toEqual(['E1']);
    expect(mapped.disabled.map((d) => [d.externalId, d.why])).toEqual([
      ['E2', 'disabledWhen: attributes.status in ["inactive", "terminated"]'],
      ['E3', 'disabledWhen: attributes.status in ["inactive", "terminated"]'],
      ['E4', 'locked: pwdAccountLockedTime 000001010000Z'],
    ]);
    expect(mapRecords(csvSource({ ...source, includeDisabled: true }), [row(3, { id: 'E2', status: 'Inactive' })]).users).toHaveLength(1);
  });

  it('counts the records it cannot identify: without an id, or with an id that is not valid UTF-8', () => {
    const mapped = mapRecords(csvSource(), [
      row(2, { id: '', name: 'No Id' }),
      row(3, { id: 'A\uFFFD', name: 'Bad Id' }, { undecodable: ['id'] }),
      row(4, { id: 'A4', name: 'Bad\u0000Name' }),
    ]);
    expect(mapped.unidentified).toBe(2);
    // Still in the source under its id, though unusable: never a deletion.
    expect(mapped.unusableIds).toEqual(['A4']);
  });

  it('reads configuration of an older snapshot (no includeDisabled) as skipping disabled accounts', () => {
    const { includeDisabled: _omitted, ...old } = csvSource();
    const mapped = mapRecords(old as SourceConfig, [row(2, { id: 'A1' }, { disabled: 'accountEnabled is false' })]);
    expect(mapped.disabled).toHaveLength(1);
  });
});

describe('configuration: includeDisabled and disabledWhen', () => {
  const document = (source: Record<string, unknown>) =>
    stringify({ version: 1, customers: [{ name: 'acme', sources: [{ name: 'hr', type: 'csv', userType: 'csv', path: 'hr.csv', externalId: 'id', ...source }] }] });

  it('defaults to skipping disabled accounts, with no disabledWhen', () => {
    const result = validateConfigText(document({}));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.config.customers[0]!.sources[0]).toMatchObject({ includeDisabled: false });
    if (result.ok) expect(result.config.customers[0]!.sources[0]).not.toHaveProperty('disabledWhen');
  });

  it('checks disabledWhen as criteria are checked: operators, attributes, regular expressions', () => {
    const problems = (source: Record<string, unknown>) => {
      const result = validateConfigText(document(source));
      return result.ok ? [] : result.problems.map((p) => `${formatPath(p.path)}: ${p.message}`);
    };
    expect(problems({ disabledWhen: { attribute: 'attributes.status', op: 'equals', value: 'inactive' }, includeDisabled: true })).toEqual([]);
    expect(problems({ disabledWhen: { attribute: 'attributes.status', op: 'is', value: 'inactive' } })).toEqual([
      expect.stringMatching(/^customers\[0\]\.sources\[0\]\.disabledWhen\.op: unknown operator "is"/),
    ]);
    expect(problems({ disabledWhen: { attribute: 'attributes.status', op: 'regex', value: '(a+)+$' } })).toEqual([
      expect.stringMatching(/^customers\[0\]\.sources\[0\]\.disabledWhen\.value: regular expression is prone to catastrophic backtracking/),
    ]);
    expect(problems({ includeDisabled: 'yes' })).toEqual([expect.stringMatching(/^customers\[0\]\.sources\[0\]\.includeDisabled: /)]);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { explain, formatExplanation, matches, REGEX_INPUT_LIMIT, type Condition } from '../../src/domain/criteria.js';
import type { CanonicalUser } from '../../src/domain/user.js';

const joe: CanonicalUser = {
  username: 'jadams',
  firstName: 'Joe',
  city: 'Chicago',
  department: 'Engineering',
  title: 'Senior Engineer',
  email: '',
  attributes: { extensionAttribute3: 'VIP', memberOf: ['cn=Staff', 'cn=Voice Users'], empty: [] },
};

const leaf = (attribute: string, op: string, value?: string | string[]): Condition =>
  (op === 'in'
    ? { attribute, op, values: value }
    : value === undefined
      ? { attribute, op }
      : { attribute, op, value }) as Condition;

describe('operators', () => {
  it.each([
    ['equals', 'city', 'chicago', true],
    ['equals', 'city', 'Chicag', false],
    ['equalsExactly', 'city', 'Chicago', true],
    ['equalsExactly', 'city', 'chicago', false],
    ['contains', 'title', 'ENGINEER', true],
    ['contains', 'title', 'manager', false],
    ['containsExactly', 'title', 'Engineer', true],
    ['containsExactly', 'title', 'engineer', false],
    ['startsWith', 'title', 'senior', true],
    ['startsWith', 'title', 'engineer', false],
    ['endsWith', 'title', 'ENGINEER', true],
    ['endsWith', 'title', 'senior', false],
    ['regex', 'city', '^Chi', true],
    ['regex', 'city', '^chi', false],
    ['in', 'department', ['sales', 'engineering'], true],
    ['in', 'department', ['sales', 'support'], false],
    ['isEmpty', 'email', undefined, true],
    ['isEmpty', 'city', undefined, false],
    ['exists', 'city', undefined, true],
    ['exists', 'email', undefined, true],
  ] as const)('%s on %s with %j → %s', (op, attribute, value, expected) => {
    expect(matches(leaf(attribute, op, value as string | string[] | undefined), joe)).toBe(expected);
  });

  it('applies regex flags and always the u flag', () => {
    expect(matches({ attribute: 'city', op: 'regex', value: '^chi', flags: 'i' }, joe)).toBe(true);
    expect(matches({ attribute: 'firstName', op: 'regex', value: '^\\p{Lu}' }, joe)).toBe(true);
  });

  it('does not run a regex over values longer than the input limit', () => {
    const long = { city: 'a'.repeat(REGEX_INPUT_LIMIT + 1) };
    const condition: Condition = { attribute: 'city', op: 'regex', value: 'a' };
    expect(matches(condition, long)).toBe(false);
    expect(explain(condition, long).reason).toMatch(/longer than/);
  });
});

describe('missing attributes', () => {
  it.each(['equals', 'equalsExactly', 'contains', 'containsExactly', 'startsWith', 'endsWith', 'regex'] as const)(
    '%s on a missing attribute is false, even against an empty value',
    (op) => {
      expect(matches(leaf('state', op, ''), joe)).toBe(false);
      expect(matches(leaf('attributes.nothing', op, '.*'), joe)).toBe(false);
    },
  );
  it('in on a missing attribute is false', () => expect(matches(leaf('state', 'in', ['']), joe)).toBe(false));
  it('isEmpty on a missing attribute is true, exists false', () => {
    expect(matches(leaf('state', 'isEmpty'), joe)).toBe(true);
    expect(matches(leaf('state', 'exists'), joe)).toBe(false);
    expect(matches(leaf('attributes.nothing', 'exists'), joe)).toBe(false);
  });
  it('null counts as missing', () => {
    const user: CanonicalUser = { attributes: { manager: null } };
    expect(matches(leaf('attributes.manager', 'exists'), user)).toBe(false);
    expect(matches(leaf('attributes.manager', 'isEmpty'), user)).toBe(true);
  });
  it('whitespace-only and empty lists are empty', () => {
    expect(matches(leaf('city', 'isEmpty'), { city: '  ' })).toBe(true);
    expect(matches(leaf('attributes.empty', 'isEmpty'), joe)).toBe(true);
    expect(matches(leaf('attributes.empty', 'exists'), joe)).toBe(false);
  });
});

describe('raw and multi-valued attributes', () => {
  it('reads attributes.<name>, falling back to a case-insensitive name', () => {
    expect(matches(leaf('attributes.extensionAttribute3', 'equals', 'vip'), joe)).toBe(true);
    expect(matches(leaf('attributes.EXTENSIONATTRIBUTE3', 'equals', 'vip'), joe)).toBe(true);
  });
  it('holds when any value of a multi-valued attribute satisfies the condition', () => {
    expect(matches(leaf('attributes.memberOf', 'equals', 'cn=voice users'), joe)).toBe(true);
    expect(matches(leaf('attributes.memberOf', 'equals', 'cn=admins'), joe)).toBe(false);
    expect(matches({ not: leaf('attributes.memberOf', 'equals', 'cn=admins') }, joe)).toBe(true);
  });
});

describe('Unicode', () => {
  it('folds case beyond ASCII', () => {
    expect(matches(leaf('city', 'equals', 'MÜNCHEN'), { city: 'München' })).toBe(true);
    expect(matches(leaf('city', 'equals', 'STRASSE'), { city: 'Straße' })).toBe(true);
    expect(matches(leaf('city', 'equals', 'ΑΘΗΝΑ'), { city: 'Αθηνα' })).toBe(true);
  });
  it('compares composed and decomposed forms as equal', () => {
    const composed = 'Jos\u00e9';
    const decomposed = 'Jose\u0301';
    expect(matches(leaf('firstName', 'equalsExactly', composed), { firstName: decomposed })).toBe(true);
    expect(matches(leaf('firstName', 'equals', composed.toUpperCase()), { firstName: decomposed })).toBe(true);
    expect(matches(leaf('firstName', 'containsExactly', 'é'), { firstName: decomposed })).toBe(true);
  });
  it('keeps exact operators case-sensitive for non-ASCII letters', () => {
    expect(matches(leaf('city', 'equalsExactly', 'MÜNCHEN'), { city: 'München' })).toBe(false);
  });
});

describe('combinators', () => {
  const yes = leaf('city', 'equals', 'chicago');
  const no = leaf('city', 'equals', 'dallas');
  it('all / any / not', () => {
    expect(matches({ all: [yes, yes] }, joe)).toBe(true);
    expect(matches({ all: [yes, no] }, joe)).toBe(false);
    expect(matches({ any: [no, yes] }, joe)).toBe(true);
    expect(matches({ any: [no, no] }, joe)).toBe(false);
    expect(matches({ not: no }, joe)).toBe(true);
  });
  it('empty all is true, empty any is false', () => {
    expect(matches({ all: [] }, joe)).toBe(true);
    expect(matches({ any: [] }, joe)).toBe(false);
  });
  it('expresses the reference system\'s left-to-right "A AND B OR C" as any[all[A,B], C]', () => {
    const condition: Condition = { any: [{ all: [yes, no] }, leaf('department', 'equals', 'engineering')] };
    expect(matches(condition, joe)).toBe(true);
  });
});

describe('explain', () => {
  it('reports every part, what it concluded and the values it saw', () => {
    const condition: Condition = {
      all: [leaf('city', 'equals', 'Chicago'), { not: leaf('title', 'contains', 'intern') }, leaf('state', 'equals', 'IL')],
    };
    const explanation = explain(condition, joe);
    expect(explanation.held).toBe(false);
    expect(explanation.parts).toHaveLength(3);
    expect(explanation.parts?.[0]).toMatchObject({ held: true, seen: 'Chicago', condition: 'city equals "Chicago"' });
    expect(explanation.parts?.[1]).toMatchObject({ held: true, parts: [{ held: false, seen: 'Senior Engineer' }] });
    expect(explanation.parts?.[2]).toMatchObject({ held: false, seen: null, reason: 'state is missing' });
    const text = formatExplanation(explanation);
    expect(text).toContain('✗ all of 3');
    expect(text).toContain('✓ city equals "Chicago" (seen: "Chicago")');
    expect(text).toContain('state is missing');
  });
});

// Property-based invariants over random users and random condition trees.
const attributeNames = ['city', 'department', 'title', 'state', 'attributes.tag'] as const;
const valueArb = fc.oneof(fc.constantFrom('Chicago', 'chicago', 'Dallas', 'Engineering', '', 'ß', 'SS'), fc.string({ maxLength: 6 }));
const userArb: fc.Arbitrary<CanonicalUser> = fc.record(
  {
    city: valueArb,
    department: valueArb,
    title: valueArb,
    attributes: fc.record({ tag: fc.oneof(valueArb, fc.array(valueArb, { maxLength: 3 })) }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);
const leafArb: fc.Arbitrary<Condition> = fc.oneof(
  fc.record({
    attribute: fc.constantFrom(...attributeNames),
    op: fc.constantFrom('equals', 'equalsExactly', 'contains', 'containsExactly', 'startsWith', 'endsWith' as const),
    value: valueArb,
  }),
  fc.record({ attribute: fc.constantFrom(...attributeNames), op: fc.constant('in' as const), values: fc.array(valueArb, { minLength: 1, maxLength: 3 }) }),
  fc.record({ attribute: fc.constantFrom(...attributeNames), op: fc.constantFrom('isEmpty', 'exists' as const) }),
) as fc.Arbitrary<Condition>;
const { condition: conditionArb } = fc.letrec<{ condition: Condition }>((tie) => ({
  condition: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafArb,
    fc.record({ all: fc.array(tie('condition'), { maxLength: 3 }) }),
    fc.record({ any: fc.array(tie('condition'), { maxLength: 3 }) }),
    fc.record({ not: tie('condition') }),
  ),
}));

describe('invariants', () => {
  it('not(not c) ≡ c', () => {
    fc.assert(fc.property(conditionArb, userArb, (c, u) => matches({ not: { not: c } }, u) === matches(c, u)));
  });
  it('the order of all/any parts does not change the result', () => {
    fc.assert(
      fc.property(fc.array(conditionArb, { maxLength: 4 }), userArb, (parts, u) => {
        const reversed = [...parts].reverse();
        return matches({ all: parts }, u) === matches({ all: reversed }, u) && matches({ any: parts }, u) === matches({ any: reversed }, u);
      }),
    );
  });
  it('De Morgan: not(all[a,b]) ≡ any[not a, not b]', () => {
    fc.assert(
      fc.property(conditionArb, conditionArb, userArb, (a, b, u) => matches({ not: { all: [a, b] } }, u) === matches({ any: [{ not: a }, { not: b }] }, u)),
    );
  });
  it('isEmpty and exists never both fail; equals implies contains, startsWith and endsWith', () => {
    fc.assert(
      fc.property(fc.constantFrom(...attributeNames), valueArb, userArb, (attribute, value, u) => {
        const empty = matches({ attribute, op: 'isEmpty' }, u);
        const exists = matches({ attribute, op: 'exists' }, u);
        if (!empty && !exists) return false;
        if (!matches({ attribute, op: 'equals', value }, u)) return true;
        return ['contains', 'startsWith', 'endsWith'].every((op) => matches({ attribute, op, value } as Condition, u));
      }),
    );
  });
  it('explain agrees with matches and is deterministic', () => {
    fc.assert(
      fc.property(conditionArb, userArb, (c, u) => {
        const first = explain(c, u);
        return first.held === matches(c, u) && JSON.stringify(first) === JSON.stringify(explain(c, u));
      }),
    );
  });
});

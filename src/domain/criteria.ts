import { readAttribute, type AttributeValue, type CanonicalUser } from './user.js';

/** Operators that compare an attribute with one string value. */
export const VALUE_OPERATORS = [
  'equals',
  'equalsExactly',
  'contains',
  'containsExactly',
  'startsWith',
  'endsWith',
  'regex',
] as const;
export const LIST_OPERATORS = ['in'] as const;
export const PRESENCE_OPERATORS = ['isEmpty', 'exists'] as const;
export const OPERATORS = [...VALUE_OPERATORS, ...LIST_OPERATORS, ...PRESENCE_OPERATORS] as const;

export type ValueOperator = (typeof VALUE_OPERATORS)[number];
export type Operator = (typeof OPERATORS)[number];

export type ValueCondition = {
  readonly attribute: string;
  readonly op: ValueOperator;
  readonly value: string;
  /** For `regex` only: extra flags (`i`, `m`, `s`); `u` is always on. */
  readonly flags?: string;
};
export type ListCondition = { readonly attribute: string; readonly op: 'in'; readonly values: readonly string[] };
export type PresenceCondition = { readonly attribute: string; readonly op: 'isEmpty' | 'exists' };
export type LeafCondition = ValueCondition | ListCondition | PresenceCondition;

export type Condition =
  | LeafCondition
  | { readonly all: readonly Condition[] }
  | { readonly any: readonly Condition[] }
  | { readonly not: Condition };

/** What one condition concluded, and why: the values it saw and what its parts concluded. */
export interface Explanation {
  readonly held: boolean;
  readonly condition: string;
  readonly seen?: AttributeValue;
  readonly reason?: string;
  readonly parts?: readonly Explanation[];
}

/** Regex inputs longer than this do not match: a bound on the work one evaluation can do. */
export const REGEX_INPUT_LIMIT = 1024;

/**
 * Unicode-aware case folding: NFC first so composed and decomposed forms compare equal, then
 * upper-then-lower so that e.g. "ß" and "SS" fold to the same string.
 */
export function fold(value: string): string {
  return value.normalize('NFC').toUpperCase().toLowerCase();
}

const regexCache = new Map<string, RegExp>();

/** Criteria regexes always use the `u` flag; `flags` in configuration may add `i`, `m` or `s`. */
export function compileCriteriaRegex(pattern: string, flags = ''): RegExp {
  const key = `${flags}/${pattern}`;
  let compiled = regexCache.get(key);
  if (!compiled) {
    compiled = new RegExp(pattern, `u${flags}`);
    regexCache.set(key, compiled);
  }
  return compiled;
}

function valuesOf(seen: AttributeValue): readonly string[] {
  if (seen === null || seen === undefined) return [];
  return typeof seen === 'string' ? [seen] : seen;
}

function isBlank(value: string): boolean {
  return value.trim() === '';
}

function testValue(op: ValueOperator, actual: string, expected: string, flags?: string): boolean {
  switch (op) {
    case 'equals':
      return fold(actual) === fold(expected);
    case 'equalsExactly':
      return actual.normalize('NFC') === expected.normalize('NFC');
    case 'contains':
      return fold(actual).includes(fold(expected));
    case 'containsExactly':
      return actual.normalize('NFC').includes(expected.normalize('NFC'));
    case 'startsWith':
      return fold(actual).startsWith(fold(expected));
    case 'endsWith':
      return fold(actual).endsWith(fold(expected));
    case 'regex':
      return actual.length <= REGEX_INPUT_LIMIT && compileCriteriaRegex(expected, flags).test(actual.normalize('NFC'));
  }
}

export function isLeaf(condition: Condition): condition is LeafCondition {
  return 'attribute' in condition;
}

export function describe(condition: Condition): string {
  if ('all' in condition) return `all of ${condition.all.length}`;
  if ('any' in condition) return `any of ${condition.any.length}`;
  if ('not' in condition) return `not (${describe(condition.not)})`;
  switch (condition.op) {
    case 'in':
      return `${condition.attribute} in [${condition.values.map((v) => JSON.stringify(v)).join(', ')}]`;
    case 'isEmpty':
    case 'exists':
      return `${condition.attribute} ${condition.op}`;
    default:
      return `${condition.attribute} ${condition.op} ${JSON.stringify(condition.value)}`;
  }
}

function evaluateLeaf(condition: LeafCondition, seen: AttributeValue): boolean {
  const values = valuesOf(seen);
  switch (condition.op) {
    case 'exists':
      return values.length > 0 || seen === '';
    case 'isEmpty':
      return values.every(isBlank);
    case 'in': {
      const wanted = new Set(condition.values.map(fold));
      return values.some((v) => wanted.has(fold(v)));
    }
    default: {
      // A multi-valued attribute (LDAP) satisfies a condition when any one of its values does.
      return values.some((v) => testValue(condition.op, v, condition.value, condition.flags));
    }
  }
}

/** Whether `user` satisfies `condition`. Pure, deterministic, short-circuiting. */
export function matches(condition: Condition, user: CanonicalUser): boolean {
  if ('all' in condition) return condition.all.every((c) => matches(c, user));
  if ('any' in condition) return condition.any.some((c) => matches(c, user));
  if ('not' in condition) return !matches(condition.not, user);
  return evaluateLeaf(condition, readAttribute(user, condition.attribute));
}

/** Like `matches`, but evaluates every part and reports what each concluded and the values seen. */
export function explain(condition: Condition, user: CanonicalUser): Explanation {
  if ('all' in condition || 'any' in condition) {
    const parts = ('all' in condition ? condition.all : condition.any).map((c) => explain(c, user));
    const held = 'all' in condition ? parts.every((p) => p.held) : parts.some((p) => p.held);
    return { held, condition: describe(condition), parts };
  }
  if ('not' in condition) {
    const inner = explain(condition.not, user);
    return { held: !inner.held, condition: describe(condition), parts: [inner] };
  }
  const seen = readAttribute(user, condition.attribute);
  const held = evaluateLeaf(condition, seen);
  const missing = seen === undefined || seen === null;
  const tooLong =
    condition.op === 'regex' && valuesOf(seen).some((v) => v.length > REGEX_INPUT_LIMIT)
      ? `values longer than ${REGEX_INPUT_LIMIT} characters are not matched by regex`
      : undefined;
  const reason = missing ? `${condition.attribute} is missing` : tooLong;
  return { held, condition: describe(condition), seen: missing ? null : seen, ...(reason ? { reason } : {}) };
}

/** Renders an explanation as indented lines, for the CLI and the transaction log. */
export function formatExplanation(explanation: Explanation, indent = ''): string {
  const mark = explanation.held ? '✓' : '✗';
  const seen = explanation.seen === undefined ? '' : ` (seen: ${JSON.stringify(explanation.seen)})`;
  const reason = explanation.reason ? ` — ${explanation.reason}` : '';
  const head = `${indent}${mark} ${explanation.condition}${seen}${reason}`;
  const parts = (explanation.parts ?? []).map((p) => formatExplanation(p, `${indent}  `));
  return [head, ...parts].join('\n');
}

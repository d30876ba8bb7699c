/** Numbers are E.164 (`+13125550100`) or internal extensions (`4100`). */
export const E164 = /^\+[1-9]\d{1,14}$/;
export const EXTENSION = /^\d{1,15}$/;

/** The most numbers one range may hold: ranges are expanded into inventory rows on apply. */
export const MAX_RANGE_SIZE = 100_000;

export interface NumberRange {
  readonly from: string;
  readonly to: string;
}

export function numberKind(number: string): 'e164' | 'extension' | null {
  if (E164.test(number)) return 'e164';
  if (EXTENSION.test(number)) return 'extension';
  return null;
}

/** Problems with one range on its own; empty when it is well formed. */
export function rangeProblems(range: NumberRange): string[] {
  const fromKind = numberKind(range.from);
  const toKind = numberKind(range.to);
  const problems: string[] = [];
  if (!fromKind) problems.push(`from: "${range.from}" is neither an E.164 number (+13125550100) nor an extension (4100)`);
  if (!toKind) problems.push(`to: "${range.to}" is neither an E.164 number (+13125550100) nor an extension (4100)`);
  if (problems.length > 0) return problems;
  if (fromKind !== toKind || range.from.length !== range.to.length) {
    return [`"${range.from}" and "${range.to}" must be of the same kind and length`];
  }
  const size = rangeSize(range);
  if (size < 1n) return [`range ends ("${range.to}") before it starts ("${range.from}")`];
  if (size > BigInt(MAX_RANGE_SIZE)) return [`range "${range.from}"-"${range.to}" holds ${size} numbers; at most ${MAX_RANGE_SIZE} per range`];
  return [];
}

function digits(number: string): bigint {
  return BigInt(number.startsWith('+') ? number.slice(1) : number);
}

export function rangeSize(range: NumberRange): bigint {
  return digits(range.to) - digits(range.from) + 1n;
}

/** Every number of a well-formed range, in ascending order, keeping its prefix and leading zeros. */
export function* expandRange(range: NumberRange): Generator<string> {
  const prefix = range.from.startsWith('+') ? '+' : '';
  const width = range.from.length - prefix.length;
  for (let n = digits(range.from); n <= digits(range.to); n++) {
    yield prefix + n.toString().padStart(width, '0');
  }
}

/** Two well-formed ranges share a number only when they are of one kind and length and intersect. */
export function rangesOverlap(a: NumberRange, b: NumberRange): boolean {
  if (a.from.length !== b.from.length || numberKind(a.from) !== numberKind(b.from)) return false;
  return digits(a.from) <= digits(b.to) && digits(b.from) <= digits(a.to);
}

/** Orders numbers the way "lowest available" reads: shorter first, then by digits. */
export function compareNumbers(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** A number a user holds, and the pool it belongs to (a site's, or null: the customer's). */
export interface HeldNumber {
  readonly number: string;
  readonly siteId: number | null;
}

/**
 * The line a user keeps when their profile draws from the pool of `poolSiteId` (null: the
 * customer's): the one they hold from that pool, else, with keep-existing and a site pool, the one
 * they hold from another site's pool; null when a new one must be taken. `held` in dialling order.
 */
export function keptLine(held: readonly HeldNumber[], poolSiteId: number | null, keepExisting: boolean): string | null {
  const inPool = held.find((h) => h.siteId === poolSiteId);
  if (inPool) return inPool.number;
  if (keepExisting && poolSiteId !== null) return held.find((h) => h.siteId !== null)?.number ?? null;
  return null;
}

/** Why a user waits, blocked, for a number (`site chicago`, `customer acme`): the pipeline's reason, and the preview's prediction of it. */
export const noNumberLeft = (pool: string): string => `no available number in the ${pool} pool: add numbers, then retry`;

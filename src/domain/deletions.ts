/*
 * The mass-delete safeguard. A broken filter, an emptied export or a wrong base DN looks to a
 * delete sync like everyone leaving at once; the threshold holds such a sync before it offboards
 * anyone, while ordinary leavers go through.
 */

/** A count (`50`) or a share of the source's users (`"10%"`), as configured. */
export type DeleteThreshold = number | string;

export interface DeletionPlan {
  /** Users the sync would offboard. */
  readonly deletions: number;
  /** Users of the source on record (not offboarded) before this sync. */
  readonly sourceUsers: number;
  /** Records the read delivered (all of them, usable or not). */
  readonly seen: number;
  /** Records whose identity could not be read: the read is incomplete. */
  readonly unidentified: number;
  /** Whether the read was a full one (a delete sync's); @removed notices need none. */
  readonly fullRead: boolean;
}

export type DeletionDecision =
  | { readonly proceed: true; readonly limit: number }
  | { readonly proceed: false; readonly limit: number; readonly reason: string };

/** Without a setting: held when more than 10 % of the source's users *and* more than 10 users would go. */
export const DEFAULT_SHARE = 10;
export const DEFAULT_MIN_COUNT = 10;

/** The most deletions a sync may make without an operator's `--allow-deletes`. */
export function deletionLimit(threshold: DeleteThreshold | undefined, sourceUsers: number): number {
  if (threshold === undefined) return Math.max(DEFAULT_MIN_COUNT, Math.floor((sourceUsers * DEFAULT_SHARE) / 100));
  if (typeof threshold === 'number') return threshold;
  const share = Number.parseFloat(threshold);
  return Math.floor((sourceUsers * share) / 100);
}

function describeLimit(threshold: DeleteThreshold | undefined, limit: number): string {
  if (threshold === undefined) return `the default threshold (more than ${DEFAULT_SHARE} % and more than ${DEFAULT_MIN_COUNT} users; here ${limit})`;
  return typeof threshold === 'number' ? `deleteThreshold ${threshold}` : `deleteThreshold ${threshold} (here ${limit} users)`;
}

const LET_THROUGH = 'flowthru sync … --mode delete --allow-deletes';

/** A held deletion's reason without its generic advice, for a caller that gives the command in full. */
export function withoutLetThrough(reason: string): string {
  return reason.replace(new RegExp(`; if that is right: ${LET_THROUGH.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\d+$`), '');
}

/**
 * Whether a sync may offboard the users it found gone. `allowDeletes` (an operator's
 * `--allow-deletes N`) lets through at most N, whatever the threshold.
 */
export function decideDeletions(plan: DeletionPlan, threshold: DeleteThreshold | undefined, allowDeletes?: number): DeletionDecision {
  const limit = allowDeletes ?? deletionLimit(threshold, plan.sourceUsers);
  if (plan.deletions === 0) return { proceed: true, limit };
  const letThrough = `${LET_THROUGH} ${plan.deletions}`;
  if (plan.fullRead && plan.unidentified > 0) {
    return {
      proceed: false,
      limit,
      reason: `the read was incomplete (${plan.unidentified} record${plan.unidentified === 1 ? '' : 's'} could not be identified), so nobody missing from it is taken for gone; fix the source and sync again`,
    };
  }
  if (allowDeletes !== undefined) {
    return plan.deletions <= allowDeletes
      ? { proceed: true, limit }
      : { proceed: false, limit, reason: `${plan.deletions} users would be offboarded, more than the ${allowDeletes} allowed by --allow-deletes` };
  }
  if (plan.fullRead && plan.seen === 0) {
    return { proceed: false, limit, reason: `the source returned no users at all, so all ${plan.deletions} would be offboarded; if that is right: ${letThrough}` };
  }
  if (plan.deletions > limit) {
    return {
      proceed: false,
      limit,
      reason: `${plan.deletions} of ${plan.sourceUsers} users would be offboarded, more than ${describeLimit(threshold, limit)}; if that is right: ${letThrough}`,
    };
  }
  return { proceed: true, limit };
}

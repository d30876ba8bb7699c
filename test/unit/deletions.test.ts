import { describe, expect, it } from 'vitest';
import { decideDeletions, deletionLimit, withoutLetThrough, type DeletionPlan } from '../../src/domain/deletions.js';

const plan = (deletions: number, sourceUsers: number, extra: Partial<DeletionPlan> = {}): DeletionPlan => ({
  deletions,
  sourceUsers,
  seen: sourceUsers - deletions,
  unidentified: 0,
  fullRead: true,
  ...extra,
});

describe('the deletion threshold', () => {
  it('by default holds more than 10 % and more than 10 users, and lets ordinary leavers through', () => {
    expect(deletionLimit(undefined, 50)).toBe(10);
    expect(deletionLimit(undefined, 1_000)).toBe(100);
    expect(decideDeletions(plan(10, 50), undefined)).toMatchObject({ proceed: true });
    expect(decideDeletions(plan(100, 1_000), undefined)).toMatchObject({ proceed: true });
    // A quarter of a small source, but only five people: through.
    expect(decideDeletions(plan(5, 20), undefined)).toMatchObject({ proceed: true });
    const held = decideDeletions(plan(101, 1_000), undefined);
    expect(held).toMatchObject({ proceed: false, limit: 100 });
    expect(held.proceed === false && held.reason).toMatch(/^101 of 1000 users would be offboarded, more than the default threshold .*--allow-deletes 101$/);
  });

  it('takes a count or a share of the source', () => {
    expect(deletionLimit(5, 1_000)).toBe(5);
    expect(deletionLimit('10%', 3)).toBe(0);
    expect(deletionLimit('2.5%', 1_000)).toBe(25);
    expect(decideDeletions(plan(6, 1_000), 5)).toMatchObject({ proceed: false, limit: 5 });
    expect(decideDeletions(plan(1, 3), '10%')).toMatchObject({ proceed: false, limit: 0 });
  });

  it('never takes an empty source or an incomplete read for everyone leaving', () => {
    const empty = decideDeletions(plan(3, 3, { seen: 0 }), 100);
    expect(empty.proceed === false && empty.reason).toMatch(/the source returned no users at all/);
    const incomplete = decideDeletions(plan(1, 100, { unidentified: 2 }), undefined);
    expect(incomplete.proceed === false && incomplete.reason).toMatch(/the read was incomplete \(2 records could not be identified\)/);
    // @removed notices need no full read: an incremental read that saw nobody still offboards them.
    expect(decideDeletions(plan(1, 100, { seen: 0, fullRead: false }), undefined)).toMatchObject({ proceed: true });
  });

  it('--allow-deletes lets at most that many through, whatever the threshold', () => {
    expect(decideDeletions(plan(11, 12), undefined, 11)).toMatchObject({ proceed: true });
    expect(decideDeletions(plan(3, 3, { seen: 0 }), undefined, 3)).toMatchObject({ proceed: true });
    const tooMany = decideDeletions(plan(11, 12), undefined, 10);
    expect(tooMany.proceed === false && tooMany.reason).toBe('11 users would be offboarded, more than the 10 allowed by --allow-deletes');
    // But never through an incomplete read.
    expect(decideDeletions(plan(1, 12, { unidentified: 1 }), undefined, 5)).toMatchObject({ proceed: false });
  });

  it('nothing to delete is never held', () => {
    expect(decideDeletions(plan(0, 0, { seen: 0 }), 0)).toMatchObject({ proceed: true });
  });
});

describe('withoutLetThrough', () => {
  it("drops the generic advice a held reason ends with, and leaves any other reason as it is", () => {
    const reasonOf = (plan: DeletionPlan) => {
      const decision = decideDeletions(plan, undefined);
      if (decision.proceed) throw new Error('expected a hold');
      return decision.reason;
    };
    const held = { reason: reasonOf({ deletions: 11, sourceUsers: 12, seen: 1, unidentified: 0, fullRead: true }) };
    expect(held.reason).toMatch(/; if that is right: flowthru sync … --mode delete --allow-deletes 11$/);
    expect(withoutLetThrough(held.reason)).toBe('11 of 12 users would be offboarded, more than the default threshold (more than 10 % and more than 10 users; here 10)');
    const incomplete = { reason: reasonOf({ deletions: 2, sourceUsers: 12, seen: 11, unidentified: 1, fullRead: true }) };
    expect(withoutLetThrough(incomplete.reason)).toBe(incomplete.reason);
  });
});

import { describe, expect, it } from 'vitest';
import { compareNumbers, expandRange, keptLine, rangeProblems, rangesOverlap, MAX_RANGE_SIZE } from '../../src/domain/numbers.js';

describe('number ranges', () => {
  it('expands E.164 and extension ranges, keeping prefixes and leading zeros', () => {
    expect([...expandRange({ from: '+13125550198', to: '+13125550201' })]).toEqual([
      '+13125550198',
      '+13125550199',
      '+13125550200',
      '+13125550201',
    ]);
    expect([...expandRange({ from: '0098', to: '0101' })]).toEqual(['0098', '0099', '0100', '0101']);
  });
  it('rejects malformed ranges with a reason', () => {
    expect(rangeProblems({ from: '2000', to: '1000' })).toEqual(['range ends ("1000") before it starts ("2000")']);
    expect(rangeProblems({ from: '+1312', to: '1312' })[0]).toMatch(/same kind and length/);
    expect(rangeProblems({ from: '12a', to: '130' })[0]).toMatch(/neither an E.164/);
    expect(rangeProblems({ from: '+0123', to: '+0125' })).toHaveLength(2);
    expect(rangeProblems({ from: '0', to: String(MAX_RANGE_SIZE) })[0]).toMatch(/must be of the same kind and length/);
    expect(rangeProblems({ from: '000000', to: String(MAX_RANGE_SIZE * 2) })[0]).toMatch(/at most 100000 per range/);
    expect(rangeProblems({ from: '1000', to: '1000' })).toEqual([]);
  });
  it('detects overlap only between numbers of one kind and length', () => {
    expect(rangesOverlap({ from: '1000', to: '1099' }, { from: '1099', to: '1200' })).toBe(true);
    expect(rangesOverlap({ from: '1000', to: '1099' }, { from: '1100', to: '1200' })).toBe(false);
    expect(rangesOverlap({ from: '1000', to: '1099' }, { from: '10000', to: '10990' })).toBe(false);
    expect(rangesOverlap({ from: '+11000', to: '+11099' }, { from: '11000', to: '11099' })).toBe(false);
  });
  it('orders numbers shortest first, then by digits', () => {
    expect(['1000', '999', '+1312', '1001'].sort(compareNumbers)).toEqual(['999', '1000', '1001', '+1312']);
  });
});

describe('the line a user keeps when their profile is provisioned again', () => {
  const held = [
    { number: '+13125550100', siteId: 1 },
    { number: '+18005550100', siteId: null },
  ];
  it('is the one they hold from the pool the profile draws from', () => {
    expect(keptLine(held, 1, false)).toBe('+13125550100');
    expect(keptLine(held, null, false)).toBe('+18005550100');
  });
  it('after a move: a new one (assign-new), or their other site number (keep-existing), never a customer number', () => {
    expect(keptLine(held, 2, false)).toBeNull();
    expect(keptLine(held, 2, true)).toBe('+13125550100');
    expect(keptLine([{ number: '+18005550100', siteId: null }], 2, true)).toBeNull();
    expect(keptLine([], null, true)).toBeNull();
  });
});

import { describe, expect, it } from 'vitest';
import { main } from '../../src/client/cli.js';

async function run(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'flowthru', ...args], { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('numeric options are checked before anything runs', () => {
  it.each([
    ['log', '--limit', 'abc'],
    ['log', '--limit', '-3'],
    ['log', '--limit', '2.5'],
    ['demo', '--users', 'many'],
    ['preview', 'acme', 'hr', '--config-version', 'x1'],
    ['target', 'reprovision', 'ldap', '--window', 'ten'],
  ])('%s %s %s: exit 1, naming the option and the value', async (...args) => {
    const result = await run(...args);
    expect(result.code).toBe(1);
    expect(result.err).toContain(`${args.at(-2)} must be a whole number, not "${args.at(-1)}"`);
  });
});

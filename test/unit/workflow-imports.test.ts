import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

// The lint rule is what keeps workflow code deterministic: prove it bites.
describe('the workflow import rule', () => {
  const eslint = new ESLint();
  const lint = async (source: string) => {
    const [result] = await eslint.lintText(source, { filePath: 'src/workflows/probe.ts' });
    return result!.messages.filter((m) => m.ruleId === '@typescript-eslint/no-restricted-imports').map((m) => m.line);
  };

  it('refuses node built-ins, I/O libraries and adapters in src/workflows', async () => {
    const lines = await lint(
      [
        "import { readFileSync } from 'node:fs';",
        "import pg from 'pg';",
        "import { createDatabase } from '../adapters/db/connection.js';",
        "import { readSettings } from '../settings.js';",
        'export const used = [readFileSync, pg, createDatabase, readSettings];',
      ].join('\n'),
    );
    expect(lines).toEqual([1, 2, 3, 4]);
  }, 30_000);

  it('allows the workflow SDK, domain code, sibling workflows and types from anywhere', async () => {
    const lines = await lint(
      [
        "import { proxyActivities } from '@temporalio/workflow';",
        "import { matches } from '../domain/criteria.js';",
        "import type { Database } from '../adapters/db/schema.js';",
        "import type { Settings } from '../settings.js';",
        'export const used = [proxyActivities, matches];',
        'export type T = Database | Settings;',
      ].join('\n'),
    );
    expect(lines).toEqual([]);
  }, 30_000);
});

/**
 * The corpus of bad configuration files, test/data/config/: every defect found in validation gets
 * a file there, so that it stays found. Adding one needs no test code:
 *
 * 1. Write test/data/config/<what-it-shows>.yaml (with any file it names, a template or a CSV,
 *    beside it: only *.yaml files are run).
 * 2. In its leading comment, say what `flowthru config validate` must print, one line each:
 *
 *      # expect: <name>.yaml:LINE:COL: PATH: MESSAGE
 *      # expect: <name>.yaml:LINE:COL: PATH: warning: MESSAGE
 *
 *    Each expect line must be part of one line of output, and every line of output must be
 *    expected. Paths inside this folder are printed relative to it; a problem located in another
 *    file (a template) starts with that file's name. No expect line: the file must be valid with no
 *    warning. The exit status must be 1 when an error (not a warning) is expected, else 0.
 *
 * `FLOWTHRU_CORPUS_SHOW=1 npx vitest run test/unit/config-corpus.test.ts` prints what each file gets.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/client/cli.js';
import { formatProblem, type ConfigProblem } from '../../src/domain/config/validate.js';

const CORPUS = resolve('test/data/config');
const files = readdirSync(CORPUS)
  .filter((name) => name.endsWith('.yaml'))
  .sort();

/** The `# expect:` lines of the file's leading comment. */
function expectations(text: string): string[] {
  const expected: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('#')) break;
    const match = /^#\s*expect:\s*(.*?)\s*$/.exec(line);
    if (match) expected.push(match[1]!);
  }
  return expected;
}

/** One line of validate's output, with paths in the corpus folder made relative to it. */
function show(name: string, problem: ConfigProblem): string {
  const local = (text: string) => text.replaceAll(`${CORPUS}/`, '');
  const file = problem.file === undefined ? undefined : relative(CORPUS, problem.file);
  return formatProblem({ ...problem, message: local(problem.message), ...(file === undefined ? {} : { file }) }, name);
}

async function validate(name: string) {
  const out: string[] = [];
  const code = await main(['node', 'flowthru', 'config', 'validate', join(CORPUS, name), '--json'], { out: (l) => out.push(l), err: () => undefined });
  const report = JSON.parse(out.join('\n')) as { ok: boolean; file: string; problems: ConfigProblem[]; warnings: ConfigProblem[] };
  return { code, report };
}

describe('the corpus of bad configuration files', () => {
  it('is there', () => {
    expect(files.length).toBeGreaterThan(10);
  });

  it.each(files)('%s', async (name) => {
    const expected = expectations(readFileSync(join(CORPUS, name), 'utf8'));
    const { code, report } = await validate(name);
    const lines = [...report.problems, ...report.warnings].map((problem) => show(basename(name), problem));
    if (process.env.FLOWTHRU_CORPUS_SHOW) process.stdout.write(`${name} (exit ${code}):\n${lines.map((l) => `  ${l}\n`).join('')}`);

    const unexpected = [...lines];
    const missing = expected.filter((want) => {
      const at = unexpected.findIndex((line) => line.includes(want));
      if (at === -1) return true;
      unexpected.splice(at, 1);
      return false;
    });
    expect({ missing, unexpected }).toEqual({ missing: [], unexpected: [] });

    // Errors and warnings are told apart in the JSON, and only errors make the input invalid.
    expect(report.problems.every((p) => p.severity !== 'warning')).toBe(true);
    expect(report.warnings.every((p) => p.severity === 'warning')).toBe(true);
    const errorExpected = expected.some((want) => !/(^|: )warning: /.test(want));
    expect({ code, ok: report.ok }).toEqual({ code: errorExpected ? 1 : 0, ok: !errorExpected });
  });
});

import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { validateConfigText } from '../domain/config/document.js';
import type { ResolvedConfig } from '../domain/config/resolved.js';
import type { ConfigProblem } from '../domain/config/validate.js';
import { templateProblem } from './mail/welcome.js';

export type LoadResult = { ok: true; config: ResolvedConfig } | { ok: false; problems: ConfigProblem[] };

/**
 * Reads, validates and resolves a configuration file: relative paths (CSV files, templates) are
 * taken relative to the file, and templates are read in so the snapshot stands on its own.
 */
export async function loadConfigFile(file: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return { ok: false, problems: [{ path: [], message: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` }] };
  }
  const validated = validateConfigText(text);
  if (!validated.ok) return validated;
  const base = dirname(resolve(file));
  const at = (path: string) => (isAbsolute(path) ? path : resolve(base, path));
  const problems: ConfigProblem[] = [];
  const templates: Record<string, string> = {};
  const customers = [];
  for (const [c, customer] of validated.config.customers.entries()) {
    const welcome = customer.settings.welcomeEmail;
    const subjectProblem = templateProblem(welcome.subject, false);
    if (subjectProblem) {
      problems.push({ path: ['customers', c, 'settings', 'welcomeEmail', 'subject'], message: `invalid subject template: ${subjectProblem}` });
    }
    const template = welcome.template;
    if (template !== undefined) {
      try {
        const text = await readFile(at(template), 'utf8');
        const problem = templateProblem(text);
        if (problem) {
          problems.push({ path: ['customers', c, 'settings', 'welcomeEmail', 'template'], message: `invalid template ${at(template)}: ${problem}` });
        }
        templates[customer.name] = text;
      } catch (error) {
        problems.push({
          path: ['customers', c, 'settings', 'welcomeEmail', 'template'],
          message: `cannot read template ${at(template)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        });
      }
    }
    customers.push({
      ...customer,
      sources: customer.sources.map((source) => (source.type === 'csv' ? { ...source, path: at(source.path) } : source)),
    });
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, config: { ...validated.config, customers, templates } };
}

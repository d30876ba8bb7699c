import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { locateProblem, parseConfigText } from '../domain/config/document.js';
import type { ResolvedConfig } from '../domain/config/resolved.js';
import type { SettingsConfig, SourceConfig } from '../domain/config/schema.js';
import { isWarning, itemIndex, validateConfig, type ConfigPath, type ConfigProblem } from '../domain/config/validate.js';
import { templateProblem } from './mail/welcome.js';
import { secretWarnings } from './secrets.js';
import { CsvUnreadable, readCsvHeader } from './sources/csv-header.js';
import { certificateFileProblem } from './tls.js';

/** `problems` are the errors (any one of them stops an apply); warnings are reported and never block. */
export type LoadResult =
  | { ok: true; config: ResolvedConfig; warnings: ConfigProblem[] }
  | { ok: false; problems: ConfigProblem[]; warnings: ConfigProblem[] };

type CsvSourceConfig = Extract<SourceConfig, { type: 'csv' }>;
type EntraSourceConfig = Extract<SourceConfig, { type: 'entra' }>;

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException).code ?? (error as Error).message;

/** The subject and the HTML template must render; the template is read in for the snapshot. */
async function emailProblems(
  welcome: Pick<SettingsConfig['welcomeEmail'], 'subject' | 'template'>,
  path: ConfigPath,
  at: (path: string) => string,
): Promise<{ problems: ConfigProblem[]; template?: string }> {
  const problems: ConfigProblem[] = [];
  // The subject sits in the configuration file: its place there says more than a line within it.
  const subject = templateProblem(welcome.subject, false);
  if (subject) problems.push({ path: [...path, 'subject'], message: `invalid subject template: ${subject.message}` });
  if (welcome.template === undefined) return { problems };
  const file = at(welcome.template);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    problems.push({ path: [...path, 'template'], message: `cannot read template ${file}: ${errorCode(error)}` });
    return { problems };
  }
  const problem = templateProblem(text);
  if (problem?.line !== undefined) {
    problems.push({ path: [...path, 'template'], message: `invalid template: ${problem.message}`, file, line: problem.line, ...(problem.column ? { column: problem.column } : {}) });
  } else if (problem) {
    problems.push({ path: [...path, 'template'], message: `invalid template ${file}: ${problem.message}` });
  }
  return { problems, template: text };
}

/**
 * A CSV source's file as a sync will find it: missing here is only a warning (it may exist only
 * where the worker runs); a header without the external id column fails every record, an error.
 */
async function csvProblems(source: CsvSourceConfig, path: ConfigPath, file: string): Promise<ConfigProblem[]> {
  let header: string[] | null;
  try {
    header = await readCsvHeader(file, source.delimiter);
  } catch (error) {
    if (error instanceof CsvUnreadable) {
      return [{ severity: 'warning', path: [...path, 'path'], message: `cannot read ${file} here (${error.code}); a sync reads it where the worker runs, so it must exist there` }];
    }
    return [{ path: [...path, 'path'], message: `the header row of ${file} is not valid CSV: ${(error as Error).message}` }];
  }
  if (header === null) return [{ severity: 'warning', path: [...path, 'path'], message: `${file} is empty: it has no header row` }];
  const columns = `columns: ${header.map((name) => JSON.stringify(name)).join(', ')}`;
  // One column holding another common delimiter: the file is most likely split on a different one.
  const other = header.length === 1 ? [',', ';', '\t', '|'].find((d) => d !== source.delimiter && header[0]!.includes(d)) : undefined;
  const hint = other ? `; the file seems to use ${JSON.stringify(other)}, but the source's delimiter is ${JSON.stringify(source.delimiter)}` : '';
  const problems: ConfigProblem[] = [];
  if (!header.includes(source.externalId)) {
    problems.push({ path: [...path, 'externalId'], message: `column "${source.externalId}" is not in the header of ${file} (${columns}${hint})` });
  }
  for (const column of Object.keys(source.attributeMap)) {
    if (header.includes(column)) continue;
    problems.push({ severity: 'warning', path: [...path, 'attributeMap', column], message: `column "${column}" is not in the header of ${file} (${columns})` });
  }
  return problems;
}

/**
 * An Entra source's files as a sync will read them: unreadable here is only a warning (the private
 * key may exist only where the worker runs); a file that cannot serve is an error.
 */
async function entraFileProblems(source: EntraSourceConfig, path: ConfigPath, at: (file: string) => string): Promise<ConfigProblem[]> {
  const problems: ConfigProblem[] = [];
  const read = async (setting: 'clientCertificateFile' | 'caFile', file: string): Promise<string | undefined> => {
    try {
      return await readFile(at(file), 'utf8');
    } catch (error) {
      problems.push({
        severity: 'warning',
        path: [...path, setting],
        message: `cannot read ${at(file)} here (${errorCode(error)}); a sync reads it where the worker runs, so it must exist there`,
      });
      return undefined;
    }
  };
  if (source.clientCertificateFile !== undefined) {
    const pem = await read('clientCertificateFile', source.clientCertificateFile);
    const problem = pem === undefined ? undefined : certificateFileProblem(pem);
    if (problem) problems.push({ path: [...path, 'clientCertificateFile'], message: `${at(source.clientCertificateFile)} ${problem}` });
  }
  if (source.caFile !== undefined) {
    const pem = await read('caFile', source.caFile);
    if (pem !== undefined && !/-----BEGIN CERTIFICATE-----/.test(pem)) {
      problems.push({ path: [...path, 'caFile'], message: `${at(source.caFile)} holds no PEM certificate (-----BEGIN CERTIFICATE-----)` });
    }
  }
  return problems;
}

/**
 * Reads, validates and resolves a configuration file: relative paths (CSV files, templates) are
 * taken relative to the file, and templates are read in so the snapshot stands on its own. Beyond
 * the document itself it checks, where validate runs, what a sync would meet: templates, CSV files
 * and their header, secret variables. Every problem and warning comes back at once, located.
 */
export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return { ok: false, problems: [{ path: [], message: `cannot read ${file}: ${errorCode(error)}` }], warnings: [] };
  }
  return loadConfigText(text, dirname(resolve(file)), env);
}

/**
 * A configuration given as text (an upload), checked in full as a file is: relative paths (CSV
 * files, templates, certificates) are resolved against `base`.
 */
export async function loadConfigText(text: string, base: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadResult> {
  const parsed = parseConfigText(text);
  if (!parsed.ok) return { ok: false, problems: parsed.problems, warnings: [] };
  const validated = validateConfig(parsed.document.data);
  // A rejected document is still checked as far as it parsed, so that nothing waits for a second run.
  const config = validated.ok ? validated.config : validated.partial;
  const at = (path: string) => (isAbsolute(path) ? path : resolve(base, path));
  const found: ConfigProblem[] = [...(validated.ok ? [] : validated.problems), ...validated.warnings];
  const templates: Record<string, string> = {};
  const movedTemplates: Record<string, string> = {};
  for (const [index, customer] of (config?.customers ?? []).entries()) {
    const c = itemIndex(customer, index);
    const welcome = await emailProblems(customer.settings.welcomeEmail, ['customers', c, 'settings', 'welcomeEmail'], at);
    found.push(...welcome.problems);
    if (welcome.template !== undefined) templates[customer.name] = welcome.template;
    const moved = await emailProblems(customer.settings.movedEmail, ['customers', c, 'settings', 'movedEmail'], at);
    found.push(...moved.problems);
    if (moved.template !== undefined) movedTemplates[customer.name] = moved.template;
    for (const [s, source] of customer.sources.entries()) {
      if (source.type === 'csv') found.push(...(await csvProblems(source, ['customers', c, 'sources', itemIndex(source, s)], at(source.path))));
      if (source.type === 'entra') found.push(...(await entraFileProblems(source, ['customers', c, 'sources', itemIndex(source, s)], at)));
    }
  }
  if (config) found.push(...secretWarnings(config, env));
  const located = found.map((problem) => locateProblem(parsed.document, problem));
  const problems = located.filter((problem) => !isWarning(problem));
  const warnings = located.filter(isWarning);
  if (!validated.ok || problems.length > 0) return { ok: false, problems, warnings };
  const customers = validated.config.customers.map((customer) => ({
    ...customer,
    sources: customer.sources.map((source) => {
      if (source.type === 'csv') return { ...source, path: at(source.path) };
      if (source.type === 'entra') {
        return {
          ...source,
          ...(source.clientCertificateFile === undefined ? {} : { clientCertificateFile: at(source.clientCertificateFile) }),
          ...(source.caFile === undefined ? {} : { caFile: at(source.caFile) }),
        };
      }
      return source;
    }),
  }));
  return { ok: true, config: { ...validated.config, customers, templates, movedTemplates }, warnings };
}

import { checkSync } from 'recheck';
import type { z } from 'zod';
import { isLeaf, type Condition } from '../criteria.js';
import { rangesOverlap, rangeProblems, type NumberRange } from '../numbers.js';
import { configShellSchema, customerParts, customerShellSchema, type Config, type CustomerConfig } from './schema.js';

export type ConfigPath = readonly (string | number)[];

/** One thing wrong with a configuration document, located by its path in the document. */
export interface ConfigProblem {
  readonly path: ConfigPath;
  readonly message: string;
  /** 1-based position in the YAML text, when the problem can be traced to one. */
  readonly line?: number;
  readonly column?: number;
}

export type ValidationResult = { ok: true; config: Config } | { ok: false; problems: ConfigProblem[] };

/** `customers[0].sites[1].moveCriteria.microsoft` */
export function formatPath(path: ConfigPath): string {
  return path.reduce<string>((out, part) => {
    if (typeof part === 'number') return `${out}[${part}]`;
    return out === '' ? part : `${out}.${part}`;
  }, '');
}

export function formatProblem(problem: ConfigProblem, file?: string): string {
  const where = [file, problem.line, problem.column].filter((p) => p !== undefined).join(':');
  const path = formatPath(problem.path);
  return `${where ? `${where}: ` : ''}${path ? `${path}: ` : ''}${problem.message}`;
}

const SECRET_KEY = /(password|passwd|secret|token|apikey|api_key|privatekey|private_key|credential)/i;

/** A key that holds a secret's value rather than the name of the variable that holds it. */
function isLiteralSecretKey(key: string): boolean {
  return SECRET_KEY.test(key) && !/Env$/.test(key);
}

function secretProblems(node: unknown, path: (string | number)[] = []): ConfigProblem[] {
  if (Array.isArray(node)) return node.flatMap((item, i) => secretProblems(item, [...path, i]));
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([key, value]) =>
    isLiteralSecretKey(key)
      ? [
          {
            path: [...path, key],
            message: `literal secret: configuration names the environment variable that holds it instead (e.g. ${key}Env: ${key
              .replace(/([a-z])([A-Z])/g, '$1_$2')
              .toUpperCase()})`,
          },
        ]
      : secretProblems(value, [...path, key]),
  );
}

function zodProblems(error: z.ZodError, at: ConfigPath = []): ConfigProblem[] {
  return error.issues.flatMap((issue): ConfigProblem[] => {
    const path = [...at, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: [...path, key], message: `unknown key "${key}"` }));
    }
    if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) {
      return [{ path, message: `missing required setting (${issue.message.replace(/^Invalid input: /, '').replace(/, received undefined$/, '')})` }];
    }
    return [{ path, message: issue.message.replace(/^Invalid input: /, '') }];
  });
}

function duplicateNames(items: readonly { name: string }[], path: (string | number)[], what: string): ConfigProblem[] {
  const seen = new Map<string, number>();
  const problems: ConfigProblem[] = [];
  items.forEach((item, index) => {
    const i = pos(item, index);
    const first = seen.get(item.name.toLowerCase());
    if (first === undefined) seen.set(item.name.toLowerCase(), i);
    else problems.push({ path: [...path, i, 'name'], message: `duplicate ${what} name "${item.name}" (also at index ${first})` });
  });
  return problems;
}

/** Patterns whose worst case is worse than quadratic are refused: criteria run on every synced user. */
export function regexProblem(pattern: string, flags = ''): string | null {
  try {
    new RegExp(pattern, `u${flags}`);
  } catch (error) {
    return `regular expression does not compile: ${(error as Error).message}`;
  }
  const diagnostics = checkSync(pattern, `u${flags}`, { timeout: 5_000 });
  if (diagnostics.status === 'vulnerable') {
    const complexity = diagnostics.complexity;
    if (complexity.type === 'exponential' || (complexity.type === 'polynomial' && complexity.degree >= 3)) {
      const witness = diagnostics.attack.pattern;
      return `regular expression is prone to catastrophic backtracking (${complexity.summary}; e.g. on ${witness}); rewrite it without nested or overlapping repetition`;
    }
  } else if (diagnostics.status === 'unknown') {
    return `regular expression could not be proven safe from catastrophic backtracking (${diagnostics.error.kind}); simplify it`;
  }
  return null;
}

function conditionProblems(condition: Condition, path: (string | number)[]): ConfigProblem[] {
  if ('all' in condition) return condition.all.flatMap((c, i) => conditionProblems(c, [...path, 'all', i]));
  if ('any' in condition) return condition.any.flatMap((c, i) => conditionProblems(c, [...path, 'any', i]));
  if ('not' in condition) return conditionProblems(condition.not, [...path, 'not']);
  if (isLeaf(condition) && condition.op === 'regex') {
    const message = regexProblem(condition.value, condition.flags);
    return message ? [{ path: [...path, 'value'], message }] : [];
  }
  return [];
}

type OwnedRange = { range: NumberRange; owner: string | null; path: (string | number)[] };

function numberRangeProblems(customer: CustomerConfig, at: (string | number)[]): ConfigProblem[] {
  const ranges: OwnedRange[] = [
    ...customer.numberRanges.map((range, i) => ({ range, owner: null, path: [...at, 'numberRanges', pos(range, i)] })),
    ...customer.sites.flatMap((site, s) =>
      site.numberRanges.map((range, i) => ({ range, owner: site.name, path: [...at, 'sites', pos(site, s), 'numberRanges', i] })),
    ),
  ].filter((r) => rangeProblems(r.range).length === 0);
  const problems: ConfigProblem[] = [];
  const label = (r: OwnedRange) => `${r.range.from}-${r.range.to} (${r.owner === null ? 'customer pool' : `site ${r.owner}`})`;
  for (const [i, a] of ranges.entries()) {
    for (const b of ranges.slice(i + 1)) {
      // Sites may reuse each other's extensions unless the customer forbids duplicates; the
      // customer pool serves every site, so it may never overlap anything.
      const mayShare = a.owner !== null && b.owner !== null && a.owner !== b.owner && !customer.settings.preventDuplicateNumbers;
      if (!mayShare && rangesOverlap(a.range, b.range)) {
        problems.push({ path: b.path, message: `number range ${label(b)} overlaps ${label(a)}` });
      }
    }
  }
  return problems;
}

const SOURCE_USER_TYPES: Record<string, readonly string[]> = {
  entra: ['microsoft'],
  ldap: ['ldap'],
  csv: ['csv', 'microsoft', 'ldap', 'cucm', 'webex'],
};

/** Where each parsed item stood in the file, since items that failed to parse are left out. */
const positions = new WeakMap<object, number>();
const pos = (item: object, fallback: number) => positions.get(item) ?? fallback;

function customerProblems(customer: CustomerConfig, c: number, broken: ReadonlySet<string>): ConfigProblem[] {
  const at: (string | number)[] = ['customers', c];
  const criteria = new Map(customer.criteria.map((k) => [k.name, k]));
  const profiles = new Set(customer.profiles.map((p) => p.name));
  const ftpCriteria = new Set(customer.ftpCriteria.map((f) => f.name));
  const problems: ConfigProblem[] = [
    ...duplicateNames(customer.sites, [...at, 'sites'], 'site'),
    ...duplicateNames(customer.sources, [...at, 'sources'], 'source'),
    ...duplicateNames(customer.criteria, [...at, 'criteria'], 'criteria'),
    ...duplicateNames(customer.profiles, [...at, 'profiles'], 'profile'),
    ...duplicateNames(customer.ftpCriteria, [...at, 'ftpCriteria'], 'FTP criteria'),
    ...numberRangeProblems(customer, at),
  ];

  const criteriaRef = (ref: string, usage: 'move' | 'ftp', path: (string | number)[]) => {
    const found = criteria.get(ref);
    if (!found && broken.has(`criteria:${ref}`)) return;
    if (!found) problems.push({ path, message: `unknown criteria "${ref}"` });
    else if (found.usage !== usage) {
      problems.push({ path, message: `criteria "${ref}" has usage "${found.usage}" but is used here as "${usage}" criteria` });
    }
  };
  const profileRef = (ref: string, path: (string | number)[]) => {
    if (!profiles.has(ref) && !broken.has(`profiles:${ref}`)) problems.push({ path, message: `unknown profile "${ref}"` });
  };

  customer.criteria.forEach((k, i) => problems.push(...conditionProblems(k.when, [...at, 'criteria', pos(k, i), 'when'])));
  customer.sites.forEach((site, index) => {
    const s = pos(site, index);
    for (const [userType, ref] of Object.entries(site.moveCriteria)) {
      if (ref !== undefined) criteriaRef(ref, 'move', [...at, 'sites', s, 'moveCriteria', userType]);
    }
  });
  customer.ftpCriteria.forEach((ftp, index) => {
    const f = pos(ftp, index);
    ftp.rules.forEach((rule, r) => {
      criteriaRef(rule.criteria, 'ftp', [...at, 'ftpCriteria', f, 'rules', r, 'criteria']);
      profileRef(rule.profile, [...at, 'ftpCriteria', f, 'rules', r, 'profile']);
    });
  });
  customer.sources.forEach((source, index) => {
    const s = pos(source, index);
    if (!SOURCE_USER_TYPES[source.type]?.includes(source.userType)) {
      problems.push({
        path: [...at, 'sources', s, 'userType'],
        message: `a ${source.type} source syncs users of type ${SOURCE_USER_TYPES[source.type]?.join(' or ')}, not "${source.userType}"`,
      });
    }
  });

  const settings = customer.settings;
  const settingsAt = [...at, 'settings'];
  const ftpRef = settings.flowThrough.criteria;
  if (ftpRef !== undefined && !ftpCriteria.has(ftpRef) && !broken.has(`ftpCriteria:${ftpRef}`)) {
    problems.push({ path: [...settingsAt, 'flowThrough', 'criteria'], message: `unknown FTP criteria "${settings.flowThrough.criteria}"` });
  }
  if (settings.updateSyncProfile !== undefined) profileRef(settings.updateSyncProfile, [...settingsAt, 'updateSyncProfile']);
  if (settings.welcomeEmail.enabled && !settings.welcomeEmail.from) {
    problems.push({ path: [...settingsAt, 'welcomeEmail', 'from'], message: 'a welcome email needs a "from" address' });
  }
  return problems;
}

type PartName = Exclude<keyof typeof customerParts, 'settings'>;
const LISTS: readonly PartName[] = ['numberRanges', 'criteria', 'profiles', 'ftpCriteria', 'sources', 'sites'];

/**
 * Parses one customer part by part. Items that fail are left out, their problems kept, and their
 * names remembered so that references to them are not reported a second time as unknown.
 */
function parseCustomer(raw: unknown, at: ConfigPath): { customer?: CustomerConfig; problems: ConfigProblem[]; broken: Set<string> } {
  const shell = customerShellSchema.safeParse(raw);
  if (!shell.success) return { problems: zodProblems(shell.error, at), broken: new Set() };
  const problems: ConfigProblem[] = [];
  const broken = new Set<string>();
  const settings = customerParts.settings.safeParse(shell.data.settings ?? {});
  if (!settings.success) problems.push(...zodProblems(settings.error, [...at, 'settings']));
  const parts: Record<string, unknown[]> = {};
  for (const part of LISTS) {
    parts[part] = shell.data[part].flatMap((item, i) => {
      const parsed = customerParts[part].safeParse(item);
      if (parsed.success) {
        if (typeof parsed.data === 'object' && parsed.data !== null) positions.set(parsed.data, i);
        return [parsed.data];
      }
      problems.push(...zodProblems(parsed.error, [...at, part, i]));
      const itemName = (item as { name?: unknown } | null)?.name;
      if (typeof itemName === 'string') broken.add(`${part}:${itemName}`);
      return [];
    });
  }
  const customer = {
    ...shell.data,
    settings: settings.success ? settings.data : customerParts.settings.parse({}),
    ...parts,
  } as CustomerConfig;
  return { customer, problems, broken };
}

/**
 * Validates a parsed YAML document in full: the schema, then references between its parts.
 * Every problem is reported at once, each with its path; nothing here does I/O.
 */
export function validateConfig(document: unknown): ValidationResult {
  if (document === null || document === undefined) {
    return { ok: false, problems: [{ path: [], message: 'the configuration is empty' }] };
  }
  const secrets = secretProblems(document);
  const secretPaths = new Set(secrets.map((s) => formatPath(s.path)));
  const shell = configShellSchema.safeParse(document);
  if (!shell.success) return { ok: false, problems: [...secrets, ...zodProblems(shell.error)].filter(unique(secretPaths)) };

  const problems: ConfigProblem[] = [];
  const customers: CustomerConfig[] = [];
  shell.data.customers.forEach((raw, c) => {
    const parsed = parseCustomer(raw, ['customers', c]);
    problems.push(...parsed.problems);
    if (parsed.customer) {
      customers.push(parsed.customer);
      problems.push(...customerProblems(parsed.customer, c, parsed.broken));
    }
  });
  problems.push(...duplicateNames(customers, ['customers'], 'customer'));
  const all = [...secrets, ...problems.filter(unique(secretPaths))];
  if (all.length > 0) return { ok: false, problems: all };
  return { ok: true, config: { ...shell.data, customers } as Config };
}

/** Drops the schema's "unknown key" where the secret check already said more about that key. */
function unique(secretPaths: ReadonlySet<string>) {
  return (problem: ConfigProblem) => !secretPaths.has(formatPath(problem.path)) || problem.message.startsWith('literal secret');
}

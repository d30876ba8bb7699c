import { isAlias, isCollection, isMap, isPair, isSeq, LineCounter, parseDocument, visit, type Alias, type Document, type Node } from 'yaml';
import { validateConfig, type ConfigPath, type ConfigProblem, type ValidationResult } from './validate.js';

/** A parsed YAML text that can say where a configuration path sits in it. */
export interface ConfigDocument {
  readonly data: unknown;
  locate(path: ConfigPath): { line: number; column: number } | undefined;
}

export type ParseResult = { ok: true; document: ConfigDocument } | { ok: false; problems: ConfigProblem[] };

/** The node a path names: for a mapping key, the key itself (where a reader looks for it). */
function nodeAt(doc: Document, path: ConfigPath): Node | undefined {
  let node: unknown = doc.contents;
  let found: Node | undefined = node as Node | undefined;
  for (const [i, part] of path.entries()) {
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((item) => (item.key as { value?: unknown } | null)?.value === part);
      if (!pair) return found;
      node = pair.value;
      found = last || !node ? (pair.key as Node) : (node as Node);
    } else if (isSeq(node) && typeof part === 'number') {
      node = node.items[part];
      if (!node) return found;
      found = node as Node;
    } else {
      return found;
    }
  }
  return found;
}

/** Aliases a document may expand in all: a configuration needs few, an alias bomb needs many. */
const MAX_ALIAS_COUNT = 100;

/**
 * The alias at which yaml's `toJS` gives up on an alias bomb. It replays yaml's own tally (each
 * anchor counts its uses times the aliases nested in it, in document order), so the problem points
 * at the line that tips the document over; the first alias is the fallback.
 */
function explodingAlias(doc: Document): Alias | undefined {
  const uses = new Map<unknown, { count: number; nested: number }>();
  const nestedAliases = (node: unknown): number => {
    if (isAlias(node)) {
      const use = uses.get(node.resolve(doc));
      return use ? use.count * use.nested : 0;
    }
    if (isCollection(node)) return Math.max(0, ...node.items.map(nestedAliases));
    if (isPair(node)) return Math.max(nestedAliases(node.key), nestedAliases(node.value));
    return 1;
  };
  let first: Alias | undefined;
  let culprit: Alias | undefined;
  visit(doc, {
    Node(_key, node) {
      if (!isAlias(node)) {
        if (node.anchor) uses.set(node, { count: 1, nested: 0 });
        return undefined;
      }
      first ??= node;
      const use = uses.get(node.resolve(doc));
      if (!use) return undefined;
      use.count += 1;
      if (use.nested === 0) use.nested = nestedAliases(node.resolve(doc));
      if (use.count * use.nested <= MAX_ALIAS_COUNT) return undefined;
      culprit = node;
      return visit.BREAK;
    },
  });
  return culprit ?? first;
}

/** The first alias whose anchor is not defined before it. */
function unresolvedAlias(doc: Document): Alias | undefined {
  let found: Alias | undefined;
  visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc)) return undefined;
      found = node;
      return visit.BREAK;
    },
  });
  return found;
}

/** yaml reports alias trouble only when converting to plain data: turn it into a located problem. */
function aliasProblem(doc: Document, lineCounter: LineCounter, error: unknown): ConfigProblem {
  const message = error instanceof Error ? error.message : String(error);
  const bomb = /resource exhaustion/.test(message);
  const alias = bomb ? explodingAlias(doc) : unresolvedAlias(doc);
  const pos = alias?.range ? lineCounter.linePos(alias.range[0]) : undefined;
  const text = bomb
    ? `YAML aliases expand too far${alias ? ` at *${alias.source}` : ''} (more than ${MAX_ALIAS_COUNT} alias expansions, as in a "billion laughs" document): write the repeated values out instead`
    : `YAML error: ${message}`;
  return pos ? { path: [], message: text, line: pos.line, column: pos.col } : { path: [], message: text };
}

/** Parses YAML text. Syntax errors come back as problems with their line and column. */
export function parseConfigText(text: string): ParseResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((error) => {
        const pos = error.linePos?.[0];
        const message = `YAML syntax error: ${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
        return pos ? { path: [], message, line: pos.line, column: pos.col } : { path: [], message };
      }),
    };
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    return { ok: false, problems: [aliasProblem(doc, lineCounter, error)] };
  }
  return {
    ok: true,
    document: {
      data,
      locate(path) {
        const node = nodeAt(doc, path);
        if (!node?.range) return undefined;
        const pos = lineCounter.linePos(node.range[0]);
        return { line: pos.line, column: pos.col };
      },
    },
  };
}

/** Adds the line and column of the problem's path, unless it already has a place (in another file, say). */
export function locateProblem(document: ConfigDocument, problem: ConfigProblem): ConfigProblem {
  if (problem.file !== undefined || problem.line !== undefined) return problem;
  return { ...problem, ...document.locate(problem.path) };
}

/** Parse and validate YAML text; every problem carries its path and, where known, line and column. */
export function validateConfigText(text: string): ValidationResult {
  const parsed = parseConfigText(text);
  if (!parsed.ok) return { ok: false, problems: parsed.problems, warnings: [] };
  const result = validateConfig(parsed.document.data);
  const locate = (problem: ConfigProblem) => locateProblem(parsed.document, problem);
  if (result.ok) return { ...result, warnings: result.warnings.map(locate) };
  return { ...result, problems: result.problems.map(locate), warnings: result.warnings.map(locate) };
}

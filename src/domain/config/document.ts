import { isMap, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
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
  return {
    ok: true,
    document: {
      data: doc.toJS({ maxAliasCount: 100 }),
      locate(path) {
        const node = nodeAt(doc, path);
        if (!node?.range) return undefined;
        const pos = lineCounter.linePos(node.range[0]);
        return { line: pos.line, column: pos.col };
      },
    },
  };
}

/** Parse and validate YAML text; every problem carries its path and, where known, line and column. */
export function validateConfigText(text: string): ValidationResult {
  const parsed = parseConfigText(text);
  if (!parsed.ok) return parsed;
  const result = validateConfig(parsed.document.data);
  if (result.ok) return result;
  return {
    ok: false,
    problems: result.problems.map((problem) => ({ ...parsed.document.locate(problem.path), ...problem })),
  };
}

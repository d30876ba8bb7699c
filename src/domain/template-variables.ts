// hbs.AST: the template syntax tree's types, from handlebars' own declarations.
import type {} from 'handlebars';

type Node = hbs.AST.Node;

export interface UnknownVariable {
  readonly name: string;
  /** Where in the template (1-based). */
  readonly line: number;
  readonly column: number;
}

/**
 * The first name a Handlebars template reads that `known` does not accept, wherever it is read.
 * Strict rendering catches `{{nmber}}`, not a block helper's argument: `{{#if numbr}}` reads as
 * false and leaves its block out of every rendering, silently. Helpers' own names, `this` and data
 * (`@index`) are not variables; a path (`attributes.costCentre`) is checked by its first part.
 */
export function firstUnknownVariable(program: hbs.AST.Program, known: (name: string) => boolean): UnknownVariable | null {
  const first = (nodes: readonly (Node | null | undefined)[]): UnknownVariable | null => {
    for (const node of nodes) {
      const found = node ? visit(node) : null;
      if (found) return found;
    }
    return null;
  };
  const argumentsOf = (call: { params: Node[]; hash?: hbs.AST.Hash }) => [...call.params, ...(call.hash?.pairs.map((pair) => pair.value) ?? [])];
  const visit = (node: Node): UnknownVariable | null => {
    switch (node.type) {
      case 'Program':
        return first((node as hbs.AST.Program).body);
      case 'MustacheStatement':
      case 'SubExpression': {
        const call = node as hbs.AST.MustacheStatement;
        const args = argumentsOf(call);
        // Without arguments a mustache reads its path; with some, the path names a helper.
        return first(args.length === 0 ? [call.path] : args);
      }
      case 'BlockStatement': {
        const block = node as hbs.AST.BlockStatement;
        return first([...argumentsOf(block), block.program, block.inverse]);
      }
      case 'PathExpression': {
        const path = node as hbs.AST.PathExpression;
        const name = path.parts[0];
        if (path.data || name === undefined || known(name)) return null;
        // Handlebars counts columns from 0.
        return { name, line: path.loc.start.line, column: path.loc.start.column + 1 };
      }
      default:
        return null;
    }
  };
  return visit(program);
}

export interface FieldRead {
  /** The path as written (`site.city`, or `city` inside `{{#with site}}`). */
  readonly path: string;
  /** The variable it reads a field of. */
  readonly owner: string;
  /** Inside `{{#with owner}}` rather than a dotted path. */
  readonly inWith: boolean;
  readonly line: number;
  readonly column: number;
}

/**
 * Where a template reads `field` as a field of a variable: a dotted path (`{{site.city}}`) or a
 * name inside `{{#with site}}`. A strict template whose variables are plain values fails there
 * with JavaScript's own "Cannot use 'in' operator", which says neither what nor where.
 */
export function fieldReadOf(program: hbs.AST.Program, field: string): FieldRead | null {
  const at = (path: hbs.AST.PathExpression) => ({ line: path.loc.start.line, column: path.loc.start.column + 1 });
  const visit = (node: Node | null | undefined, withOwner: string | null): FieldRead | null => {
    if (!node) return null;
    switch (node.type) {
      case 'Program':
        for (const child of (node as hbs.AST.Program).body) {
          const found = visit(child, withOwner);
          if (found) return found;
        }
        return null;
      case 'MustacheStatement':
      case 'SubExpression': {
        const call = node as hbs.AST.MustacheStatement;
        for (const child of [call.path, ...call.params, ...(call.hash?.pairs.map((p) => p.value) ?? [])]) {
          const found = visit(child, withOwner);
          if (found) return found;
        }
        return null;
      }
      case 'BlockStatement': {
        const block = node as hbs.AST.BlockStatement;
        for (const child of block.params) {
          const found = visit(child, withOwner);
          if (found) return found;
        }
        const helper = (block.path as hbs.AST.PathExpression).original;
        const param = block.params[0]?.type === 'PathExpression' ? (block.params[0] as hbs.AST.PathExpression).original : null;
        const inner = helper === 'with' && param !== null ? param : withOwner;
        return visit(block.program, inner) ?? visit(block.inverse, withOwner);
      }
      case 'PathExpression': {
        const path = node as hbs.AST.PathExpression;
        if (path.data) return null;
        const index = path.parts.indexOf(field);
        if (index > 0) return { path: path.original, owner: path.parts.slice(0, index).join('.'), inWith: false, ...at(path) };
        if (index === 0 && withOwner !== null) return { path: path.original, owner: withOwner, inWith: true, ...at(path) };
        return null;
      }
      default:
        return null;
    }
  };
  return visit(program, null);
}

import type { Config } from './schema.js';

/**
 * A validated configuration with everything it refers to read in (welcome templates, absolute
 * file paths): the self-contained snapshot that a sync runs against.
 */
export type ResolvedConfig = Config & {
  /** Welcome email HTML per customer name, for customers whose configuration names a template. */
  readonly templates: Readonly<Record<string, string>>;
  /** Moved email HTML per customer name (absent in configurations applied before moved emails existed). */
  readonly movedTemplates?: Readonly<Record<string, string>>;
};

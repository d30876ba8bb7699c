/*
 * What a source read hands up, below the workflows: where it stopped, what it could not use, and the
 * watermark the next update sync starts from. Opaque to workflows; meaningful to the source adapters.
 */

/** Where a source read stopped; opaque to workflows, meaningful to the source adapter. */
export type SourceCursor = Readonly<Record<string, unknown>>;

/** A record the source could not turn into a user, and where it is. */
export interface SourceProblem {
  /** Where in the source: `line 12` for a file, a DN or an id for a directory. */
  readonly at: string;
  readonly message: string;
}

/** A source's watermark (opaque to workflows) with the fingerprint of the settings it was read with. */
export interface SourceWatermarkRecord {
  readonly fingerprint: string;
  readonly mark: Readonly<Record<string, unknown>>;
}

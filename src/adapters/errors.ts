/**
 * An error that retrying cannot fix: bad configuration, an invalid record, a missing secret, a
 * recipient the mail server refuses. Activities turn it into a non-retryable failure.
 */
export class PermanentError extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
    this.name = 'PermanentError';
  }
}

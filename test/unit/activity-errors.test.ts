import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../src/adapters/errors.js';
import { GraphUnavailableError } from '../../src/adapters/sources/graph-client.js';
import { withErrorKinds } from '../../src/activities/index.js';

describe('activity errors as Temporal sees them', () => {
  const failing = (error: Error) => withErrorKinds({ act: async () => Promise.reject(error) }).act();

  it('a permanent error is a non-retryable failure with its kind', async () => {
    const failure = await failing(new PermanentError('SourceCredentials', 'bad password')).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ nonRetryable: true, type: 'SourceCredentials', message: 'bad password' });
  });

  it("a throttled source's Retry-After becomes the next attempt's delay", async () => {
    const failure = await failing(new GraphUnavailableError('Graph throttled the request', 120_000)).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ nonRetryable: false, type: 'SourceThrottled', nextRetryDelay: 120_000 });
  });

  it('a statement the database refuses for its data is not retried; a restarting database is', async () => {
    const refused = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code: '22021' });
    const failure = await failing(refused).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ nonRetryable: true, type: 'DatabaseRejected' });
    expect((failure as Error).message).toContain('SQLSTATE 22021');
    const restarting = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    await expect(failing(restarting)).rejects.toBe(restarting);
  });

  it('anything else is left as it is: retried on the activity policy', async () => {
    const error = new GraphUnavailableError('Graph answered 500');
    await expect(failing(error)).rejects.toBe(error);
  });
});

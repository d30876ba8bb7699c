import { userInfo } from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cliActor } from '../../src/client/operations.js';

describe("the CLI's operator in the transaction log", () => {
  afterEach(() => vi.unstubAllEnvs());

  it('is $USER, else $LOGNAME, else the account the process runs as (cron sets neither variable)', () => {
    vi.stubEnv('USER', 'alice');
    vi.stubEnv('LOGNAME', 'bob');
    expect(cliActor()).toEqual({ name: 'alice', via: 'cli' });
    vi.stubEnv('USER', '');
    expect(cliActor().name).toBe('bob');
    vi.stubEnv('LOGNAME', '');
    expect(cliActor().name).toBe(userInfo().username);
    expect(cliActor().name).not.toBe('unknown');
  });
});

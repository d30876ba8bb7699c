import { defineConfig } from 'vitest/config';
import { testPayloadKeyEnv } from './test/support/payload-keys.js';

export default defineConfig({
  test: {
    // Temporal's native bridge crashes inside worker threads: every test file gets its own process.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // One key for the whole run (test files share one Temporal server), made here, once.
    env: testPayloadKeyEnv(),
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});

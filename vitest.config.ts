import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Temporal's native bridge crashes inside worker threads: every test file gets its own process.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});

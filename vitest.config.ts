import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'dicomweb/**/*.test.ts',
      'storage/**/*.test.ts',
      'server/**/*.test.ts',
      'scripts/**/*.test.ts',
      'tests/**/*.test.ts',
    ],
    environment: 'node',
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});

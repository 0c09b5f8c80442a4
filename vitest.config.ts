import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['test/**/*.test.ts'],
          exclude: ['test/windows/**', '**/node_modules/**'],
          // Integration and e2e suites start real processes; keep them from starving each other on 2 cores.
          fileParallelism: true,
          maxWorkers: 2,
          globalSetup: ['./test/helpers/global-setup.ts'],
        },
      },
      {
        // The Windows side under Wine (docs/windows.md), after the main suite: `npm run test:windows` alone.
        extends: true,
        test: {
          name: 'windows',
          include: ['test/windows/**/*.test.ts'],
          // One file at a time: every file starts node.exe processes, each several times slower under Wine.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 1 },
          globalSetup: ['./test/helpers/global-setup.ts', './test/windows/global-setup.ts'],
        },
      },
    ],
  },
});

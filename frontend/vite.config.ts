/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// The app is served under the API stage (`/<stage>/`), so every asset URL is relative, and the
// API is called relative to the document (see src/api.ts).
export default defineConfig({
  base: './',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2020',
    sourcemap: false,
    // Everything is bundled; nothing is fetched from another origin at run time.
    assetsInlineLimit: 4096,
  },
  test: {
    environment: 'jsdom',
    // Unit tests only: test/*.test.ts(x), not subfolders (room for browser tests elsewhere).
    include: ['test/*.test.{ts,tsx}'],
    restoreMocks: true,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});

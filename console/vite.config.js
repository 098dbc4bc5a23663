// The console is served by every node: index.html at /, the hashed build files under
// /console/ (the only other path the node serves for it; see src/node/console.h).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  // `npm run dev`: the page from Vite, the API from a running node (MERIDIAN_URL).
  server: {
    proxy: {
      '/v1': { target: process.env.MERIDIAN_URL || 'https://127.0.0.1:7403', secure: false },
    },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'console',
    emptyOutDir: true,
    // One script and one stylesheet: the node embeds whatever is here.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1000,
    target: 'es2020',
  },
});

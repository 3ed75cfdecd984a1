import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import react from '@vitejs/plugin-react';
import { defineConfig, type Plugin } from 'vite';

const pacsUrl = process.env.PACS_URL ?? 'http://127.0.0.1:8080';
const proxy = Object.fromEntries(
  ['/dicomweb', '/api', '/healthz'].map((p) => [p, { target: pacsUrl, changeOrigin: true }]),
);

/**
 * Writes a .gz next to every compressible asset so the server can send it precompressed to slow links.
 * Done on the files as written (writeBundle), after every other plugin has finished the code: compressing
 * in generateBundle would capture chunks before Vite's own final rewrites (its preload helper).
 */
function precompress(): Plugin {
  return {
    name: 'pacs-precompress',
    apply: 'build',
    async writeBundle(options, bundle) {
      const dir = options.dir ?? 'dist';
      for (const fileName of Object.keys(bundle)) {
        if (!/\.(js|css|html|wasm|json|svg)$/.test(fileName)) continue;
        const bytes = await readFile(path.join(dir, fileName));
        if (bytes.length < 1024) continue;
        await writeFile(path.join(dir, `${fileName}.gz`), gzipSync(bytes, { level: 9 }));
      }
    },
  };
}

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  plugins: [react(), precompress()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 5000,
    // dist/.vite/manifest.json: the server reads the viewer page's chunks from it to preload them
    // with the HTML of a study's address (server/app.ts).
    manifest: true,
  },
  server: { proxy },
  preview: { proxy },
  optimizeDeps: {
    exclude: ['@cornerstonejs/dicom-image-loader'],
    include: [
      'dicom-parser',
      '@cornerstonejs/metadata',
      'comlink',
      'pako',
      '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs',
      '@cornerstonejs/codec-charls/decodewasmjs',
      '@cornerstonejs/codec-openjpeg/decodewasmjs',
      '@cornerstonejs/codec-openjph/wasmjs',
      '@cornerstonejs/codec-libjxl/decodewasmjs',
    ],
  },
  worker: { format: 'es' },
});

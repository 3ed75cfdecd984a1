// Entry of a transcoding worker thread: the worker's code is TypeScript (worker.ts), loaded through tsx
// as the rest of the server is, whether the server runs under tsx or under vitest.
import { register } from 'tsx/esm/api';

register();
await import(new URL('./worker.ts', import.meta.url).href);

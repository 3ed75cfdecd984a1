import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runBlobContract } from '../tests/contract/blob-contract';
import { FsBlobStore } from './fs-blob';

const dirs: string[] = [];
runBlobContract('filesystem', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pacs-blob-'));
  dirs.push(dir);
  const store = await FsBlobStore.open(dir);
  return Object.assign(store, {
    close: async () => {
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    },
  });
});

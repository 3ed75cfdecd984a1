/**
 * A real S3 server for tests and benchmarks: s3rver over HTTP on a free port, in a temporary folder, in a child process
 * (see s3rver-child.mjs). Clients use path-style addressing and any credentials.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface TestS3 {
  endpoint: string;
  /** s3rver's folder. */
  dir: string;
  /** Upload ids of the multipart uploads aborted so far. */
  aborted: string[];
  /** Whether any folder under dir is named name (s3rver keeps an upload's parts in a folder named by its id). */
  hasDir(name: string): Promise<boolean>;
  close(): Promise<void>;
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 's3rver-child.mjs');

export async function startS3rver(buckets: string[]): Promise<TestS3> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pacs-s3rver-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', CHILD, dir, '0', ...buckets], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const aborted: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`s3rver exited with code ${code}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { port?: number; aborted?: string };
      if (msg.port) resolve(msg.port);
      if (msg.aborted) aborted.push(msg.aborted);
    });
  });
  const hasDir = async (name: string, root = dir): Promise<boolean> => {
    for (const e of await readdir(root, { withFileTypes: true })) {
      if (e.isDirectory() && (e.name === name || (await hasDir(name, path.join(root, e.name))))) return true;
    }
    return false;
  };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    dir,
    aborted,
    hasDir: (name) => hasDir(name),
    close: async () => {
      child.stdin.end();
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

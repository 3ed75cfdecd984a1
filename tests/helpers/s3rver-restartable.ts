/**
 * A real S3 server (s3rver, in a child process) that a test can stop and start again, on the same port
 * and the same folder: the object store of a running archive going away and coming back. stop() takes
 * it down at once: it stops listening, cuts the requests in flight and exits (see
 * scripts/lib/s3rver-child.mjs for why it is SIGTERM and not SIGKILL).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../scripts/lib/net';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/lib/s3rver-child.mjs');

export interface RestartableS3 {
  endpoint: string;
  dir: string;
  /** Variables for an archive using this store (path-style, any credentials). */
  env(bucket: string, prefix?: string): Record<string, string>;
  running(): boolean;
  /** Undefined unless the server died by itself: then how (exit code or signal, its last stderr). */
  fault(): Promise<string | undefined>;
  /** Takes the server down (connections refused, requests in flight cut) and waits for its exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder. */
  start(): Promise<void>;
  /** Stops it and removes its folder. */
  close(): Promise<void>;
}

export async function startRestartableS3rver(buckets: string[]): Promise<RestartableS3> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pacs-s3rver-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let death: string | undefined;

  const start = async () => {
    if (child) return;
    // Right after a kill the port may still be held for a moment: try again briefly.
    for (let attempt = 0; ; attempt++) {
      const c = spawn(process.execPath, ['--openssl-legacy-provider', CHILD, dir, String(port), ...buckets], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stderr = '';
      c.stderr?.on('data', (d) => {
        stderr += String(d);
      });
      const ended = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      try {
        await new Promise<void>((resolve, reject) => {
          c.once('exit', (code) => reject(new Error(`s3rver exited with code ${code}: ${stderr}`)));
          createInterface({ input: c.stdout! }).on('line', (line) => {
            if ((JSON.parse(line) as { port?: number }).port === port) resolve();
          });
        });
      } catch (err) {
        if (attempt < 20 && /EADDRINUSE/.test(String(err))) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        throw err;
      }
      child = c;
      exited = ended;
      c.once('exit', (code, signal) => {
        if (child !== c) return; // stopped or closed by the test
        child = undefined;
        death = `s3rver (port ${port}) exited by itself (${code ?? signal}): ${stderr.slice(-2000)}`;
      });
      return;
    }
  };
  const stop = async () => {
    if (!child) return;
    const c = child;
    child = undefined;
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  await start();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    dir,
    env: (bucket, prefix = 'archive') => ({
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}`,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      PACS_BLOB_STORE: `s3://${bucket}/${prefix}`,
      PACS_S3_FORCE_PATH_STYLE: 'true',
    }),
    running: () => child !== undefined,
    fault: async () => (child ? undefined : death),
    stop,
    start,
    close: async () => {
      if (child) {
        const c = child;
        child = undefined;
        c.stdin?.end();
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

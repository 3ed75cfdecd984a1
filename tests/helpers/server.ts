/**
 * Starts the real archive (in this process, on a free port, with its own temporary data folder) for
 * tests that cross modules, and small helpers to load the sample DICOM files into it.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../server/config';
import { type Logger, silentLogger } from '../../server/log';
import { type RunningServer, startServer as start } from '../../server/main';
import { REPO, SAMPLES } from '../samples';

export { REPO, SAMPLES, SAMPLES_MISSING, samplesPresent } from '../samples';

export interface TestServer {
  baseUrl: string;
  dicomweb: string;
  dataDir: string;
  /** The running server itself (its app, storage and security services). */
  running: RunningServer;
  close(): Promise<void>;
}

export async function startServer(
  opts: { dataDir?: string; env?: Record<string, string>; logger?: Logger } = {},
): Promise<TestServer> {
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'pacs-test-')));
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    PACS_DATA_DIR: dataDir,
    PACS_VIEWER_DIR: path.join(REPO, 'viewer/dist'),
    // The suites that test the archive's functions run without sign-in (allowed on loopback only);
    // tests/security tests sign-in, roles, share links and the audit trail with PACS_AUTH=on.
    PACS_AUTH: 'off',
    ...opts.env,
  });
  const running = await start(config, opts.logger ?? silentLogger);
  return {
    baseUrl: running.url,
    dicomweb: `${running.url}/dicomweb`,
    dataDir,
    running,
    close: async () => {
      await running.close();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Every file under a folder, recursively, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else out.push(p);
  }
  return out.sort();
}

export function multipartBody(
  files: Uint8Array[],
  boundary = 'testBoundary0123456789',
): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const f of files) {
    chunks.push(
      Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
      Buffer.from(f),
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    body: Buffer.concat(chunks),
    contentType: `multipart/related; type="application/dicom"; boundary=${boundary}`,
  };
}

/** STOW-RS of files; returns the HTTP status and the DICOM JSON response. */
export async function stow(
  baseUrl: string,
  files: (string | Uint8Array)[],
  study?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, { Value?: Record<string, { Value?: unknown[] }>[] }> }> {
  const bytes = await Promise.all(
    files.map((f) => (typeof f === 'string' ? readFile(f) : Promise.resolve(f))),
  );
  const { body, contentType } = multipartBody(bytes);
  const res = await fetch(`${baseUrl}/dicomweb/studies${study ? `/${study}` : ''}`, {
    method: 'POST',
    headers: { ...headers, 'Content-Type': contentType, Accept: 'application/dicom+json' },
    body: new Uint8Array(body),
  });
  return { status: res.status, json: (await res.json()) as never };
}

/**
 * Loads sample files (paths relative to the samples folder, or absolute) into a running server; with
 * PACS_AUTH=on, token is an API token allowed to store (e.g. the server's PACS_ADMIN_TOKEN).
 */
export async function loadSamples(
  baseUrl: string,
  files: string[],
  opts: { token?: string } = {},
): Promise<void> {
  const headers: Record<string, string> = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
  for (let i = 0; i < files.length; i += 20) {
    const batch = files.slice(i, i + 20).map((f) => (path.isAbsolute(f) ? f : path.join(SAMPLES, f)));
    const r = await stow(baseUrl, batch, undefined, headers);
    if (r.status !== 200 && r.status !== 202) throw new Error(`loading samples failed: HTTP ${r.status}`);
  }
}

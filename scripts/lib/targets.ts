/**
 * Benchmark targets: our server (child process `node --import tsx server/main.ts`) on the embedded
 * default or on S3 + PostgreSQL, and a local
 * Orthanc with the DICOMweb plugin, each with a fresh temporary data folder. A Target names the
 * DICOMweb root and the server's pid (for RSS sampling), so the workload code is server-agnostic.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_AE_TITLE } from './bench-dimse';
import { startPostgres } from './pg-cluster';
import { startS3rver } from './s3rver';
import { freePort } from './net';

export interface Target {
  name: string;
  /** e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  /** e.g. http://127.0.0.1:8080/dicomweb */
  dicomwebRoot: string;
  /** pid of the server process itself (not a wrapper), for /proc/<pid>/status. */
  pid: number;
  dataDir: string;
  /** Port of its DICOM (DIMSE) listener, when it has one. */
  dimsePort?: number;
  close(): Promise<void>;
}

async function waitReady(
  url: string,
  child: ChildProcess,
  log: () => string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before ready:\n${log()}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`server not ready at ${url} after ${timeoutMs} ms:\n${log()}`);
}

function captureLog(child: ChildProcess, max = 20_000): () => string {
  let buf = '';
  const add = (c: Buffer) => {
    buf = (buf + c.toString('utf8')).slice(-max);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => buf;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * The Target for a server just spawned (call it at once, so that its output is captured), once each of
 * `readyPaths` answers in turn; if it does not get there, stops it, removes its data folder and throws.
 */
async function whenReady(
  child: ChildProcess,
  t: { name: string; port: number; root: string; readyPaths: string[]; dataDir: string },
  opts: StartOptions,
): Promise<Target> {
  const log = captureLog(child);
  const baseUrl = `http://127.0.0.1:${t.port}`;
  try {
    for (const p of t.readyPaths) await waitReady(`${baseUrl}${p}`, child, log);
  } catch (err) {
    await stopChild(child);
    await rm(t.dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    name: t.name,
    baseUrl,
    dicomwebRoot: `${baseUrl}${t.root}`,
    pid: child.pid!,
    dataDir: t.dataDir,
    close: async () => {
      await stopChild(child);
      if (!opts.keepData) await rm(t.dataDir, { recursive: true, force: true });
    },
  };
}

export interface StartOptions {
  port?: number;
  /** Keep the data folder after close (default: removed). */
  keepData?: boolean;
  env?: Record<string, string>;
}

/** Starts our server from the repository at `repoRoot` (default: the repository holding this file). */
export async function startOurServer(opts: StartOptions & { repoRoot?: string } = {}): Promise<Target> {
  const repoRoot = resolve(opts.repoRoot ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..'));
  const main = join(repoRoot, 'server', 'main.ts');
  if (!existsSync(main)) throw new Error(`${main} does not exist yet`);
  const port = opts.port ?? (await freePort());
  const dimsePort = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), 'pacs-bench-'));
  const child = spawn(process.execPath, ['--import', 'tsx', main], {
    cwd: repoRoot,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      PACS_DATA_DIR: dataDir,
      PACS_AUTH: 'off', // loopback only: no sign-in
      PACS_DIMSE_PORT: String(dimsePort),
      // Only the benchmark's C-STORE SCU, from loopback: the allow-list is checked as in production.
      PACS_DIMSE_ALLOWED_AES: `${BENCH_AE_TITLE}@127.0.0.1`,
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const target = await whenReady(
    child,
    { name: 'ours', port, root: '/dicomweb', readyPaths: ['/healthz'], dataDir },
    opts,
  );
  return { ...target, dimsePort };
}

/**
 * Our server on S3 + PostgreSQL: a real S3 server (s3rver, over HTTP on loopback) and a throwaway
 * PostgreSQL cluster, both started here and removed on close. s3rver keeps objects as files and is far
 * slower than MinIO or a real object store: read its figures as a lower bound of that configuration.
 */
export async function startOurServerOnS3Postgres(opts: StartOptions = {}): Promise<Target> {
  const bucket = 'pacs-bench';
  const [s3, pg] = await Promise.all([startS3rver([bucket]), startPostgres({ durable: true })]);
  try {
    const target = await startOurServer({
      ...opts,
      env: {
        AWS_ENDPOINT_URL_S3: s3.endpoint,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        PACS_BLOB_STORE: `s3://${bucket}/archive`,
        PACS_S3_FORCE_PATH_STYLE: 'true',
        DATABASE_URL: pg.url,
        ...opts.env,
      },
    });
    return {
      ...target,
      name: 'ours-s3pg',
      close: async () => {
        await target.close();
        await Promise.all([s3.close(), pg.close()]);
      },
    };
  } catch (err) {
    await Promise.all([s3.close(), pg.close()]);
    throw err;
  }
}

export const ORTHANC_BIN = '/usr/sbin/Orthanc';
export const ORTHANC_DICOMWEB_PLUGIN_DIRS = ['/usr/share/orthanc/plugins', '/usr/lib/orthanc/plugins'];

export function findOrthanc(): { bin: string; plugin: string } | null {
  const bin = process.env.ORTHANC_BIN ?? ORTHANC_BIN;
  if (!existsSync(bin)) return null;
  for (const dir of ORTHANC_DICOMWEB_PLUGIN_DIRS) {
    const p = join(dir, 'libOrthancDicomWeb.so');
    if (existsSync(p)) return { bin, plugin: p };
  }
  return null;
}

/**
 * Starts Orthanc (Debian packages `orthanc` + `orthanc-dicomweb`) with a temporary configuration:
 * HTTP only, no authentication, no DICOM listener, DICOMweb at /dicom-web/ with full series and
 * study metadata. Everything else is Orthanc's default (SQLite index, filesystem storage).
 */
export async function startOrthanc(opts: StartOptions = {}): Promise<Target> {
  const found = findOrthanc();
  if (!found)
    throw new Error(
      'Orthanc with the DICOMweb plugin is not installed (apt install orthanc orthanc-dicomweb)',
    );
  const port = opts.port ?? (await freePort());
  const dataDir = await mkdtemp(join(tmpdir(), 'orthanc-bench-'));
  const config = {
    Name: 'BenchOrthanc',
    StorageDirectory: join(dataDir, 'storage'),
    IndexDirectory: join(dataDir, 'storage'),
    HttpPort: port,
    HttpBindAddress: '127.0.0.1',
    RemoteAccessAllowed: true,
    AuthenticationEnabled: false,
    DicomServerEnabled: false,
    Plugins: [found.plugin],
    DicomWeb: {
      Enable: true,
      Root: '/dicom-web/',
      EnableWado: false,
      StudiesMetadata: 'Full',
      SeriesMetadata: 'Full',
    },
  };
  const configPath = join(dataDir, 'orthanc.json');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const child = spawn(found.bin, [configPath], {
    cwd: dataDir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return whenReady(
    child,
    {
      name: 'orthanc',
      port,
      root: '/dicom-web',
      readyPaths: ['/system', '/dicom-web/studies?limit=1'],
      dataDir,
    },
    opts,
  );
}

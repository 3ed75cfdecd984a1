/**
 * A throwaway Orthanc (Debian `orthanc`) for the interoperability tests: its own folder and
 * configuration, its REST API, stopped and removed by close(). Also what both tests read from files.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import type { Client } from '../security/setup';
import { parseDicom } from './dicom-parse';

export interface Orthanc {
  url: string;
  log(): string;
  /** Orthanc's REST API; throws with Orthanc's answer unless the status is `expect` (default 200). */
  call<T = unknown>(method: string, p: string, body?: unknown, expect?: number): Promise<T>;
  close(): Promise<void>;
}

export interface OrthancOptions {
  bin: string;
  /** Orthanc's configuration; storage, index, HTTP port and address are set here. */
  config: Record<string, unknown>;
  httpPort: number;
  /** Folder name prefix under the temporary folder. */
  prefix: string;
  /** Command-line arguments before the configuration file (e.g. --verbose). */
  args?: string[];
  /** A REST path that answers 200 once Orthanc is ready. */
  readyPath?: string;
  /** How much of Orthanc's output is kept for the error messages (characters). */
  logChars?: number;
}

export async function startOrthanc(opts: OrthancOptions): Promise<Orthanc> {
  const dir = await mkdtemp(path.join(tmpdir(), opts.prefix));
  const config = {
    StorageDirectory: path.join(dir, 'db'),
    IndexDirectory: path.join(dir, 'db'),
    HttpPort: opts.httpPort,
    HttpBindAddress: '127.0.0.1',
    RemoteAccessAllowed: true,
    AuthenticationEnabled: false,
    ...opts.config,
  };
  await writeFile(path.join(dir, 'orthanc.json'), JSON.stringify(config, null, 2));
  const child: ChildProcess = spawn(opts.bin, [...(opts.args ?? []), path.join(dir, 'orthanc.json')], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = opts.logChars ?? 20_000;
  let log = '';
  const add = (c: Buffer) => {
    log = (log + c.toString('utf8')).slice(-keep);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  const url = `http://127.0.0.1:${opts.httpPort}`;
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await close();
      throw new Error(`Orthanc exited (${child.exitCode}):\n${log}`);
    }
    const ok = await fetch(`${url}${opts.readyPath ?? '/system'}`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) {
      await close();
      throw new Error(`Orthanc did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const call = async <T>(method: string, p: string, body?: unknown, expect = 200): Promise<T> => {
    const r = await fetch(`${url}${p}`, {
      method,
      body:
        body === undefined
          ? undefined
          : body instanceof Uint8Array
            ? new Uint8Array(body)
            : JSON.stringify(body),
    });
    const bytes = new Uint8Array(await r.arrayBuffer());
    if (r.status !== expect)
      throw new Error(`Orthanc ${method} ${p}: HTTP ${r.status} ${Buffer.from(bytes).toString('utf8')}`);
    const type = r.headers.get('content-type') ?? '';
    return (type.includes('json') ? JSON.parse(Buffer.from(bytes).toString('utf8')) : bytes) as T;
  };
  return { url, log: () => log, call, close };
}

/**
 * A free TCP port in [from, from + 1000) (the range a test may use), not among `taken`. Keep `from`
 * below Linux's ephemeral range (32768-60999): a port found free there can be taken by another test's
 * outgoing connection before the peer started on it binds it.
 */
export async function freePortFrom(from: number, taken = new Set<number>()): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = from + Math.floor(Math.random() * 1000);
    if (taken.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) {
      taken.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${from}-${from + 999}`);
}

/** A file's data set up to its pixel data, for its UIDs (a deflated data set inflated). */
export const parseHeader = (bytes: Uint8Array) => parseDicom(bytes, 'x7fe00010');

export interface OrthancCounts {
  CountPatients: number;
  CountStudies: number;
  CountSeries: number;
  CountInstances: number;
}

/** What Orthanc holds. */
export const orthancCounts = (orthanc: Orthanc) => orthanc.call<OrthancCounts>('GET', '/statistics');

/**
 * The studies, series and instances the archive lists (to its administrator) are as many as Orthanc
 * holds; returns how many instances.
 */
export async function expectSameCounts(orthanc: Orthanc, admin: Client): Promise<number> {
  const counts = await orthancCounts(orthanc);
  const listed = async (level: string) =>
    (await admin.json<unknown[]>(`/dicomweb/${level}?limit=1000`)).length;
  const archive = [await listed('studies'), await listed('series'), await listed('instances')];
  expect(archive).toEqual([counts.CountStudies, counts.CountSeries, counts.CountInstances]);
  return archive[2];
}

/**
 * The archive as a process of its own (`node --import tsx server/main.ts`, what `npm start` runs), for
 * the reliability tests and tools (crash, faults, soak, fuzz): it can be killed like a crashing machine and
 * started again on the same storage, and its memory and open files are read from /proc.
 * The listening URL comes from the server's JSON log line `listening` (PORT=0 picks a free port).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ArchiveProcess {
  /** http://127.0.0.1:PORT */
  baseUrl: string;
  /** http://127.0.0.1:PORT/dicomweb */
  dicomweb: string;
  pid: number;
  child: ChildProcess;
  /** Log lines of level "error" (unhandled errors and the like), parsed. */
  errors: Record<string, unknown>[];
  /** The last lines the process printed (stdout and stderr), for failure messages. */
  tail(): string;
  /** Whether the process has exited (and how). */
  exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** SIGTERM (a clean stop), SIGKILL after 15 s; waits for the exit. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: no shutdown code runs) and wait for the exit. */
  kill(): Promise<void>;
}

export interface ArchiveOptions {
  /** PACS_DATA_DIR */
  dataDir: string;
  /** More variables (storage, limits); HOST=127.0.0.1 and PORT=0 unless given. */
  env?: Record<string, string>;
  /** Milliseconds to wait for the `listening` line (default 60 s). */
  startTimeoutMs?: number;
}

export async function startArchive(opts: ArchiveOptions): Promise<ArchiveProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'server/main.ts')], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      PACS_VIEWER_DIR: join(REPO_ROOT, 'viewer/dist'),
      PACS_DATA_DIR: opts.dataDir,
      PACS_AUTH: 'off', // loopback only: no sign-in
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  const errors: Record<string, unknown>[] = [];
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<void>((done) =>
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      done();
    }),
  );
  createInterface({ input: child.stderr! }).on('line', keep);
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the archive did not start within ${opts.startTimeoutMs ?? 60_000} ms:\n${tail()}`));
    }, opts.startTimeoutMs ?? 60_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the archive exited (${code ?? signal}) before listening:\n${tail()}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      if (!line.startsWith('{')) return;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (msg.level === 'error') errors.push(msg);
      if (msg.msg === 'listening' && typeof msg.url === 'string') {
        clearTimeout(timer);
        resolveUrl(msg.url);
      }
    });
  });
  function tail() {
    return lines.slice(-40).join('\n');
  }
  const end = async (signal: NodeJS.Signals) => {
    if (exitInfo) return;
    child.kill(signal);
    const timer = signal === 'SIGKILL' ? undefined : setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  return {
    baseUrl: url,
    dicomweb: `${url}/dicomweb`,
    pid: child.pid!,
    child,
    errors,
    tail,
    exit: () => exitInfo,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
  };
}

/** Resident memory of a process, in MB (Linux /proc). */
export function rssMB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : Number.NaN;
}

/**
 * Open file descriptors of a process (files, folders, sockets, pipes), from /proc/PID/fd. Folders are
 * counted apart: the filesystem blob store keeps its folders open for their fsync.
 */
export function openFds(pid: number): { total: number; files: string[]; folders: string[]; sockets: number } {
  const dir = `/proc/${pid}/fd`;
  const files: string[] = [];
  const folders: string[] = [];
  let sockets = 0;
  let total = 0;
  for (const fd of readdirSync(dir)) {
    let target: string;
    try {
      target = readlinkSync(`${dir}/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    total++;
    if (target.startsWith('socket:')) sockets++;
    else if (target.startsWith('/') && !target.startsWith('/dev/') && !target.startsWith('/proc/')) {
      let folder = false;
      try {
        folder = statSync(`${dir}/${fd}`).isDirectory();
      } catch {
        // closed meanwhile: counted as a file
      }
      (folder ? folders : files).push(target);
    }
  }
  return { total, files, folders, sockets };
}

/**
 * Which archive processes work on a data folder: each server, and each maintenance run that changes the
 * index (reindex, fsck --repair), writes `<PACS_DATA_DIR>/run/<pid>.pid` while it runs, so that neither
 * starts under the other. A file left by a process that died (or whose number now belongs to another
 * program) is recognised and removed. It only sees the processes of this host: with PostgreSQL, the
 * servers of other hosts must be stopped by hand.
 */
import { rmSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

const RUN_DIR = 'run';

export type ProcessKind = 'server' | 'maintenance';

/** What the command line of each kind of process contains (`node --import tsx server/main.ts`). */
const ENTRY: Record<ProcessKind, string> = {
  server: 'server/main.ts',
  maintenance: 'scripts/maintenance.ts',
};

/** Registers this process on the folder; the returned function (synchronous) unregisters it. */
export async function registerProcess(
  dataDir: string,
  kind: ProcessKind,
  detail: Record<string, unknown> = {},
): Promise<() => void> {
  const dir = path.join(dataDir, RUN_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700); // only the archive's own user may put files there
  const file = path.join(dir, `${process.pid}.pid`);
  // A file left under this number (or a link planted there) is removed, and the new one is created
  // exclusively: a symbolic link is never followed to overwrite another file.
  await rm(file, { force: true });
  const content = { pid: process.pid, kind, started: new Date().toISOString(), ...detail };
  await writeFile(file, `${JSON.stringify(content)}\n`, { flag: 'wx', mode: 0o600 });
  return () => rmSync(file, { force: true });
}

/** Process numbers of the other processes of that kind running on the folder (this one excluded). */
export async function runningProcesses(dataDir: string, kind: ProcessKind): Promise<number[]> {
  const dir = path.join(dataDir, RUN_DIR);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const live: number[] = [];
  for (const name of names) {
    const m = /^(\d+)\.pid$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid) continue;
    const found = await runningAs(pid);
    if (found === undefined) await rm(path.join(dir, name), { force: true });
    else if (found === kind || found === 'unknown') live.push(pid);
  }
  return live.sort((a, b) => a - b);
}

/** The kind of archive process a number belongs to; 'unknown' when alive but unreadable; undefined if gone. */
async function runningAs(pid: number): Promise<ProcessKind | 'unknown' | undefined> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    // EPERM: alive, run by another user.
  }
  let cmdline: string;
  try {
    cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return 'unknown'; // no /proc (not Linux) or not readable: alive is all we know
  }
  for (const kind of Object.keys(ENTRY) as ProcessKind[]) if (cmdline.includes(ENTRY[kind])) return kind;
  return undefined; // the number now belongs to another program
}

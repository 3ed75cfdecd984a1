/**
 * Which archive processes serve a data folder: each writes `<PACS_DATA_DIR>/run/<pid>.pid` while it
 * runs, so that maintenance (reindex, fsck --repair) can refuse to work under a running server. A file
 * left by a process that died (or whose number now belongs to another program) is recognised and
 * removed. It only sees the servers of this host: with PostgreSQL, the servers of other hosts must be
 * stopped by hand.
 */
import { rmSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

const RUN_DIR = 'run';
/** What the command line of an archive process contains (`node --import tsx server/main.ts`). */
const SERVER_ENTRY = 'server/main.ts';

/** Registers this process as a server of the folder; the returned function (synchronous) unregisters it. */
export async function registerServer(dataDir: string, url: string): Promise<() => void> {
  const dir = path.join(dataDir, RUN_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700); // only the archive's own user may put files there
  const file = path.join(dir, `${process.pid}.pid`);
  // A file left under this number (or a link planted there) is removed, and the new one is created
  // exclusively: a symbolic link is never followed to overwrite another file.
  await rm(file, { force: true });
  await writeFile(file, `${JSON.stringify({ pid: process.pid, url, started: new Date().toISOString() })}\n`, {
    flag: 'wx',
    mode: 0o600,
  });
  return () => rmSync(file, { force: true });
}

/** Process numbers of the other archive servers running on the folder (this process excluded). */
export async function runningServers(dataDir: string): Promise<number[]> {
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
    if (await isServer(pid)) live.push(pid);
    else await rm(path.join(dir, name), { force: true });
  }
  return live.sort((a, b) => a - b);
}

async function isServer(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: alive, run by another user.
  }
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(SERVER_ENTRY);
  } catch {
    return true; // no /proc (not Linux) or not readable: alive is all we know
  }
}

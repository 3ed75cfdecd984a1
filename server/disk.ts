/**
 * The local disks the archive fills: the folder of the filesystem blob store, and the SQLite index's
 * folder when it is on another file system (or the blobs are in S3). A full data disk is how a small
 * archive most often stops storing: their free space is reported by GET /api/statistics, and watched
 * (PACS_DISK_WARN_PERCENT) so that the log warns long before.
 */
import { stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { blobFolder, type StorageOptions, sqliteIndexFile } from '../storage/open';
import type { Logger } from './log';

export interface DiskSpace {
  /** The folder whose file system this is. */
  path: string;
  /** What a process that is not root may still write (statfs bavail × bsize). */
  freeBytes: number;
  /** Size of the file system (blocks × bsize). */
  totalBytes: number;
  /** freeBytes of totalBytes, one decimal. */
  freePercent: number;
  /** Free space below PACS_DISK_WARN_PERCENT (never when it is 0). */
  low: boolean;
}

/** The free space of the file system holding folder. */
export async function diskSpace(folder: string, warnPercent: number): Promise<DiskSpace> {
  const s = await statfs(folder);
  const freeBytes = s.bavail * s.bsize;
  const totalBytes = s.blocks * s.bsize;
  return {
    path: folder,
    freeBytes,
    totalBytes,
    freePercent: totalBytes > 0 ? Math.round((freeBytes / totalBytes) * 1000) / 10 : 0,
    low: warnPercent > 0 && freeBytes * 100 < warnPercent * totalBytes,
  };
}

/** The folders the archive writes: the filesystem blob store's (not for S3), the SQLite index's (not for PostgreSQL). */
function archiveFolders(opts: StorageOptions): { blobs?: string; index?: string } {
  const file = sqliteIndexFile(opts);
  return { blobs: blobFolder(opts), index: file === undefined ? undefined : path.dirname(file) };
}

/**
 * The folders whose disks the archive fills: blobs, the filesystem blob store's (undefined for S3);
 * index, the SQLite index's, only when it is not on the blobs' file system (undefined for PostgreSQL).
 */
export async function localDisks(opts: StorageOptions): Promise<{ blobs?: string; index?: string }> {
  const { blobs, index } = archiveFolders(opts);
  if (index === undefined || blobs === undefined) return { blobs, index };
  const [a, b] = await Promise.all([stat(blobs), stat(index)]);
  return a.dev === b.dev ? { blobs } : { blobs, index };
}

/** How often the disks are checked, and how often a disk that stays low is warned about again. */
export const DISK_CHECK_MS = 60_000;
export const DISK_REWARN_MS = 3_600_000;

export interface DiskWatch {
  /** Checks every folder now (also done at start and every DISK_CHECK_MS). */
  check(): Promise<void>;
  close(): void;
}

/**
 * Checks the free space of folders at once and then every intervalMs (an unref'd timer: it keeps no
 * process alive). Below warnPercent: a warning when a disk goes low, again at most every rewarnMs
 * while it stays low, and an info line once it is no longer low. A check that fails is logged once
 * (until one succeeds again) and changes nothing else.
 */
export async function watchDisks(opts: {
  folders: string[];
  warnPercent: number;
  log: Logger;
  intervalMs?: number;
  rewarnMs?: number;
  now?: () => number;
  /** How a folder's free space is read (diskSpace; tests give others). */
  measure?: (folder: string, warnPercent: number) => Promise<DiskSpace>;
}): Promise<DiskWatch> {
  const { folders, warnPercent, log } = opts;
  const rewarnMs = opts.rewarnMs ?? DISK_REWARN_MS;
  const now = opts.now ?? Date.now;
  const measure = opts.measure ?? diskSpace;
  const state = new Map(folders.map((f) => [f, { low: false, warnedAt: 0, failed: false }]));
  const gb = (bytes: number) => Math.round(bytes / 1e8) / 10;
  const checkOne = async (folder: string) => {
    const st = state.get(folder)!;
    let s: DiskSpace;
    try {
      s = await measure(folder, warnPercent);
    } catch (err) {
      if (!st.failed) log.warn('cannot check the free disk space', { path: folder, err });
      st.failed = true;
      return;
    }
    st.failed = false;
    const fields = {
      path: folder,
      freeGB: gb(s.freeBytes),
      totalGB: gb(s.totalBytes),
      freePercent: s.freePercent,
      warnPercent,
    };
    if (s.low) {
      if (!st.low || now() - st.warnedAt >= rewarnMs) {
        log.warn('low disk space', fields);
        st.warnedAt = now();
      }
      st.low = true;
    } else if (st.low) {
      log.info('disk space no longer low', fields);
      st.low = false;
    }
  };
  let running: Promise<void> | undefined;
  const check = () => {
    running ??= Promise.all(folders.map(checkOne))
      .then(() => undefined)
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  await check();
  const timer = setInterval(() => void check(), opts.intervalMs ?? DISK_CHECK_MS);
  timer.unref();
  return { check, close: () => clearInterval(timer) };
}

/** The disk watch of a server's configuration; undefined when PACS_DISK_WARN_PERCENT is 0 or no disk is local. */
export async function watchArchiveDisks(
  opts: StorageOptions,
  warnPercent: number,
  log: Logger,
): Promise<DiskWatch | undefined> {
  if (warnPercent === 0) return undefined;
  // A folder that cannot be read now is still watched: its checks say why they fail.
  const disks = await localDisks(opts).catch(() => archiveFolders(opts));
  const folders = [...new Set([disks.blobs, disks.index])].filter((f): f is string => f !== undefined);
  if (folders.length === 0) return undefined;
  return watchDisks({ folders, warnPercent, log });
}

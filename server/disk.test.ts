import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type DiskSpace, diskSpace, localDisks, watchDisks } from './disk';
import { loadConfig } from './config';
import { createLogger } from './log';

const GB = 1e9;

/** A disk of 100 GB with free GB free (low below 10%), or a failure. */
function disk(free: number | Error, warnPercent = 10): DiskSpace {
  if (free instanceof Error) throw free;
  return {
    path: '/data/blobs',
    freeBytes: free * GB,
    totalBytes: 100 * GB,
    freePercent: free,
    low: free < warnPercent,
  };
}

function setup(initial: number | Error) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('debug', {}, (l) => lines.push(JSON.parse(l)));
  const state = { free: initial, time: 0, calls: 0 };
  const watch = watchDisks({
    folders: ['/data/blobs'],
    warnPercent: 10,
    log,
    now: () => state.time,
    measure: async () => {
      state.calls++;
      return disk(state.free);
    },
    intervalMs: 60_000,
  });
  const said = () => lines.map((l) => `${l.level} ${l.msg}`);
  return { lines, state, watch, said };
}

describe('watchDisks', () => {
  it('warns when a disk goes low, again at most once an hour while it stays low, and says when it is back', async () => {
    const { lines, state, watch, said } = setup(50);
    const w = await watch;
    try {
      expect(said()).toEqual([]);
      state.free = 7.25;
      state.time = 1000;
      await w.check();
      expect(said()).toEqual(['warn low disk space']);
      expect(lines[0]).toMatchObject({
        path: '/data/blobs',
        freeGB: 7.3,
        totalGB: 100,
        freePercent: 7.25,
        warnPercent: 10,
      });
      state.time += 59 * 60_000;
      await w.check();
      expect(said()).toHaveLength(1);
      state.time += 60_000;
      await w.check();
      expect(said()).toEqual(['warn low disk space', 'warn low disk space']);
      state.free = 12;
      await w.check();
      await w.check();
      expect(said()).toEqual(['warn low disk space', 'warn low disk space', 'info disk space no longer low']);
      // low again: at once, whatever the time of the last warning
      state.free = 9;
      state.time += 1;
      await w.check();
      expect(said()).toHaveLength(4);
      expect(said()[3]).toBe('warn low disk space');
    } finally {
      w.close();
    }
  });

  it('logs a check that fails once, until one succeeds again, and goes on checking', async () => {
    const { state, watch, said } = setup(new Error('EIO: statfs failed'));
    const w = await watch;
    try {
      await w.check();
      await w.check();
      expect(said()).toEqual(['warn cannot check the free disk space']);
      state.free = 5;
      await w.check();
      state.free = new Error('EIO again');
      await w.check();
      expect(said()).toEqual([
        'warn cannot check the free disk space',
        'warn low disk space',
        'warn cannot check the free disk space',
      ]);
    } finally {
      w.close();
    }
  });

  it('checks at start and then at each interval, until closed', async () => {
    let calls = 0;
    const w = await watchDisks({
      folders: ['/data/blobs'],
      warnPercent: 10,
      log: createLogger('error', {}, () => {}),
      intervalMs: 10,
      measure: async () => {
        calls++;
        return disk(50);
      },
    });
    expect(calls).toBe(1);
    await sleep(80);
    w.close();
    const seen = calls;
    expect(seen).toBeGreaterThan(2);
    await sleep(50);
    expect(calls).toBe(seen);
  });
});

describe('diskSpace', () => {
  it('reads a real file system: free of total, low only below a threshold, never at 0', async () => {
    const s = await diskSpace('.', 100);
    expect(s.totalBytes).toBeGreaterThan(0);
    expect(s.freeBytes).toBeLessThanOrEqual(s.totalBytes);
    expect(s.low).toBe(true);
    expect((await diskSpace('.', 0)).low).toBe(false);
    await expect(diskSpace('/no/such/folder', 10)).rejects.toThrow(/ENOENT/);
  });
});

describe('PACS_DISK_WARN_PERCENT', () => {
  it('is 10 by default, 0 turns the check off, anything but an integer from 0 to 100 is refused', () => {
    expect(loadConfig({}).diskWarnPercent).toBe(10);
    expect(loadConfig({ PACS_DISK_WARN_PERCENT: '0' }).diskWarnPercent).toBe(0);
    for (const bad of ['-1', '101', '5.5', 'ten'])
      expect(() => loadConfig({ PACS_DISK_WARN_PERCENT: bad }), bad).toThrow(
        `PACS_DISK_WARN_PERCENT=${bad}: expected an integer from 0 to 100`,
      );
  });
});

describe('localDisks', () => {
  const shm = '/dev/shm';
  const otherFs = existsSync(shm) && statSync(shm).dev !== statSync(tmpdir()).dev;

  it('names the blob folder, and the SQLite index folder only when on another file system', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-disks-'));
    try {
      await mkdir(path.join(dataDir, 'blobs'));
      expect(await localDisks({ dataDir })).toEqual({ blobs: path.join(dataDir, 'blobs') });
      expect(await localDisks({ dataDir, blobStore: 's3://bucket/archive' })).toEqual({ index: dataDir });
      expect(await localDisks({ dataDir, databaseUrl: 'postgres://pacs@db/pacs' })).toEqual({
        blobs: path.join(dataDir, 'blobs'),
      });
      expect(
        await localDisks({
          dataDir,
          blobStore: 's3://bucket/archive',
          databaseUrl: 'postgres://pacs@db/pacs',
        }),
      ).toEqual({});
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it.skipIf(!otherFs)('blobs mounted on another file system (here /dev/shm): both folders', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-disks-'));
    const elsewhere = await mkdtemp(path.join(shm, 'pacs-blobs-'));
    try {
      await symlink(elsewhere, path.join(dataDir, 'blobs'));
      expect(await localDisks({ dataDir })).toEqual({ blobs: path.join(dataDir, 'blobs'), index: dataDir });
    } finally {
      await rm(dataDir, { recursive: true, force: true });
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});

/**
 * The archive process as an operator starts and stops it: a failure to start is one line that says why,
 * and a SIGTERM sent twice (systemd to the whole group, and the parent) still ends in a clean shutdown.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTs } from '../helpers/process';
import { REPO } from '../helpers/server';

function archive(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    cwd: REPO,
    env: { ...process.env, PACS_AUTH: 'off', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exit, out: () => stdout, err: () => stderr };
}

describe('starting and stopping the archive', () => {
  it('says in one line why it did not start when its port is taken', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-startup-'));
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const a = archive({ PORT: String(port), PACS_DATA_DIR: dataDir });
      expect(await a.exit).toBe(1);
      expect(a.err()).toMatch(
        new RegExp(
          `^The archive did not start: the address 127\\.0\\.0\\.1:${port} is already in use .*set PORT`,
          'm',
        ),
      );
      expect(a.err()).not.toMatch(/^\s+at /m); // no stack trace unless LOG_LEVEL=debug
    } finally {
      taken.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('checks a configuration without starting anything (--check-config)', async () => {
    const ok = await runTs('server/main.ts', ['--check-config'], {
      env: { ...process.env, PACS_DATA_DIR: '/nonexistent/never-created' },
    });
    expect(ok).toEqual({ code: 0, output: 'configuration ok\n' });
    const bad = await runTs('server/main.ts', ['--check-config'], {
      env: { ...process.env, PACS_DIMSE_PORT: '11112', PORT: 'eighty' },
    });
    expect(bad.code).toBe(2);
    expect(bad.output).toMatch(
      /invalid configuration:\n {2}PORT=eighty.*\n {2}PACS_DIMSE_ALLOWED_AES: required/s,
    );
  });

  it('shuts down cleanly (exit 0) when SIGTERM comes twice', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-startup-'));
    try {
      const a = archive({ PORT: '0', PACS_DATA_DIR: dataDir });
      await expect.poll(() => a.out().includes('"msg":"listening"'), { timeout: 60_000 }).toBe(true);
      const listening = JSON.parse(
        a
          .out()
          .split('\n')
          .find((l) => l.includes('"msg":"listening"'))!,
      );
      expect(listening.blobStore).toBe(`${dataDir}/blobs`);
      expect(listening.index).toBe(`${dataDir}/index.sqlite`);
      a.child.kill('SIGTERM');
      a.child.kill('SIGTERM');
      expect(await a.exit).toBe(0);
      expect(a.out()).toMatch(/"msg":"shutting down"/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('with PACS_WORKERS=2, warns of low disk space once (the primary watches the disks, not each worker)', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-startup-'));
    try {
      // PACS_DISK_WARN_PERCENT=100: every disk is below the threshold, so whoever watches warns at start.
      const a = archive({
        PORT: '0',
        PACS_DATA_DIR: dataDir,
        PACS_WORKERS: '2',
        PACS_DISK_WARN_PERCENT: '100',
      });
      const lines = (msg: string) =>
        a
          .out()
          .split('\n')
          .filter((l) => l.includes(`"msg":"${msg}"`))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      await expect.poll(() => lines('listening').length, { timeout: 60_000 }).toBe(2);
      await expect.poll(() => lines('low disk space').length, { timeout: 10_000 }).toBeGreaterThan(0);
      // A worker's check would come within a second of its start; give them that and more.
      await new Promise((r) => setTimeout(r, 2000));
      const warnings = lines('low disk space');
      // One line per watched folder (the blob folder and the index file's, here the same disk)…
      expect(new Set(warnings.map((w) => w.path)).size).toBe(warnings.length);
      // …and from the primary: worker lines carry a "worker" field.
      expect(warnings.filter((w) => 'worker' in w)).toEqual([]);
      expect(lines('listening').every((l) => 'worker' in l)).toBe(true);
      a.child.kill('SIGTERM');
      expect(await a.exit).toBe(0);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { registerProcess, runningProcesses } from './run-registry';

describe('run registry', () => {
  let dir: string;
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('never follows a link planted at its file to overwrite another file', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pacs-run-'));
    const victim = path.join(dir, 'victim.txt');
    await writeFile(victim, 'keep me\n');
    await mkdir(path.join(dir, 'data', 'run'), { recursive: true });
    const file = path.join(dir, 'data', 'run', `${process.pid}.pid`);
    await symlink(victim, file);
    const unregister = await registerProcess(path.join(dir, 'data'), 'server', { url: 'http://127.0.0.1:1' });
    expect(await readFile(victim, 'utf8')).toBe('keep me\n');
    expect((await lstat(file)).isFile()).toBe(true);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: process.pid, kind: 'server' });
    expect(((await lstat(path.join(dir, 'data', 'run'))).mode & 0o777).toString(8)).toBe('700');
    // This process is never listed as another server; a file of a process that is gone is removed.
    await writeFile(path.join(dir, 'data', 'run', '999999.pid'), '{}\n');
    expect(await runningProcesses(path.join(dir, 'data'), 'server')).toEqual([]);
    await expect(lstat(path.join(dir, 'data', 'run', '999999.pid'))).rejects.toThrow();
    unregister();
    await expect(lstat(file)).rejects.toThrow();
  });
});

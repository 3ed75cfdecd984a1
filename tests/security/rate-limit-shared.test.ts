/**
 * The failed sign-in limit is one count per client address for the whole archive: two server processes
 * on the same data (PACS_WORKERS, or a restart) add up the failures instead of each allowing the limit;
 * an administrator can see and clear the counts (npm run user -- locked / unlock).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/server';
import { PASSWORD, type SecureArchive, startSecureArchive, userWithToken } from './setup';

const run = promisify(execFile);

const opened: SecureArchive[] = [];
let dir: string | undefined;

afterAll(async () => {
  for (const env of opened) await env.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const attempt = (base: string, password: string) =>
  fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'sharedlimit', password }),
  }).then((r) => r.status);

describe('login rate limit across server processes', () => {
  it('counts the failures seen by every process, and keeps them over a restart', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pacs-ratelimit-'));
    const env = { PACS_LOGIN_RATE_LIMIT: '3' };
    const a = await startSecureArchive(env, dir);
    opened.push(a);
    const b = await startSecureArchive(env, dir);
    opened.push(b);
    await userWithToken(a.admin, 'sharedlimit', 'radiologist');

    // A successful sign-in does not count.
    expect(await attempt(b.base, PASSWORD)).toBe(200);
    expect(await attempt(a.base, 'wrong-password-1')).toBe(401);
    expect(await attempt(b.base, 'wrong-password-2')).toBe(401);
    expect(await attempt(a.base, 'wrong-password-3')).toBe(401);
    // Three failures in all, two on one process and one on the other: the limit of 3 is reached for both.
    expect(await attempt(b.base, 'wrong-password-4')).toBe(429);
    expect(await attempt(a.base, PASSWORD)).toBe(429);

    // A process started later (a restart) sees the same count.
    await opened.shift()?.close();
    const c = await startSecureArchive(env, dir);
    opened.push(c);
    expect(await attempt(c.base, PASSWORD)).toBe(429);

    // The administrator's way out before the window ends: npm run user -- locked / unlock <address>.
    const cli = (...args: string[]) =>
      run(process.execPath, ['--import', 'tsx', 'scripts/user.ts', ...args], {
        cwd: REPO,
        env: { ...process.env, PACS_DATA_DIR: dir, ...env },
      });
    expect((await cli('locked')).stdout).toMatch(
      /^login:127\.0\.0\.1\s+\d+ failures, until \d{4}-\S+ {2}LOCKED$/m,
    );
    expect((await cli('unlock', '127.0.0.1')).stdout).toMatch(/unlocked 127\.0\.0\.1/);
    expect(await attempt(c.base, PASSWORD)).toBe(200);
    expect((await cli('locked')).stdout).not.toMatch(/login:127\.0\.0\.1/);
    const again = await cli('unlock', '127.0.0.1').catch((e: { code: number; stderr: string }) => e);
    expect(again).toMatchObject({ code: 2 });
    expect((again as { stderr: string }).stderr).toMatch(/no failures counted for 127\.0\.0\.1/);
  }, 120_000);
});

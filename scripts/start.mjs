#!/usr/bin/env node
// `npm start`: builds the viewer when its build is missing or older than its sources, then runs the
// archive (server/main.ts) with the environment's configuration (see README, "Configuration").
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const viewer = path.join(repo, 'viewer');
const built = path.join(viewer, 'dist', 'index.html');

function newest(p) {
  const s = statSync(p);
  if (!s.isDirectory()) return s.mtimeMs;
  let m = 0;
  for (const e of readdirSync(p))
    if (e !== 'dist' && e !== 'node_modules') m = Math.max(m, newest(path.join(p, e)));
  return m;
}

if (
  existsSync(path.join(viewer, 'index.html')) &&
  (!existsSync(built) || newest(viewer) > statSync(built).mtimeMs)
) {
  console.log('Building the viewer (npm run build:viewer)...');
  const r = spawnSync('npm', ['run', '--silent', 'build:viewer'], { cwd: repo, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('The viewer build failed; see the messages above.');
    process.exit(r.status ?? 1);
  }
}

const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'server/main.ts')], {
  cwd: repo,
  stdio: 'inherit',
  env: process.env,
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

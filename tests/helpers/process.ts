/** Programs the tests run as an operator would (the archive, its scripts, dcmtk): exit code and output. */
import { spawn } from 'node:child_process';
import { REPO } from '../samples';

export interface RunResult {
  code: number | null;
  /** stdout and stderr together (dcmtk logs to stderr, some tools print results on stdout). */
  output: string;
}

/** Runs a program to its end (killed after timeoutMs), capturing its output. */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? REPO,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => {
      output += String(d);
    });
    child.stderr.on('data', (d) => {
      output += String(d);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** A TypeScript entry point of this repository (server/main.ts, scripts/*.ts) run with Node and tsx. */
export const runTs = (file: string, args: string[], opts: Parameters<typeof run>[2] = {}) =>
  run(process.execPath, ['--import', 'tsx', file, ...args], opts);

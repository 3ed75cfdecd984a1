/**
 * The archive as its own process (`node --import tsx server/main.ts`, what `npm start` runs), for tests
 * where processes matter: several servers on one storage, a server killed and restarted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { REPO } from '../samples';

export interface ServerProcess {
  baseUrl: string;
  dicomweb: string;
  child: ChildProcess;
  /** The JSON log lines printed so far. */
  logs: Record<string, unknown>[];
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL (a crash) and wait for the exit. */
  kill(): Promise<void>;
}

export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'server/main.ts')], {
    cwd: REPO,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      PACS_VIEWER_DIR: path.join(REPO, 'viewer/dist'),
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += String(d);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code, signal) =>
      reject(new Error(`server exited (${code ?? signal}) before listening:\n${stderr}`)),
    );
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const msg = JSON.parse(line) as Record<string, unknown>;
        logs.push(msg);
        if (msg.msg === 'listening' && typeof msg.url === 'string') resolve(msg.url);
      } catch {
        // not a log line
      }
    });
  });
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    baseUrl: url,
    dicomweb: `${url}/dicomweb`,
    child,
    logs,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
  };
}

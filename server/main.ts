/** Entry point: load the configuration, open storage, listen. `npm start` runs this. */
import type { Server } from 'node:http';
import { openStorage, type Storage } from '../storage/open';
import { createApp } from './app';
import { type Config, ConfigError, loadConfig } from './config';
import { createLogger, type Logger } from './log';

export interface RunningServer {
  url: string;
  config: Config;
  storage: Storage;
  close(): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const storage = await openStorage({ dataDir: config.dataDir });
  const app = createApp(config, storage, log);
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
    s.once('error', reject);
  });
  server.requestTimeout = 0; // large STOW bodies over slow links
  server.keepAliveTimeout = 65_000;
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  log.info('listening', { url, dicomweb: `${url}/dicomweb`, dataDir: config.dataDir });
  return {
    url,
    config,
    storage,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await storage.close();
    },
  };
}

async function main() {
  // Blob writes wait on fsync in libuv's thread pool; its default of 4 threads would queue concurrent
  // STOW requests behind each other. Must be set before the pool's first use.
  process.env.UV_THREADPOOL_SIZE ??= '16';
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  const running = await startServer(config, log);
  const stop = async (signal: string) => {
    log.info('shutting down', { signal });
    await running.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('server/main.ts')) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}

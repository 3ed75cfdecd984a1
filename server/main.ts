/** Entry point: load the configuration, open storage, listen. `npm start` runs this. */
import cluster from 'node:cluster';
import { createServer, type Server } from 'node:http';
import { openStorage, type Storage } from '../storage/open';
import type { Express } from 'express';
import { createApp, type Security } from './app';
import { openSecurity } from './auth/security';
import { type Config, ConfigError, loadConfig, storageOptions } from './config';
import { type DiskWatch, watchArchiveDisks } from './disk';
import { routeLibraryLog } from './dimse/library';
import { type DimseListener, startDimseListener } from './dimse/scp';
import { createLogger, type Logger } from './log';
import { registerProcess, runningProcesses } from './run-registry';
import type { Index } from '../storage/index';
import { enableJpegExtended12 } from '../dicomweb/transfer-syntax';
import { dcmtkJpegAvailable } from './transcode/dcmtk';
import { configureTranscoder } from './transcode/pool';

export interface RunningServer {
  url: string;
  config: Config;
  storage: Storage;
  /** The HTTP application (its router is the route table) and its security services. */
  app: Express;
  security: Security;
  /** The DICOM (DIMSE) listeners, when PACS_DIMSE_PORT or PACS_DIMSE_TLS_PORT is set. */
  dimse?: { port?: number; tlsPort?: number; aeTitle: string };
  /** The watch of the local disks' free space, when this server runs it (server/disk.ts). */
  diskWatch?: DiskWatch;
  close(): Promise<void>;
}

export async function startServer(
  config: Config,
  log: Logger,
  opts: {
    /** No other server can hold a storage commitment request of this index (releaseHeldCommitments). */
    sole?: boolean;
    /**
     * Watch the free space of the local disks (server/disk.ts, PACS_DISK_WARN_PERCENT); false in the
     * workers of PACS_WORKERS, whose primary watches them once for all.
     */
    watchDisks?: boolean;
  } = {},
): Promise<RunningServer> {
  configureTranscoder(config.transcodeWorkers);
  // 12-bit JPEG Extended needs DCMTK's encoder (server/transcode/dcmtk.ts); without it, 406 with the reason.
  const jpegExtended12 = dcmtkJpegAvailable();
  if (jpegExtended12) enableJpegExtended12();
  const storage = await openStorage(storageOptions(config));
  let security: Security;
  try {
    if (opts.sole) await releaseHeldCommitments(storage.index, log);
    security = await openSecurity(config, storage, log);
  } catch (err) {
    await storage.close();
    throw err;
  }
  const app = createApp(config, storage, log, security);
  let dimse: DimseListener | undefined;
  // Not app.listen(): Express 5 calls its callback on a listen error too, and a port already in use
  // would be reported as listening, and the process would then end with 0.
  const server: Server = createServer(app);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await security.audit.close();
    await storage.close();
    throw err;
  }
  if (config.dimse.port !== undefined || config.dimse.tlsPort !== undefined) {
    routeLibraryLog(log, config.logLevel);
    try {
      dimse = await startDimseListener(
        { ...storage, config, log },
        config.dimse,
        config.host,
        log,
        (e) =>
          void security.audit.recordForStudy({
            time: Date.now(),
            username: `AE:${e.callingAETitle}`,
            role: 'dimse',
            action: e.action,
            studyInstanceUID: e.study ?? null,
            status: e.status,
            source: e.source,
            detail: e.detail,
          }),
      );
    } catch (err) {
      server.close();
      await security.audit.close();
      await storage.close();
      throw err;
    }
    // GET /api/dimse (dimse/routes.ts describeGateway) reports the ports actually listened on.
    app.locals.dimseListening = dimse.listening;
    if (config.dimse.allowedAEs === 'any')
      log.warn(
        config.auth.enabled
          ? 'the DICOM listener accepts any calling AE from any address (PACS_DIMSE_ALLOWED_AES=*): closed networks only'
          : 'the DICOM listener accepts any calling AE (PACS_DIMSE_ALLOWED_AES empty, PACS_AUTH=off): development only',
        { port: dimse.port, tlsPort: dimse.tlsPort },
      );
    if (dimse.tlsPort !== undefined && !config.dimse.tls?.ca)
      log.warn(
        'the DICOM TLS listener asks for no client certificate (PACS_DIMSE_TLS_CA not set): PACS_DIMSE_ALLOWED_AES is the only check of the caller',
        { tlsPort: dimse.tlsPort },
      );
    else if (dimse.tlsPort !== undefined && !config.dimse.tlsBindAE)
      log.warn(
        'the DICOM TLS listener lets any certificate of PACS_DIMSE_TLS_CA call as any allowed AE (PACS_DIMSE_TLS_BIND_AE=off)',
        { tlsPort: dimse.tlsPort },
      );
  }
  // Checked once before the "listening" line (a disk already low is said at start), then every minute.
  const disks =
    opts.watchDisks === false
      ? undefined
      : await watchArchiveDisks(storageOptions(config), config.diskWarnPercent, log);
  server.requestTimeout = 0; // large STOW bodies over slow links
  server.keepAliveTimeout = 65_000;
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  const dicom = dimse && { aeTitle: dimse.aeTitle, port: dimse.port, tlsPort: dimse.tlsPort };
  log.info('listening', {
    url,
    dicomweb: `${url}/dicomweb`,
    dataDir: config.dataDir,
    blobStore: config.blobStore || `${config.dataDir}/blobs`,
    index: config.databaseUrl ? withoutPassword(config.databaseUrl) : `${config.dataDir}/index.sqlite`,
    dimse: dicom,
    jpegExtended12bit: jpegExtended12 ? 'dcmcjpeg' : 'not available (apt install dcmtk)',
  });
  return {
    url,
    config,
    storage,
    app,
    security,
    dimse: dicom,
    diskWatch: disks,
    close: async () => {
      disks?.close();
      await dimse?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await security.audit.close();
      await storage.close();
    },
  };
}

async function main() {
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
  // `--check-config`: the environment's configuration checked, nothing started (before an upgrade).
  if (process.argv.includes('--check-config')) {
    process.stdout.write('configuration ok\n');
    process.exit(0);
  }
  const log = createLogger(config.logLevel);
  // Not under a reindex or fsck --repair of this folder (they refuse to run under a server, too).
  const maintenance = cluster.isPrimary ? await runningProcesses(config.dataDir, 'maintenance') : [];
  if (maintenance.length > 0) {
    process.stderr.write(
      `The archive did not start: maintenance (npm run reindex or fsck --repair) is running on ${config.dataDir} (process ${maintenance.join(', ')}); start it once that has finished\n`,
    );
    process.exit(1);
  }
  if (config.workers > 1 && cluster.isPrimary) {
    await runPrimary(config, log);
    return;
  }
  // Maintenance (npm run reindex, fsck --repair) refuses to run while this file says a server runs;
  // written before the storage is opened, so a maintenance run starting meanwhile sees it.
  const sole = !cluster.isWorker && (await soleServer(config));
  const unregister = await registerProcess(config.dataDir, 'server', { port: config.port });
  process.once('exit', unregister);
  const started = startServer(config, cluster.isWorker ? log.child({ worker: cluster.worker?.id }) : log, {
    sole,
    watchDisks: !cluster.isWorker,
  });
  let stopping = false;
  const stop = async (signal: string) => {
    // A signal sent twice (systemd to the whole group, and the primary or npm start to this process)
    // must not kill the shutdown under way.
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    // A signal during start: the start finishes first (a failed start exits on its own, with its reason).
    const running = await started.catch(() => undefined);
    if (!running) return;
    await running.close();
    unregister();
    process.exit(0);
  };
  // Installed before the server listens (no await in between), so that a SIGTERM right after the
  // "listening" line is a clean stop and never the default action, which kills the process.
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  await started;
}

/**
 * Several processes on one port (PACS_WORKERS), so every core serves requests. They share nothing but
 * the data folder: the blob store and the SQLite index (WAL, one writer at a time) are safe to share.
 * The primary prepares the storage once (migrations), then starts the workers and replaces any that die.
 */
async function runPrimary(config: Config, log: Logger): Promise<void> {
  const storage = await openStorage(storageOptions(config));
  try {
    if (await soleServer(config)) await releaseHeldCommitments(storage.index, log);
    await openSecurity(config, storage, log); // the administrator is created (and announced) once, here
  } finally {
    await storage.close();
  }
  let stopping = false;
  const fork = () => cluster.fork();
  for (let i = 0; i < config.workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    log.error('worker exited; starting another', { worker: worker.id, code, signal });
    setTimeout(fork, 500);
  });
  log.info('started workers', { workers: config.workers, url: `http://${config.host}:${config.port}` });
  const disks = await watchArchiveDisks(storageOptions(config), config.diskWarnPercent, log);
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    disks?.close();
    log.info('shutting down', { signal });
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
    const exit = () => process.exit(0);
    if (Object.keys(cluster.workers ?? {}).length === 0) exit();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) exit();
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/**
 * Whether no other server can hold a storage commitment request of this archive's index: it is the
 * folder's SQLite (which only this host's servers open) and no other server runs on the folder. With
 * PostgreSQL, servers of other hosts may hold some: they are left to their leases.
 */
async function soleServer(config: Config): Promise<boolean> {
  return config.databaseUrl === '' && (await runningProcesses(config.dataDir, 'server')).length === 0;
}

/**
 * Storage commitment requests held by a server that died without closing (killed, a power cut) are
 * reported at once, not after the 5 minutes of their lease (server/dimse/commitment-reports.ts).
 */
async function releaseHeldCommitments(index: Index, log: Logger): Promise<void> {
  const released = await index.releaseCommitments(Date.now());
  if (released > 0)
    log.warn('storage commitment requests of a server that stopped without closing, reported now', {
      requests: released,
    });
}

/** A database URL as it may be shown: its password replaced. */
function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'DATABASE_URL';
  }
}

/** One line that says why the archive did not start, and what to look at (the stack with LOG_LEVEL=debug). */
export function startFailure(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const message = e?.message ?? String(err);
  switch (e?.code) {
    case 'EADDRINUSE':
      return `the address ${e.address ?? ''}:${e.port ?? ''} is already in use (another server on that port?): set PORT (and HOST) to a free one`;
    case 'EACCES':
      return `${message}: ports below 1024 need privileges; use PORT=8080 behind a reverse proxy (docs/deploy.md)`;
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
      return `${message}: a storage service (DATABASE_URL, PACS_BLOB_STORE) cannot be reached`;
    case '28P01':
    case '3D000':
    case '28000':
      return `PostgreSQL refused DATABASE_URL: ${message}`;
    default:
      return message;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('server/main.ts')) {
  main().catch((err) => {
    process.stderr.write(`The archive did not start: ${startFailure(err)}\n`);
    if (process.env.LOG_LEVEL === 'debug') process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}

/**
 * The HTTP application: the one route table of the archive (read it as the API's table of contents)
 * and the one error handler that turns DicomwebError into a response.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import compression from 'compression';
import express, { type NextFunction, type Request, type Response } from 'express';
import { DicomwebError } from '../dicomweb/status';
import type { Storage } from '../storage/open';
import type { Config } from './config';
import type { Logger } from './log';
import { RETRY_AFTER_SECONDS, storageFault } from './storage-faults';
import { describeGateway, sendStudy } from './dimse/routes';
import { DICOMWEB_ROOT } from './routes/common';
import { deleteResource } from './routes/delete';
import { demo } from './routes/demo';
import { qido } from './routes/qido';
import { stow } from './routes/stow';
import { retrieveBulkdata, retrieveFrames, retrieveInstances, retrieveMetadata } from './routes/wado';
import { retrieveRendered, retrieveThumbnail } from './routes/rendered';

export function createApp(config: Config, storage: Storage, log: Logger): express.Express {
  const app = express();
  app.disable('x-powered-by');
  if (config.publicUrl) app.locals.publicUrl = config.publicUrl; // read by routes/common.ts publicRoot()
  app.set('query parser', false);
  const ctx = { ...storage, config, log };
  const { index } = storage;

  app.use(accessLog(log));
  // QIDO and metadata JSON shrink 5-10x with gzip, which matters on a weak link. Pixel data
  // (multipart, octet-stream) is left alone: compressing it is the transfer syntax's job.
  app.use(
    compression({
      filter: (req, res) =>
        /json|text|javascript|html|css|svg/.test(String(res.getHeader('Content-Type') ?? '')) &&
        compression.filter(req, res),
    }),
  );

  const S = `${DICOMWEB_ROOT}/studies/:study`;
  const SE = `${S}/series/:series`;
  const I = `${SE}/instances/:instance`;
  const max = config.qidoMaxResults;
  const r = express.Router({ caseSensitive: true, strict: false });
  // STOW-RS
  r.post(`${DICOMWEB_ROOT}/studies`, (req, res) => stow(ctx, req, res));
  r.post(S, (req, res) => stow(ctx, req, res));
  // QIDO-RS
  r.get(`${DICOMWEB_ROOT}/studies`, qido('study', index, max));
  r.get(`${DICOMWEB_ROOT}/series`, qido('series', index, max));
  r.get(`${DICOMWEB_ROOT}/instances`, qido('instance', index, max));
  r.get(`${S}/series`, qido('series', index, max));
  r.get(`${S}/instances`, qido('instance', index, max));
  r.get(`${SE}/instances`, qido('instance', index, max));
  // WADO-RS
  r.get(S, retrieveInstances(ctx));
  r.get(SE, retrieveInstances(ctx));
  r.get(I, retrieveInstances(ctx));
  r.get(`${S}/metadata`, retrieveMetadata(ctx));
  r.get(`${SE}/metadata`, retrieveMetadata(ctx));
  r.get(`${I}/metadata`, retrieveMetadata(ctx));
  r.get(`${I}/frames/:frames`, retrieveFrames(ctx));
  r.get(`${I}/bulkdata/*path`, retrieveBulkdata(ctx));
  // WADO-RS rendered resources and thumbnails (decoded and rendered in worker threads)
  r.get(`${S}/rendered`, retrieveRendered(ctx));
  r.get(`${SE}/rendered`, retrieveRendered(ctx));
  r.get(`${I}/rendered`, retrieveRendered(ctx));
  r.get(`${I}/frames/:frames/rendered`, retrieveRendered(ctx));
  r.get(`${S}/thumbnail`, retrieveThumbnail(ctx));
  r.get(`${SE}/thumbnail`, retrieveThumbnail(ctx));
  r.get(`${I}/thumbnail`, retrieveThumbnail(ctx));
  r.get(`${I}/frames/:frames/thumbnail`, retrieveThumbnail(ctx));
  // Delete
  r.delete(S, deleteResource(ctx));
  r.delete(SE, deleteResource(ctx));
  r.delete(I, deleteResource(ctx));
  // Server API (what DICOMweb has no word for)
  r.get('/healthz', async (_req, res) => {
    await index.listInstances({ StudyInstanceUID: '0' });
    res.json({ status: 'ok' });
  });
  r.post('/api/demo', demo(ctx));
  // DIMSE gateway: send a study to a known remote AE (C-STORE SCU); the gateway's AE configuration
  r.post('/api/studies/:study/send', express.json({ limit: '16kb' }), sendStudy(ctx));
  r.get('/api/dimse', describeGateway(ctx));
  app.use(r);

  app.all(`${DICOMWEB_ROOT}/*rest`, (req, _res) => {
    throw new DicomwebError(404, `no DICOMweb resource at ${req.method} ${req.path}`);
  });
  app.all('/api/*rest', (req) => {
    throw new DicomwebError(404, `no API resource at ${req.method} ${req.path}`);
  });
  serveViewer(app, config.viewerDir);
  app.use(errorHandler(log));
  return app;
}

function serveViewer(app: express.Express, dir: string) {
  if (!existsSync(path.join(dir, 'index.html'))) {
    app.get('/', (_req, res) => {
      res
        .type('text/plain')
        .send(
          `The viewer is not built (${dir}/index.html is missing): run "npm run build:viewer". DICOMweb: ${DICOMWEB_ROOT}`,
        );
    });
    return;
  }
  app.use(precompressed(dir));
  app.use(express.static(dir, { index: 'index.html', maxAge: '1h', setHeaders: noCacheForHtml }));
  // Single-page app: /viewer/{study}, /?PatientName=... are all index.html.
  app.get('/*rest', (_req, res) => {
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(path.join(dir, 'index.html'));
  });
}

/**
 * The viewer build writes a .gz beside each large asset: send it to browsers that accept gzip (the
 * 3.7 MB image library is 1 MB gzipped). Asset names carry a content hash, so they are cached for good.
 */
function precompressed(dir: string) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.method !== 'GET' || !req.path.startsWith('/assets/') || req.path.includes('..')) return next();
    if (!/\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) return next();
    const file = path.join(dir, req.path);
    if (!existsSync(`${file}.gz`)) return next();
    res.setHeader('Content-Encoding', 'gzip');
    res.setHeader('Vary', 'Accept-Encoding');
    res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
    res.type(path.extname(file));
    res.sendFile(`${file}.gz`);
  };
}

function noCacheForHtml(res: Response, file: string) {
  if (file.endsWith('.html')) res.setHeader('Cache-Control', 'no-cache');
}

function accessLog(log: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      log.info('request', {
        method: req.method,
        url: req.originalUrl,
        status: res.statusCode,
        ms: Math.round(ms * 10) / 10,
      });
    });
    next();
  };
}

/** How long, at most, a refused request's body is still read after the answer (a lingering close). */
const LINGER_MS = 30_000;

/**
 * A client still sending a refused body reads the answer only once it has sent it: let it, up to a bound.
 * The answer goes out at once, then the connection is half-closed and what the client still sends is read
 * and discarded until it stops (up to 256 MB or LINGER_MS): closing a socket with bytes still arriving
 * makes the kernel reset the connection, and the client would lose the answer.
 */
function drainThenClose(req: Request, res: Response) {
  res.setHeader('Connection', 'close');
  const socket = req.socket;
  const linger = setTimeout(() => socket.destroy(), LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
  // Node closes the connection as soon as the answer is written (destroySoon): end our side only.
  (socket as { destroySoon?: () => void }).destroySoon = () => socket.end();
  let drained = 0;
  req.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > 256 * 1024 * 1024) socket.destroy();
  });
  req.on('error', () => {});
  req.resume();
}

/** Whether err means the client disconnected before the answer was complete. */
function clientGone(req: Request, res: Response, err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ERR_STREAM_PREMATURE_CLOSE' || req.socket.destroyed || res.destroyed;
}

function errorHandler(log: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    let status = 500;
    let message = 'internal error';
    const fault = err instanceof DicomwebError ? undefined : storageFault(err);
    if (err instanceof DicomwebError) {
      status = err.status;
      message = err.message;
    } else if (!fault && clientGone(req, res, err)) {
      // The client went away (disconnected mid-response): nobody to answer, nothing went wrong here.
      log.debug('client disconnected', { method: req.method, url: req.originalUrl });
      res.destroy();
      return;
    } else if (fault) {
      // The object store or the database is down or full: it passes, so say so (not a 500).
      status = fault.kind === 'full' ? 507 : 503;
      message = fault.message;
      log.warn('storage fault', { err, method: req.method, url: req.originalUrl });
    } else if (
      typeof err === 'object' &&
      err &&
      'status' in err &&
      typeof err.status === 'number' &&
      err.status < 500
    ) {
      // Errors raised by Express itself (malformed URL encoding, aborted body...).
      status = err.status;
      message = String((err as { message?: unknown }).message ?? 'bad request');
    } else {
      log.error('unhandled error', { err, method: req.method, url: req.originalUrl });
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (!req.complete) drainThenClose(req, res);
    if (status === 503) res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
    res.status(status).type('application/json').send(JSON.stringify({ status, message }));
  };
}

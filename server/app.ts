/**
 * The HTTP application: the one route table of the archive (read it as the API's table of contents)
 * and the one error handler that turns DicomwebError into a response.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import compression from 'compression';
import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import { DicomwebError } from '../dicomweb/status';
import type { Storage } from '../storage/open';
import { allow, type Auth } from './auth/auth';
import type { AuditTrail } from './auth/audit';
import { RATE_LIMITERS, SharedRateLimitStore } from './auth/rate-limit';
import type { Config } from './config';
import { type Logger, loggedUrl } from './log';
import {
  authConfig,
  changePassword,
  createToken,
  createUser,
  deleteUser,
  exportAudit,
  listTokens,
  listUsers,
  login,
  logout,
  me,
  queryAudit,
  revokeToken,
  updateUser,
} from './routes/account';
import {
  createShare,
  describeLink,
  listShares,
  openLink,
  requireJson,
  revokeShare,
  shareQr,
  shareSlip,
} from './routes/shares';
import { RETRY_AFTER_SECONDS, storageFault } from './storage-faults';
import { describeGateway, sendStudy } from './dimse/routes';
import { DICOMWEB_ROOT } from './routes/common';
import { deleteResource } from './routes/delete';
import { demo } from './routes/demo';
import { qido } from './routes/qido';
import { statistics } from './routes/statistics';
import { stow } from './routes/stow';
import { retrieveBulkdata, retrieveFrames, retrieveInstances, retrieveMetadata } from './routes/wado';
import { retrieveRendered, retrieveThumbnail } from './routes/rendered';

/** Who may do what, and the record of what was done (server/auth). */
export interface Security {
  auth: Auth;
  audit: AuditTrail;
  /** OpenID Connect sign-in, when configured. */
  oidc?: OidcRoutes;
}

export interface OidcRoutes {
  label: string;
  login: express.RequestHandler;
  callback: express.RequestHandler;
}

export function createApp(
  config: Config,
  storage: Storage,
  log: Logger,
  security: Security,
): express.Express {
  const app = express();
  app.disable('x-powered-by');
  if (config.publicUrl) app.locals.publicUrl = config.publicUrl; // read by routes/common.ts publicRoot()
  app.set('query parser', false);
  app.set('trust proxy', trustProxy(config.auth.trustProxy));
  const ctx = { ...storage, config, log };
  const { index } = storage;
  const { auth, audit, oidc } = security;

  app.use(accessLog(log));
  app.use(securityHeaders());
  if (config.auth.corsOrigins.length > 0)
    app.use(
      ['/dicomweb', '/api'],
      cors({
        origin: config.auth.corsOrigins,
        allowedHeaders: ['Authorization', 'Accept', 'Content-Type'],
        exposedHeaders: ['Warning', 'Content-Location', 'Location', 'Retry-After'],
        maxAge: 600,
      }),
    );
  // QIDO and metadata JSON shrink 5-10x with gzip, which matters on a weak link. Pixel data
  // (multipart, octet-stream) is left alone: compressing it is the transfer syntax's job.
  app.use(
    compression({
      filter: (req, res) =>
        /json|text|javascript|html|css|svg/.test(String(res.getHeader('Content-Type') ?? '')) &&
        compression.filter(req, res),
    }),
  );

  // Every DICOMweb and API request: who is asking (res.locals.principal), and an audit event when answered.
  app.use(['/dicomweb', '/api'], auth.middleware());
  app.use(audit.middleware());

  const S = `${DICOMWEB_ROOT}/studies/:study`;
  const SE = `${S}/series/:series`;
  const I = `${SE}/instances/:instance`;
  const max = config.qidoMaxResults;
  const json = express.json({ limit: '16kb' });
  // Failed attempts per client address (successful ones are not counted): passwords and link tokens
  // cannot be guessed by trying.
  // The counts live in the index database, so every server process (PACS_WORKERS) sees the same ones.
  const limiter = (name: string) =>
    rateLimit({
      windowMs: 15 * 60_000,
      limit: config.auth.loginRateLimit,
      store: new SharedRateLimitStore(auth.access, name),
      skipSuccessfulRequests: true,
      standardHeaders: 'draft-8',
      legacyHeaders: false,
      handler: (_req, _res, next) =>
        next(new DicomwebError(429, 'too many failed attempts from this address: try again in 15 minutes')),
    });
  const [loginLimit, linkLimit] = RATE_LIMITERS.map(limiter);
  // Each route names the rule it needs (server/auth/rules.ts) and its audit action: allow(rule, action).
  const g = (rule: Parameters<typeof allow>[1], action: string) => allow(auth, rule, action);
  const r = express.Router({ caseSensitive: true, strict: false });
  // STOW-RS
  r.post(`${DICOMWEB_ROOT}/studies`, g('store', 'store'), (req, res) => stow(ctx, req, res));
  r.post(S, g('store', 'store'), (req, res) => stow(ctx, req, res));
  // QIDO-RS
  r.get(`${DICOMWEB_ROOT}/studies`, g('read', 'search'), qido('study', index, max));
  r.get(`${DICOMWEB_ROOT}/series`, g('read', 'search'), qido('series', index, max));
  r.get(`${DICOMWEB_ROOT}/instances`, g('read', 'search'), qido('instance', index, max));
  r.get(`${S}/series`, g('read', 'search'), qido('series', index, max));
  r.get(`${S}/instances`, g('read', 'search'), qido('instance', index, max));
  r.get(`${SE}/instances`, g('read', 'search'), qido('instance', index, max));
  // WADO-RS
  r.get(S, g('read', 'retrieve'), retrieveInstances(ctx));
  r.get(SE, g('read', 'retrieve'), retrieveInstances(ctx));
  r.get(I, g('read', 'retrieve'), retrieveInstances(ctx));
  r.get(`${S}/metadata`, g('read', 'retrieve-metadata'), retrieveMetadata(ctx));
  r.get(`${SE}/metadata`, g('read', 'retrieve-metadata'), retrieveMetadata(ctx));
  r.get(`${I}/metadata`, g('read', 'retrieve-metadata'), retrieveMetadata(ctx));
  r.get(`${I}/frames/:frames`, g('read', 'retrieve-frames'), retrieveFrames(ctx));
  r.get(`${I}/bulkdata/*path`, g('read', 'retrieve-bulkdata'), retrieveBulkdata(ctx));
  // WADO-RS rendered resources and thumbnails (decoded and rendered in worker threads)
  r.get(`${S}/rendered`, g('read', 'retrieve-rendered'), retrieveRendered(ctx));
  r.get(`${SE}/rendered`, g('read', 'retrieve-rendered'), retrieveRendered(ctx));
  r.get(`${I}/rendered`, g('read', 'retrieve-rendered'), retrieveRendered(ctx));
  r.get(`${I}/frames/:frames/rendered`, g('read', 'retrieve-rendered'), retrieveRendered(ctx));
  r.get(`${S}/thumbnail`, g('read', 'retrieve-thumbnail'), retrieveThumbnail(ctx));
  r.get(`${SE}/thumbnail`, g('read', 'retrieve-thumbnail'), retrieveThumbnail(ctx));
  r.get(`${I}/thumbnail`, g('read', 'retrieve-thumbnail'), retrieveThumbnail(ctx));
  r.get(`${I}/frames/:frames/thumbnail`, g('read', 'retrieve-thumbnail'), retrieveThumbnail(ctx));
  // Delete
  r.delete(S, g('delete', 'delete'), deleteResource(ctx));
  r.delete(SE, g('delete', 'delete'), deleteResource(ctx));
  r.delete(I, g('delete', 'delete'), deleteResource(ctx));
  // Server API (what DICOMweb has no word for). /healthz is open to load balancers and says nothing else.
  r.get('/healthz', g('public', 'health'), async (_req, res) => {
    await index.listInstances({ StudyInstanceUID: '0' });
    res.json({ status: 'ok' });
  });
  r.post('/api/demo', g('admin', 'load-demo'), demo(ctx));
  // What the archive holds and the free space of its disks (administrators)
  r.get('/api/statistics', g('admin', 'read-statistics'), statistics(ctx));
  // DIMSE gateway: send a study to a known remote AE (C-STORE SCU); the gateway's AE configuration
  r.post('/api/studies/:study/send', g('send', 'send-study'), json, sendStudy(ctx));
  r.get('/api/dimse', g('send', 'dimse-config'), describeGateway(ctx));
  // Sign-in, the current principal, password change
  const oidcInfo = () => ({ enabled: oidc !== undefined, label: oidc?.label ?? '' });
  r.get('/api/auth/config', g('public', 'auth-config'), authConfig(auth, oidcInfo));
  r.post('/api/auth/login', g('public', 'login'), loginLimit, json, login(auth));
  r.post('/api/auth/logout', g('signed-in', 'logout'), logout(auth));
  r.get('/api/auth/me', g('signed-in', 'whoami'), me());
  r.post('/api/auth/password', g('signed-in', 'change-password'), json, changePassword(auth));
  r.get('/api/auth/oidc/login', g('public', 'oidc-login'), oidc?.login ?? noOidc);
  r.get('/api/auth/oidc/callback', g('public', 'oidc-callback'), loginLimit, oidc?.callback ?? noOidc);
  // Users, API tokens, the audit trail (administrators)
  r.get('/api/users', g('admin', 'list-users'), listUsers(auth));
  r.post('/api/users', g('admin', 'create-user'), json, createUser(auth));
  r.patch('/api/users/:username', g('admin', 'update-user'), json, updateUser(auth));
  r.delete('/api/users/:username', g('admin', 'delete-user'), deleteUser(auth));
  r.get('/api/tokens', g('admin', 'list-tokens'), listTokens(auth));
  r.post('/api/tokens', g('admin', 'create-token'), json, createToken(auth));
  r.delete('/api/tokens/:id', g('admin', 'revoke-token'), revokeToken(auth));
  r.get(
    '/api/audit',
    g('admin', 'read-audit'),
    queryAudit(auth, () => audit.flush()),
  );
  r.get(
    '/api/audit/export',
    g('admin', 'export-audit'),
    exportAudit(auth, () => audit.flush()),
  );
  // Share links: made by radiologists, opened by anyone holding one
  r.post('/api/studies/:study/shares', g('share', 'create-share'), json, createShare(auth, index));
  r.get('/api/studies/:study/shares', g('share', 'list-shares'), listShares(auth));
  r.delete('/api/shares/:id', g('share', 'revoke-share'), revokeShare(auth));
  r.get('/api/shares/:id/qr.svg', g('share', 'share-qr'), shareQr(auth, 'svg'));
  r.get('/api/shares/:id/qr.png', g('share', 'share-qr'), shareQr(auth, 'png'));
  r.get('/api/shares/:id/slip', g('share', 'share-slip'), shareSlip(auth, index));
  r.get('/api/share-links/:token', g('public', 'check-link'), linkLimit, describeLink(auth));
  r.post(
    '/api/share-links/:token/open',
    g('public', 'open-link'),
    requireJson,
    linkLimit,
    json,
    openLink(auth),
  );
  app.use(r);

  app.all(`${DICOMWEB_ROOT}/*rest`, g('public', 'unknown-route'), (req, _res) => {
    throw new DicomwebError(404, `no DICOMweb resource at ${req.method} ${req.path}`);
  });
  app.all('/api/*rest', g('public', 'unknown-route'), (req) => {
    throw new DicomwebError(404, `no API resource at ${req.method} ${req.path}`);
  });
  serveViewer(app, config.viewerDir, g('public', 'viewer'));
  app.use(errorHandler(log));
  return app;
}

function noOidc(): never {
  throw new DicomwebError(404, 'OpenID Connect sign-in is not configured (PACS_OIDC_ISSUER)');
}

/** PACS_TRUST_PROXY as Express understands it. */
function trustProxy(value: string): boolean | string | string[] {
  if (value === 'false') return false;
  if (value === 'true') return true;
  return value.split(',').map((s) => s.trim());
}

/**
 * Secure headers (helmet): a content security policy for the viewer (its own scripts and WebAssembly
 * codecs only, no framing), no MIME sniffing, no referrer to other sites. TLS itself (and HSTS) is the
 * reverse proxy's job (docs/deploy.md).
 */
function securityHeaders() {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'", "'wasm-unsafe-eval'"],
        workerSrc: ["'self'", 'blob:'],
        imgSrc: ["'self'", 'data:', 'blob:'],
        styleSrc: ["'self'", "'unsafe-inline'"],
        connectSrc: ["'self'"],
        fontSrc: ["'self'", 'data:'],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    crossOriginEmbedderPolicy: false,
    strictTransportSecurity: false,
    referrerPolicy: { policy: 'same-origin' },
  });
}

function serveViewer(app: express.Express, dir: string, open: express.RequestHandler) {
  if (!existsSync(path.join(dir, 'index.html'))) {
    app.get('/', open, (_req, res) => {
      res
        .type('text/plain')
        .send(
          `The viewer is not built (${dir}/index.html is missing): run "npm run build:viewer". DICOMweb: ${DICOMWEB_ROOT}`,
        );
    });
    return;
  }
  app.use(precompressed(dir));
  app.use(
    express.static(dir, {
      index: 'index.html',
      maxAge: '1h',
      // The page at / is the study list: the viewer's code is prefetched with it (see below).
      setHeaders: (res, file) => {
        noCacheForHtml(res, file);
        const links = file.endsWith('index.html') ? viewerPagePreload(dir, 'prefetch') : undefined;
        if (links) res.setHeader('Link', links);
      },
    }),
  );
  // Single-page app: /viewer/{study}, /?PatientName=... are all index.html.
  app.get('/*rest', open, (req, res) => {
    res.setHeader('Cache-Control', 'no-cache');
    // A study's address (or a share link) opens the image viewer: the browser fetches its code while it
    // still runs the page's first script, instead of once that script asks for it. The study list
    // leads there too: its code is fetched at low priority (prefetch, not run) while the list is read,
    // so that on a slow link the first study opened does not wait for 1 MB of code.
    const opensViewer = /^\/(viewer|s)\//.test(req.path);
    const admin = /^\/admin(\/|$)/.test(req.path);
    const links = admin ? undefined : viewerPagePreload(dir, opensViewer ? 'modulepreload' : 'prefetch');
    if (links) res.setHeader('Link', links);
    res.sendFile(path.join(dir, 'index.html'));
  });
}

const preloads = new Map<string, { mtimeMs: number; files: string[] }>();

/**
 * A Link header value preloading (or prefetching) the image viewer's chunks (from the build's manifest),
 * or undefined when the build has no manifest. Parsed once per version of the manifest: the viewer may
 * be rebuilt while the server runs.
 */
export function viewerPagePreload(
  dir: string,
  rel: 'modulepreload' | 'prefetch' = 'modulepreload',
): string | undefined {
  const files = viewerPageFiles(dir);
  return files.map((f) => `</${f}>; rel=${rel}`).join(', ') || undefined;
}

function viewerPageFiles(dir: string): string[] {
  const file = path.join(dir, '.vite', 'manifest.json');
  let mtimeMs: number;
  try {
    mtimeMs = statSync(file).mtimeMs;
  } catch {
    return [];
  }
  const cached = preloads.get(dir);
  if (cached?.mtimeMs === mtimeMs) return cached.files;
  const files = filesFromManifest(file);
  preloads.set(dir, { mtimeMs, files });
  return files;
}

function filesFromManifest(file: string): string[] {
  type Chunk = { file: string; imports?: string[]; isEntry?: boolean };
  let manifest: Record<string, Chunk>;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return [];
  }
  const key = Object.keys(manifest).find((k) => k.endsWith('features/viewer/viewer-page.tsx'));
  if (!key) return [];
  const files: string[] = [];
  const visit = (k: string) => {
    const chunk = manifest[k];
    if (!chunk || chunk.isEntry || files.includes(chunk.file)) return;
    files.push(chunk.file);
    for (const i of chunk.imports ?? []) visit(i);
  };
  visit(key);
  return files;
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
        url: loggedUrl(req.originalUrl, { queryValues: false }),
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
      log.debug('client disconnected', {
        method: req.method,
        url: loggedUrl(req.originalUrl, { queryValues: false }),
      });
      res.destroy();
      return;
    } else if (fault) {
      // The object store or the database is down or full: it passes, so say so (not a 500).
      status = fault.kind === 'full' ? 507 : 503;
      message = fault.message;
      log.warn('storage fault', {
        err,
        method: req.method,
        url: loggedUrl(req.originalUrl, { queryValues: false }),
      });
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
      log.error('unhandled error', {
        err,
        method: req.method,
        url: loggedUrl(req.originalUrl, { queryValues: false }),
      });
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

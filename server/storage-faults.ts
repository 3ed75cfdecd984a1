/**
 * Storage faults: the object store or the database cannot be reached (stopped, restarting, network cut,
 * overloaded), or the disk is full. They are not the request's fault and they pass: STOW reports each
 * instance they hit as FailureReason 0xA700 (Out of resources) so the sender retries it; other requests
 * get 503 with Retry-After (unavailable) or 507 (full) from the error handler instead of a 500.
 * Recognised from the errors the drivers raise (Node system errors, AWS SDK, better-sqlite3, pg), along
 * the `cause` chain.
 */

export interface StorageFault {
  kind: 'unavailable' | 'full';
  /** For the client: what failed, without internals. */
  message: string;
}

/** Seconds a client is asked to wait (Retry-After) when storage is unavailable. */
export const RETRY_AFTER_SECONDS = 5;

const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'EIO',
  'EROFS',
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_IOERR',
  'SQLITE_CANTOPEN',
  // PostgreSQL: too many connections, shutting down, starting up, cannot connect now.
  '53300',
  '57P01',
  '57P02',
  '57P03',
]);
const FULL = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL', '53100']);
const UNREACHABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|socket hang up|Connection closed/i;

function describe(kind: StorageFault['kind'], err: { code?: unknown; message?: unknown }): StorageFault {
  const detail = String(err.message ?? err.code ?? 'unknown error').slice(0, 200);
  return kind === 'full'
    ? { kind, message: `the archive's storage is full (${detail})` }
    : { kind, message: `the archive's storage is unavailable (${detail}); try again later` };
}

/** The fault err stands for, or undefined when it is something else (a bug, a bad request). */
export function storageFault(err: unknown): StorageFault | undefined {
  for (let e = err as Record<string, any> | undefined, depth = 0; e && depth < 6; e = e.cause, depth++) {
    if (typeof e !== 'object') return undefined;
    const code = typeof e.code === 'string' ? e.code : undefined;
    if (code && FULL.has(code)) return describe('full', e);
    if (code && (UNREACHABLE.has(code) || code.startsWith('SQLITE_IOERR') || /^08[0-9A-Z]{3}$/.test(code)))
      return describe('unavailable', e);
    // AWS SDK: timeouts, and the store's own 5xx answers (SlowDown, ServiceUnavailable, InternalError).
    const http = e.$metadata?.httpStatusCode;
    if (e.name === 'TimeoutError' || (typeof http === 'number' && http >= 500))
      return describe('unavailable', e);
    if (typeof e.message === 'string' && UNREACHABLE_MESSAGE.test(e.message))
      return describe('unavailable', e);
    if (Array.isArray(e.errors) && e.errors.length > 0) {
      // AggregateError (a connection refused on every address of a name)
      const inner = storageFault(e.errors[0]);
      if (inner) return inner;
    }
  }
  return undefined;
}

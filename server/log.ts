/** The one structured logger: JSON lines on stdout, one object per event. */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(
  level: Level = 'info',
  base: Record<string, unknown> = {},
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const emit = (l: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[l] < ORDER[level]) return;
    const entry: Record<string, unknown> = {
      time: new Date().toISOString(),
      level: l,
      msg,
      ...base,
      ...fields,
    };
    if (entry.err instanceof Error) {
      const e = entry.err;
      entry.err = { message: e.message, name: e.name, stack: e.stack };
    }
    write(`${JSON.stringify(entry)}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(level, { ...base, ...fields }, write),
  };
}

/** A logger that drops everything (tests that assert on responses, not logs). */
export const silentLogger: Logger = createLogger('error', {}, () => {});

/** /s/{token} and /api/share-links/{token}, with slashes as they are or percent-encoded. */
const SHARE_LINK_PATH = /(^|\/|%2F)(s|api(?:\/|%2F)share-links)(\/|%2F)[^/?&#%]+/gi;

/**
 * A request's URL as it may be written down. Share-link tokens (/s/{token}, /api/share-links/{token})
 * are credentials and are always replaced by "…". With `queryValues: false` (the access log on stdout,
 * which ends up in ordinary log files) the values of the query are too: names, IDs and birth dates
 * searched for are patient data; the audit trail, readable by administrators only, keeps them.
 */
export function loggedUrl(url: string, opts: { queryValues: boolean }): string {
  // A request line in absolute form (http://host/path) is written from its path; every share-link path
  // loses its token, also one carried in a query value (?return=/s/{token}, percent-encoded or not).
  const redacted = url
    .replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '')
    .replace(
      SHARE_LINK_PATH,
      (_m, before: string, what: string, slash: string) => `${before}${what}${slash}…`,
    );
  const at = redacted.indexOf('?');
  const path = at < 0 ? redacted : redacted.slice(0, at);
  if (at < 0) return path;
  const query = redacted.slice(at + 1);
  if (opts.queryValues) return `${path}?${query}`;
  return `${path}?${query
    .split('&')
    .map((p) => (p.includes('=') ? `${p.slice(0, p.indexOf('='))}=…` : p))
    .join('&')}`;
}

/**
 * The one configuration module: the only reader of process.env. Every variable is validated at
 * start-up and all problems are reported together (bulletproof-react's env schema idea).
 */
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { isValidAETitle, parseRemoteAEs, type RemoteAE } from './dimse/negotiation';

export type DuplicatePolicy = 'reject' | 'overwrite';

export interface Config {
  host: string;
  port: number;
  /** Where the filesystem blob store (blobs/) and the SQLite index (index.sqlite) live. */
  dataDir: string;
  /** '' for the filesystem blob store under dataDir, or s3://bucket/prefix for S3-compatible storage. */
  blobStore: string;
  /** Path-style S3 addressing (MinIO and most on-premise stores need it). */
  s3ForcePathStyle: boolean;
  /** '' for the SQLite index in dataDir, or postgres://… for the PostgreSQL index. */
  databaseUrl: string;
  /** Origin clients use (behind a reverse proxy), for RetrieveURL and BulkDataURI; '' = from each request. */
  publicUrl: string;
  /** Character set assumed for files that carry non-ASCII text but declare no Specific Character Set. */
  defaultCharset: string;
  /** What STOW does with a SOP Instance UID already stored with different bytes. */
  duplicatePolicy: DuplicatePolicy;
  /** Largest accepted STOW request body, in bytes. */
  maxStowBytes: number;
  /** Largest accepted single instance, in bytes. */
  maxInstanceBytes: number;
  /** Upper bound (and default) of QIDO-RS `limit`. */
  qidoMaxResults: number;
  /** Built viewer served at / (absent folder: a short notice instead). */
  viewerDir: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Server processes sharing the port (1: a single process). */
  workers: number;
  /** Worker threads of the transcoding pool (codecs and rendering), per server process. */
  transcodeWorkers: number;
  /** Make a lossless HTJ2K copy of each stored instance's pixel data (served to HTJ2K frame requests). */
  ingestHtj2k: boolean;
  /** DICOM (DIMSE) gateway: listener, allowed callers, known remote AEs. */
  dimse: DimseConfig;
}

export interface DimseConfig {
  /** TCP port of the DIMSE listener; undefined: no listener. */
  port?: number;
  aeTitle: string;
  /** Calling AE titles allowed to associate; empty: any. */
  allowedAETitles: string[];
  /** Remote AEs by title: C-MOVE destinations and targets of "send study". */
  remoteAEs: RemoteAE[];
}

/** Variable, default and meaning; the README's configuration table is this list. */
export const VARIABLES = {
  HOST: ['127.0.0.1', 'Address to listen on (0.0.0.0 for every interface).'],
  PORT: ['8080', 'TCP port.'],
  PACS_DATA_DIR: ['./data', 'Folder for the blob store (blobs/) and the SQLite index (index.sqlite).'],
  PACS_BLOB_STORE: [
    '',
    'Where DICOM objects are stored: empty for blobs/ under PACS_DATA_DIR, or s3://bucket/prefix for S3-compatible object storage, reached with the standard AWS variables (AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).',
  ],
  PACS_S3_FORCE_PATH_STYLE: [
    'false',
    'true for path-style S3 addressing (http://host/bucket/key), which MinIO and most on-premise stores need.',
  ],
  DATABASE_URL: [
    '',
    'Where the index is: empty for the SQLite file index.sqlite in PACS_DATA_DIR, or postgres://user:password@host:port/database for PostgreSQL (any number of server processes can share it; the schema is created and migrated at start).',
  ],
  PACS_PUBLIC_URL: [
    '',
    'The address clients use (https://pacs.hospital.vn), for RetrieveURL and BulkDataURI values; empty: from each request Host. Set it behind a reverse proxy that terminates TLS.',
  ],
  PACS_DEFAULT_CHARSET: [
    'windows-1258',
    'Character set for files with non-ASCII text and no Specific Character Set (0008,0005); any WHATWG encoding label.',
  ],
  PACS_DUPLICATE_POLICY: [
    'reject',
    'Same SOP Instance UID with different bytes: reject (failure 0x0111) or overwrite (stored, warning 0xB000).',
  ],
  PACS_MAX_STOW_BYTES: ['10737418240', 'Largest STOW-RS request body (bytes); larger requests get 413.'],
  PACS_MAX_INSTANCE_BYTES: [
    '4294967296',
    'Largest single instance (bytes); a larger part fails with 0xA700.',
  ],
  PACS_QIDO_MAX_RESULTS: ['1000', 'Largest and default QIDO-RS limit.'],
  PACS_VIEWER_DIR: ['viewer/dist', 'Built viewer served at /.'],
  LOG_LEVEL: ['info', 'debug, info, warn or error (JSON lines on stdout).'],
  PACS_WORKERS: [
    '1',
    'Server processes sharing the port: a number, or auto (one per CPU core, at most 4). More than 1 helps many concurrent uploads on a multi-core server; on a 2-core machine that also runs the clients, 1 serves frames faster.',
  ],
  PACS_TRANSCODE_WORKERS: [
    'auto',
    'Worker threads that decode, encode and render pixel data (transcoded frames and instances, rendered images, HTJ2K copies), per server process: a number from 1 to 32, or auto (one less than the CPU cores, at least 1, at most 4). Requests beyond them wait in a queue.',
  ],
  PACS_INGEST_HTJ2K: [
    'false',
    'true: after an instance is stored, a lossless HTJ2K (1.2.840.10008.1.2.4.201) copy of its pixel data is made in the background and kept beside the original, so HTJ2K frame requests (and transfer-syntax=* for uncompressed instances) are answered without transcoding. The original is kept byte for byte.',
  ],
  PACS_DIMSE_PORT: [
    '',
    'TCP port of the DICOM (DIMSE) listener (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET); empty: none.',
  ],
  PACS_DIMSE_AE_TITLE: ['PACS', 'AE title of the archive (the called AE title modalities use).'],
  PACS_DIMSE_ALLOWED_AES: [
    '',
    'Calling AE titles allowed to associate, comma-separated; empty: any. Others are refused.',
  ],
  PACS_DIMSE_REMOTE_AES: [
    '',
    'Known remote AEs, comma-separated AET@host:port (C-MOVE destinations, send-study targets).',
  ],
} as const satisfies Record<string, readonly [string, string]>;

export class ConfigError extends Error {}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const errors: string[] = [];
  const get = (name: keyof typeof VARIABLES) => {
    const v = env[name];
    return v === undefined || v === '' ? VARIABLES[name][0] : v;
  };
  const int = (name: keyof typeof VARIABLES, min: number, max: number) => {
    const raw = get(name);
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      errors.push(`${name}=${raw}: expected an integer from ${min} to ${max}`);
      return min;
    }
    return n;
  };
  const oneOf = <T extends string>(name: keyof typeof VARIABLES, values: readonly T[]): T => {
    const raw = get(name) as T;
    if (!values.includes(raw)) errors.push(`${name}=${raw}: expected one of ${values.join(', ')}`);
    return raw;
  };

  const defaultCharset = get('PACS_DEFAULT_CHARSET');
  try {
    new TextDecoder(defaultCharset);
  } catch {
    errors.push(`PACS_DEFAULT_CHARSET=${defaultCharset}: not a character set this runtime can decode`);
  }
  const blobStore = get('PACS_BLOB_STORE');
  if (blobStore !== '' && !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[A-Za-z0-9._/-]*)?$/.test(blobStore))
    errors.push(`PACS_BLOB_STORE=${blobStore}: expected empty (filesystem) or s3://bucket/prefix`);
  const databaseUrl = get('DATABASE_URL').trim();
  if (databaseUrl !== '' && !validDatabaseUrl(databaseUrl))
    errors.push(
      `DATABASE_URL: expected empty (SQLite in PACS_DATA_DIR) or postgres://user:password@host:port/database`,
    );
  const publicUrl = get('PACS_PUBLIC_URL').trim().replace(/\/+$/, '');
  if (publicUrl !== '' && !(/^https?:\/\/[^/?#]+(\/[^?#]*)?$/.test(publicUrl) && URL.canParse(publicUrl)))
    errors.push(
      `PACS_PUBLIC_URL=${publicUrl}: expected empty or an http(s) URL such as https://pacs.hospital.vn`,
    );
  const config: Config = {
    host: get('HOST'),
    port: int('PORT', 0, 65535),
    dataDir: path.resolve(get('PACS_DATA_DIR')),
    blobStore,
    s3ForcePathStyle: oneOf('PACS_S3_FORCE_PATH_STYLE', ['true', 'false'] as const) === 'true',
    databaseUrl,
    publicUrl,
    defaultCharset,
    duplicatePolicy: oneOf('PACS_DUPLICATE_POLICY', ['reject', 'overwrite'] as const),
    maxStowBytes: int('PACS_MAX_STOW_BYTES', 1024, Number.MAX_SAFE_INTEGER),
    maxInstanceBytes: int('PACS_MAX_INSTANCE_BYTES', 1024, Number.MAX_SAFE_INTEGER),
    qidoMaxResults: int('PACS_QIDO_MAX_RESULTS', 1, 1_000_000),
    viewerDir: path.resolve(get('PACS_VIEWER_DIR')),
    logLevel: oneOf('LOG_LEVEL', ['debug', 'info', 'warn', 'error'] as const),
    workers:
      get('PACS_WORKERS') === 'auto' ? Math.min(4, availableParallelism()) : int('PACS_WORKERS', 1, 64),
    transcodeWorkers:
      get('PACS_TRANSCODE_WORKERS') === 'auto'
        ? autoTranscodeWorkers()
        : int('PACS_TRANSCODE_WORKERS', 1, 32),
    ingestHtj2k: oneOf('PACS_INGEST_HTJ2K', ['true', 'false'] as const) === 'true',
    dimse: dimseConfig(get, errors),
  };
  if (errors.length > 0) throw new ConfigError(`invalid configuration:\n  ${errors.join('\n  ')}`);
  return config;
}

function dimseConfig(get: (name: keyof typeof VARIABLES) => string, errors: string[]): DimseConfig {
  const portText = get('PACS_DIMSE_PORT').trim();
  const port = portText === '' ? undefined : Number(portText);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535))
    errors.push(`PACS_DIMSE_PORT=${portText}: expected empty (no listener) or an integer from 0 to 65535`);
  const aeTitle = get('PACS_DIMSE_AE_TITLE').trim();
  if (!isValidAETitle(aeTitle))
    errors.push(`PACS_DIMSE_AE_TITLE=${aeTitle}: expected 1 to 16 characters, no backslash`);
  const allowedAETitles = get('PACS_DIMSE_ALLOWED_AES')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const a of allowedAETitles)
    if (!isValidAETitle(a)) errors.push(`PACS_DIMSE_ALLOWED_AES: "${a}" is not a valid AE title`);
  const remote = parseRemoteAEs(get('PACS_DIMSE_REMOTE_AES'));
  for (const e of remote.errors) errors.push(`PACS_DIMSE_REMOTE_AES: ${e}`);
  return { port, aeTitle, allowedAETitles, remoteAEs: remote.aes };
}

/** PACS_TRANSCODE_WORKERS=auto: the cores minus one for the event loop, at least 1, at most 4. */
export function autoTranscodeWorkers(cores = availableParallelism()): number {
  return Math.max(1, Math.min(4, cores - 1));
}

/** A postgres:// or postgresql:// URL (the value is not echoed in errors: it may hold a password). */
function validDatabaseUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//.test(value) && URL.canParse(value);
}

/** The configuration of this process with some variables replaced (e.g. the target of a migration). */
export function loadConfigWith(overrides: Partial<Record<keyof typeof VARIABLES, string>>): Config {
  return loadConfig({ ...process.env, ...overrides });
}

/** What storage/open.ts needs from the configuration (the blob store and the index). */
export function storageOptions(config: Config) {
  return {
    dataDir: config.dataDir,
    blobStore: config.blobStore,
    s3ForcePathStyle: config.s3ForcePathStyle,
    databaseUrl: config.databaseUrl,
  };
}

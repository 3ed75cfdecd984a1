/**
 * The one configuration module: the only reader of process.env. Every variable is validated at
 * start-up and all problems are reported together (bulletproof-react's env schema idea).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import { ACCOUNT_ROLES, type AccountRole } from '../storage/access';
import {
  type AllowedAE,
  isValidAETitle,
  parseAllowedAEs,
  parseRemoteAEs,
  type RemoteAE,
} from './dimse/negotiation';

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
  /** A STOW request whose body stops arriving for this long is refused (408). */
  stowIdleSeconds: number;
  /** Upper bound (and default) of QIDO-RS `limit`. */
  qidoMaxResults: number;
  /** Built viewer served at / (absent folder: a short notice instead). */
  viewerDir: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Server processes sharing the port (1: a single process). */
  workers: number;
  /** Worker threads of the transcoding pool (codecs and rendering), per server process. */
  transcodeWorkers: number;
  /**
   * Free space (percent of the file system) below which the filesystem blob store's disk is reported low:
   * a warning in the log, `low` in GET /api/statistics. 0: never.
   */
  diskWarnPercent: number;
  /** Make a lossless HTJ2K copy of each stored instance's pixel data (served to HTJ2K frame requests). */
  ingestHtj2k: boolean;
  /** DICOM (DIMSE) gateway: listener, allowed callers, known remote AEs. */
  dimse: DimseConfig;
  /** Users, sessions, share links, rate limits, CORS (server/auth). */
  auth: AuthConfig;
}

export type ReferringAccess = 'shared' | 'shared-and-named';

export interface AuthConfig {
  /** false only with PACS_AUTH=off on a loopback address: every request acts as an administrator. */
  enabled: boolean;
  /** Password of the administrator created on first start ('' : a one-time password is printed). */
  adminPassword: string;
  /** Accepted as an administrator's bearer token ('' : none). */
  adminToken: string;
  /** Key of share link tokens ('' : generated once and kept in the database). */
  secret: string;
  sessionHours: number;
  shareDays: number;
  referringAccess: ReferringAccess;
  /** Failed logins (and share link checks) allowed per address per 15 minutes. */
  loginRateLimit: number;
  /** Days the audit trail keeps its events; 0: for ever. */
  auditRetentionDays: number;
  /** Origins allowed to call the API from a browser (CORS); empty: same origin only. */
  corsOrigins: string[];
  /** Express "trust proxy" value: whose X-Forwarded-For / -Proto to believe. */
  trustProxy: string;
  /** OpenID Connect sign-in with the hospital's identity provider; undefined: not configured. */
  oidc?: OidcConfig;
}

export interface OidcConfig {
  /** Issuer identifier (https, or http on a loopback host): its discovery document is read at start. */
  issuer: string;
  clientId: string;
  /** '' for a public client (PKCE only). */
  clientSecret: string;
  /** Space-separated scopes of the authorization request (always with openid). */
  scopes: string;
  /** Text of the sign-in button. */
  label: string;
  /** Claim that names the local user. */
  usernameClaim: string;
  /** Claim (a string or an array of strings; a dotted path for nested claims) whose values give the role. */
  roleClaim: string;
  /** Claim value → role; the most privileged mapped role wins. */
  roleMap: ReadonlyMap<string, AccountRole>;
  /** Claim holding the referring physician's DICOM name (Family^Given); '' : not read. */
  referringNameClaim: string;
}

export interface DimseConfig {
  /** TCP port of the DIMSE listener; undefined: no listener. */
  port?: number;
  /** TCP port of the DICOM TLS listener (PS3.15 Annex B); undefined: none. */
  tlsPort?: number;
  /**
   * Certificate, key, trusted CAs and CRLs of DICOM TLS, both ways, as read at start; undefined when not
   * configured. Handshakes use dimse/tls-files.ts currentDimseTls: tlsFiles read again when they change.
   */
  tls?: DimseTls;
  /** Where tls was read from, with tls. */
  tlsFiles?: DimseTlsFiles;
  /**
   * With a CA (client certificates required): a TLS association is refused unless its calling AE title
   * is one the client certificate names (PACS_DIMSE_TLS_BIND_AE, negotiation.ts certificateAETitles).
   */
  tlsBindAE: boolean;
  aeTitle: string;
  /**
   * Calling AEs allowed to associate, each maybe bound to the address it must call from; 'any': every
   * calling AE (PACS_DIMSE_ALLOWED_AES=*, or left empty with PACS_AUTH=off). Never empty while a port is set.
   */
  allowedAEs: AllowedAE[] | 'any';
  /** Remote AEs by title: C-MOVE destinations and targets of "send study" (they grant no access). */
  remoteAEs: RemoteAE[];
  /**
   * How long a storage commitment report that cannot be delivered is tried again, from its N-ACTION
   * (PACS_DIMSE_COMMIT_RETRY_HOURS), and the longest wait between two attempts
   * (PACS_DIMSE_COMMIT_MAX_WAIT), in milliseconds.
   */
  commitRetryMs: number;
  commitRetryMaxDelayMs: number;
}

/**
 * DICOM TLS material, read from PEM files (PACS_DIMSE_TLS_CERT, _KEY, _CA, _CRL): at start, and again
 * when they change (dimse/tls-files.ts).
 */
export interface DimseTls {
  /** Certificate chain: the TLS listener's, and our client certificate when we connect. */
  cert: Buffer;
  key: Buffer;
  /**
   * CAs trusted: a client certificate signed by one is required by the TLS listener, and the peers we
   * connect to are verified against them. Undefined: Node's default CAs outgoing, no client certificate
   * asked for incoming.
   */
  ca?: Buffer;
  /**
   * CRLs of those CAs, one PEM block each (Node reads one CRL per entry): a peer certificate they list
   * is refused, both ways. Undefined: no revocation check.
   */
  crl?: Buffer[];
}

/** The files of DICOM TLS ('' when not set), and their signature when read (dimse/tls-files.ts). */
export interface DimseTlsFiles {
  cert: string;
  key: string;
  ca: string;
  crl: string;
  signature: string;
}

/**
 * What the DICOM TLS files are now (dimse/tls-files.ts): the inode, size and modification time of each
 * one set, so that a file replaced or rewritten changes it.
 */
export function tlsFilesSignature(files: Omit<DimseTlsFiles, 'signature'>): string {
  return [files.cert, files.key, files.ca, files.crl]
    .map((file) => {
      if (file === '') return '-';
      try {
        const s = statSync(file);
        return `${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch (err) {
        return `(${(err as NodeJS.ErrnoException).code ?? 'error'})`;
      }
    })
    .join(' ');
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
    'Same SOP Instance UID with different bytes: reject (failure 0x0111) or overwrite (the new bytes replace the stored ones).',
  ],
  PACS_MAX_STOW_BYTES: ['10737418240', 'Largest STOW-RS request body (bytes); larger requests get 413.'],
  PACS_STOW_IDLE_SECONDS: [
    '120',
    'A STOW-RS request whose body stops arriving for this many seconds gets 408; nothing of it is kept.',
  ],
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
  PACS_DISK_WARN_PERCENT: [
    '10',
    'Free space (percent of its file system) below which the disk of the blob folder (and of the SQLite index, when on another file system) is low: checked at start and every minute, a warning in the log when it goes below and then once an hour while it stays below, and low: true in GET /api/statistics; 0: no check.',
  ],
  PACS_DIMSE_PORT: [
    '',
    'TCP port of the DICOM (DIMSE) listener (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET); empty: none.',
  ],
  PACS_DIMSE_TLS_PORT: [
    '',
    'TCP port of the DICOM TLS listener (PS3.15 Annex B, TLS 1.2 or 1.3): the same services and PACS_DIMSE_ALLOWED_AES as PACS_DIMSE_PORT, over TLS; empty: none. Needs PACS_DIMSE_TLS_CERT and PACS_DIMSE_TLS_KEY.',
  ],
  PACS_DIMSE_TLS_CERT: [
    '',
    'PEM file of the certificate (chain) of DICOM TLS: the TLS listener presents it, and it is our client certificate towards /tls remote AEs. Required with PACS_DIMSE_TLS_PORT or a /tls remote AE. This file, the key, the CA and the CRL are read again when they change (checked at most every 3 s, on new connections), without a restart.',
  ],
  PACS_DIMSE_TLS_KEY: ['', 'PEM file of the private key of PACS_DIMSE_TLS_CERT (not encrypted).'],
  PACS_DIMSE_TLS_CA: [
    '',
    'PEM file of the CAs DICOM TLS trusts (the hospital CA). Set: the TLS listener requires a client certificate signed by one of them (others are refused at the handshake), and /tls remote AEs are verified against them. Empty: no client certificate is asked for (PACS_DIMSE_ALLOWED_AES is then the only check of the caller), and remote AEs are verified against the usual public CAs.',
  ],
  PACS_DIMSE_TLS_CRL: [
    '',
    'PEM file of the certificate revocation lists (CRLs) of the CAs of PACS_DIMSE_TLS_CA, one or more: a certificate they list is refused, by the TLS listener at the handshake and towards /tls remote AEs. Then every CA of PACS_DIMSE_TLS_CA must have its CRL in the file, and a CRL past its next update refuses every certificate of its CA: publish a new one before then. Empty: no revocation check. Needs PACS_DIMSE_TLS_CA.',
  ],
  PACS_DIMSE_TLS_BIND_AE: [
    'on',
    'With PACS_DIMSE_TLS_CA: on, the TLS listener refuses an association whose calling AE title the client certificate does not name (its subject CN=CT1, or a subjectAltName URI:dicom-aet:CT1); off, any certificate of the CA may call as any allowed AE (for certificates that carry no AE title). No effect without PACS_DIMSE_TLS_CA.',
  ],
  PACS_DIMSE_AE_TITLE: ['PACS', 'AE title of the archive (the called AE title modalities use).'],
  PACS_DIMSE_ALLOWED_AES: [
    '',
    'The access control of the DICOM listener, which PACS_AUTH does not cover: calling AEs allowed to associate, comma-separated AET or AET@address (CT1@10.0.0.5, an IP address it must call from), each optionally =services it may use (CT1@10.0.0.5=store, WS1=find+move; store, find, move, get; without =: all); * for any AE (closed networks only). Required with PACS_DIMSE_PORT unless PACS_AUTH=off (empty then: any AE).',
  ],
  PACS_DIMSE_REMOTE_AES: [
    '',
    'Known remote AEs, comma-separated AET@host:port, with /tls at the end for one reached over DICOM TLS (C-MOVE destinations, send-study targets, storage commitment reports on a new association); they are not allowed to call in unless listed in PACS_DIMSE_ALLOWED_AES.',
  ],
  PACS_DIMSE_COMMIT_RETRY_HOURS: [
    '24',
    'How long a storage commitment report that cannot be delivered (the requester released its association and its AE cannot be reached) is tried again, from its N-ACTION, before it is given up (an error in the log, audited with 502); decimals allowed. The pending requests are kept in the index database, across restarts and for every server process.',
  ],
  PACS_DIMSE_COMMIT_MAX_WAIT: [
    '600',
    'Longest wait between two attempts at a storage commitment report (seconds): the waits start at 2 s and double up to it.',
  ],
  PACS_AUTH: [
    'on',
    'on: every request needs a user session, an API token or a share link. off (development only, and only when HOST is a loopback address): no login, every request acts as an administrator.',
  ],
  PACS_ADMIN_PASSWORD: [
    '',
    'Password of the administrator "admin" created on first start with no users; empty: a one-time password is printed, to be changed at first login.',
  ],
  PACS_ADMIN_TOKEN: [
    '',
    'When set (at least 32 characters), accepted as an administrator bearer token, for automation.',
  ],
  PACS_SECRET: [
    '',
    'Key that signs share link tokens (at least 32 characters); empty: one is generated on first start and kept in the index database.',
  ],
  PACS_SESSION_HOURS: ['12', 'Lifetime of a login session (hours).'],
  PACS_SHARE_DAYS: ['30', 'Default expiry of a share link (days).'],
  PACS_REFERRING_ACCESS: [
    'shared-and-named',
    'What a referring physician reads: shared (studies shared with them) or shared-and-named (also studies whose ReferringPhysicianName matches their referring name).',
  ],
  PACS_AUDIT_RETENTION_DAYS: [
    '0',
    'Audit events older than this many days are deleted (checked a few seconds after start, then every 6 hours; the deletion is itself an audit event); 0: kept for ever.',
  ],
  PACS_LOGIN_RATE_LIMIT: [
    '10',
    'Failed logins, and failed share link checks, allowed per client address per 15 minutes; then 429. Also the wrong birth dates or PINs allowed per share link (all addresses together) per 24 hours.',
  ],
  PACS_CORS_ORIGINS: [
    '',
    'Origins (https://ris.hospital.vn) allowed to call DICOMweb and the API from a browser, comma-separated; empty: same origin only.',
  ],
  PACS_TRUST_PROXY: [
    'loopback',
    'Which proxies X-Forwarded-For/-Proto are believed from (Express "trust proxy"): loopback, a list of addresses or subnets, or false.',
  ],
  PACS_OIDC_ISSUER: [
    '',
    'Issuer URL of the hospital identity provider for OpenID Connect sign-in (https://sso.hospital.vn/realms/hospital); empty: no OpenID Connect sign-in. http is accepted for loopback hosts only.',
  ],
  PACS_OIDC_CLIENT_ID: [
    '',
    'Client ID of the archive at the identity provider (required with PACS_OIDC_ISSUER).',
  ],
  PACS_OIDC_CLIENT_SECRET: ['', 'Client secret of the archive; empty for a public client (PKCE only).'],
  PACS_OIDC_SCOPES: ['openid profile email', 'Scopes asked for at sign-in (openid must be one of them).'],
  PACS_OIDC_LABEL: ['Hospital sign-in', 'Text of the OpenID Connect sign-in button.'],
  PACS_OIDC_USERNAME_CLAIM: [
    'preferred_username',
    'Claim that gives the local username (2 to 64 letters, digits or . _ @ -).',
  ],
  PACS_OIDC_ROLE_CLAIM: [
    'roles',
    'Claim whose value (a string or an array) gives the role; a dotted path reads a nested claim (realm_access.roles).',
  ],
  PACS_OIDC_ROLE_MAP: [
    '',
    'Claim values to roles, comma-separated value=role (pacs-admin=administrator,pacs-radiology=radiologist,pacs-referring=referring); required with PACS_OIDC_ISSUER. A user with no mapped value is refused.',
  ],
  PACS_OIDC_REFERRING_NAME_CLAIM: [
    '',
    "Claim holding a referring physician's DICOM name (Family^Given), kept as their referring name; empty: not read.",
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
    stowIdleSeconds: int('PACS_STOW_IDLE_SECONDS', 1, 86_400),
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
    diskWarnPercent: int('PACS_DISK_WARN_PERCENT', 0, 100),
    dimse: dimseConfig(get, int, errors),
    auth: authConfig(get, int, errors),
  };
  if (errors.length > 0) throw new ConfigError(`invalid configuration:\n  ${errors.join('\n  ')}`);
  return config;
}

function dimseConfig(
  get: (name: keyof typeof VARIABLES) => string,
  int: (name: keyof typeof VARIABLES, min: number, max: number) => number,
  errors: string[],
): DimseConfig {
  const listenPort = (name: 'PACS_DIMSE_PORT' | 'PACS_DIMSE_TLS_PORT') => {
    const text = get(name).trim();
    const port = text === '' ? undefined : Number(text);
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535))
      errors.push(`${name}=${text}: expected empty (no listener) or an integer from 0 to 65535`);
    return port;
  };
  const port = listenPort('PACS_DIMSE_PORT');
  const tlsPort = listenPort('PACS_DIMSE_TLS_PORT');
  if (port !== undefined && port !== 0 && port === tlsPort)
    errors.push(`PACS_DIMSE_TLS_PORT=${tlsPort}: the same port as PACS_DIMSE_PORT`);
  const aeTitle = get('PACS_DIMSE_AE_TITLE').trim();
  if (!isValidAETitle(aeTitle))
    errors.push(`PACS_DIMSE_AE_TITLE=${aeTitle}: expected 1 to 16 characters, no backslash`);
  const allowed = parseAllowedAEs(get('PACS_DIMSE_ALLOWED_AES'));
  for (const e of allowed.errors) errors.push(`PACS_DIMSE_ALLOWED_AES: ${e}`);
  // DIMSE has no sign-in: with PACS_AUTH on, the listener does not start open to every AE by default.
  let allowedAEs = allowed.aes;
  if (allowedAEs !== 'any' && allowedAEs.length === 0 && allowed.errors.length === 0) {
    if (get('PACS_AUTH') === 'off') allowedAEs = 'any';
    else if (port !== undefined || tlsPort !== undefined)
      errors.push(
        `PACS_DIMSE_ALLOWED_AES: required with ${port !== undefined ? 'PACS_DIMSE_PORT' : 'PACS_DIMSE_TLS_PORT'} (the DICOM listener has no sign-in; PACS_AUTH does not cover it): list the calling AEs it accepts, each bound to the address it calls from (CT1@10.0.0.5,MR1@10.0.0.6), or * to accept any AE on a closed network`,
      );
  }
  const remote = parseRemoteAEs(get('PACS_DIMSE_REMOTE_AES'));
  for (const e of remote.errors) errors.push(`PACS_DIMSE_REMOTE_AES: ${e}`);
  const tlsRemote = remote.aes.find((a) => a.tls);
  const neededBy =
    tlsPort !== undefined
      ? 'PACS_DIMSE_TLS_PORT'
      : tlsRemote
        ? `the /tls remote AE ${tlsRemote.aet} (PACS_DIMSE_REMOTE_AES)`
        : undefined;
  const files = {
    cert: get('PACS_DIMSE_TLS_CERT').trim(),
    key: get('PACS_DIMSE_TLS_KEY').trim(),
    ca: get('PACS_DIMSE_TLS_CA').trim(),
    crl: get('PACS_DIMSE_TLS_CRL').trim(),
  };
  // Before they are read: a file replaced meanwhile is read again at the first check.
  const signature = tlsFilesSignature(files);
  const tls = readDimseTls(files, errors, neededBy);
  const bindAE = get('PACS_DIMSE_TLS_BIND_AE').trim();
  if (bindAE !== 'on' && bindAE !== 'off')
    errors.push(`PACS_DIMSE_TLS_BIND_AE=${bindAE}: expected on or off`);
  return {
    port,
    tlsPort,
    tls,
    ...(tls ? { tlsFiles: { ...files, signature } } : {}),
    tlsBindAE: bindAE !== 'off',
    aeTitle,
    allowedAEs,
    remoteAEs: remote.aes,
    ...commitRetry(get, int, errors),
  };
}

/** PACS_DIMSE_COMMIT_RETRY_HOURS (decimals allowed) and PACS_DIMSE_COMMIT_MAX_WAIT, in milliseconds. */
function commitRetry(
  get: (name: keyof typeof VARIABLES) => string,
  int: (name: keyof typeof VARIABLES, min: number, max: number) => number,
  errors: string[],
): Pick<DimseConfig, 'commitRetryMs' | 'commitRetryMaxDelayMs'> {
  const hours = Number(get('PACS_DIMSE_COMMIT_RETRY_HOURS'));
  const hoursOk = hours > 0 && hours <= 720;
  if (!hoursOk)
    errors.push(
      `PACS_DIMSE_COMMIT_RETRY_HOURS=${get('PACS_DIMSE_COMMIT_RETRY_HOURS')}: expected a number of hours above 0, at most 720`,
    );
  return {
    commitRetryMs: hoursOk ? Math.round(hours * 3_600_000) : 24 * 3_600_000,
    commitRetryMaxDelayMs: int('PACS_DIMSE_COMMIT_MAX_WAIT', 1, 86_400) * 1000,
  };
}

/**
 * PACS_DIMSE_TLS_CERT, _KEY, _CA and _CRL (file names; '' or absent when not set), read and checked:
 * PEM, a key that goes with the certificate, CRLs that parse (and a CA for them). The certificate and
 * key are required when something needs them (neededBy names it). Problems are added to errors, each
 * naming its variable (or option, through names).
 */
export function readDimseTls(
  files: { cert: string; key: string; ca: string; crl?: string },
  errors: string[],
  neededBy: string | undefined,
  names: { cert: string; key: string; ca: string; crl?: string } = {
    cert: 'PACS_DIMSE_TLS_CERT',
    key: 'PACS_DIMSE_TLS_KEY',
    ca: 'PACS_DIMSE_TLS_CA',
    crl: 'PACS_DIMSE_TLS_CRL',
  },
): DimseTls | undefined {
  const crlFile = files.crl ?? '';
  const crlName = names.crl ?? 'PACS_DIMSE_TLS_CRL';
  if (files.cert === '' && files.key === '' && files.ca === '' && crlFile === '' && neededBy === undefined)
    return undefined;
  const before = errors.length;
  const read = (name: string, file: string): Buffer | undefined => {
    if (file === '') {
      if (neededBy !== undefined) errors.push(`${name}: required with ${neededBy}`);
      return undefined;
    }
    try {
      return readFileSync(file);
    } catch (err) {
      errors.push(
        `${name}=${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
      return undefined;
    }
  };
  const pemCertificates = (name: string, file: string, pem: Buffer | undefined) => {
    if (!pem) return;
    const blocks = pem
      .toString('latin1')
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    if (!blocks) {
      errors.push(`${name}=${file}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)`);
      return;
    }
    for (const block of blocks)
      try {
        new X509Certificate(block);
      } catch (err) {
        errors.push(`${name}=${file}: not a valid certificate (${(err as Error).message})`);
        return;
      }
  };
  const cert = read(names.cert, files.cert);
  pemCertificates(names.cert, files.cert, cert);
  const key = read(names.key, files.key);
  if (key)
    try {
      createPrivateKey(key);
    } catch (err) {
      errors.push(
        `${names.key}=${files.key}: not a PEM private key, or an encrypted one (${(err as Error).message})`,
      );
    }
  const ca = files.ca === '' ? undefined : read(names.ca, files.ca);
  pemCertificates(names.ca, files.ca, ca);
  let crl: Buffer[] | undefined;
  if (crlFile !== '') {
    if (files.ca === '')
      errors.push(`${crlName}=${crlFile}: needs ${names.ca} (the CAs whose revoked certificates it lists)`);
    const pem = read(crlName, crlFile);
    const blocks = pem?.toString('latin1').match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g);
    if (pem && !blocks) errors.push(`${crlName}=${crlFile}: no PEM CRL in it (-----BEGIN X509 CRL-----)`);
    else if (blocks) {
      crl = blocks.map((b) => Buffer.from(`${b}\n`, 'latin1'));
      for (const [i, block] of crl.entries())
        try {
          createSecureContext({ crl: block });
        } catch (err) {
          errors.push(
            `${crlName}=${crlFile}: CRL ${i + 1} of ${crl.length} is not valid (${(err as Error).message})`,
          );
          break;
        }
    }
  }
  if (errors.length > before) return undefined;
  if (!cert || !key) {
    // Nothing uses a certificate without its key, nor a CA without a certificate of our own.
    errors.push(`${names.cert} and ${names.key}: set both (with ${names.ca} if used), or none`);
    return undefined;
  }
  try {
    createSecureContext({ cert, key, ca });
  } catch (err) {
    errors.push(
      `${names.key}=${files.key}: does not go with the certificate of ${names.cert} (${(err as Error).message})`,
    );
    return undefined;
  }
  return { cert, key, ...(ca ? { ca } : {}), ...(crl ? { crl } : {}) };
}

function authConfig(
  get: (name: keyof typeof VARIABLES) => string,
  int: (name: keyof typeof VARIABLES, min: number, max: number) => number,
  errors: string[],
): AuthConfig {
  const mode = get('PACS_AUTH');
  if (mode !== 'on' && mode !== 'off') errors.push(`PACS_AUTH=${mode}: expected on or off`);
  const host = get('HOST');
  if (mode === 'off' && !['127.0.0.1', '::1', 'localhost'].includes(host))
    errors.push(
      `PACS_AUTH=off is allowed only when HOST is a loopback address (127.0.0.1, ::1), not ${host}: anyone who can reach the server would read every study`,
    );
  const adminToken = get('PACS_ADMIN_TOKEN');
  if (adminToken !== '' && adminToken.length < 32)
    errors.push('PACS_ADMIN_TOKEN: expected at least 32 characters (e.g. openssl rand -hex 32)');
  const secret = get('PACS_SECRET');
  if (secret !== '' && secret.length < 32)
    errors.push('PACS_SECRET: expected at least 32 characters (e.g. openssl rand -hex 32)');
  const referringAccess = get('PACS_REFERRING_ACCESS');
  if (referringAccess !== 'shared' && referringAccess !== 'shared-and-named')
    errors.push(`PACS_REFERRING_ACCESS=${referringAccess}: expected shared or shared-and-named`);
  const corsOrigins = get('PACS_CORS_ORIGINS')
    .split(',')
    .map((s) => s.trim().replace(/\/+$/, ''))
    .filter((s) => s !== '');
  for (const o of corsOrigins)
    if (!/^https?:\/\/[^/?#]+$/.test(o) || !URL.canParse(o))
      errors.push(`PACS_CORS_ORIGINS: "${o}" is not an origin such as https://ris.hospital.vn`);
  return {
    enabled: mode !== 'off',
    adminPassword: get('PACS_ADMIN_PASSWORD'),
    adminToken,
    secret,
    sessionHours: int('PACS_SESSION_HOURS', 1, 24 * 30),
    shareDays: int('PACS_SHARE_DAYS', 1, 3650),
    referringAccess: referringAccess as ReferringAccess,
    loginRateLimit: int('PACS_LOGIN_RATE_LIMIT', 1, 100_000),
    auditRetentionDays: int('PACS_AUDIT_RETENTION_DAYS', 0, 36_500),
    corsOrigins,
    trustProxy: get('PACS_TRUST_PROXY'),
    oidc: oidcConfig(get, errors),
  };
}

function oidcConfig(get: (name: keyof typeof VARIABLES) => string, errors: string[]): OidcConfig | undefined {
  const issuer = get('PACS_OIDC_ISSUER').trim();
  if (issuer === '') return undefined;
  const url = URL.parse(issuer);
  const loopback = url !== null && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
  if (
    !url ||
    url.search ||
    url.hash ||
    !(url.protocol === 'https:' || (url.protocol === 'http:' && loopback))
  )
    errors.push(
      `PACS_OIDC_ISSUER=${issuer}: expected an https URL (https://sso.hospital.vn/realms/hospital); http only for a loopback host`,
    );
  const clientId = get('PACS_OIDC_CLIENT_ID').trim();
  if (clientId === '') errors.push('PACS_OIDC_CLIENT_ID: required with PACS_OIDC_ISSUER');
  const scopes = get('PACS_OIDC_SCOPES').trim().split(/\s+/);
  if (!scopes.includes('openid')) errors.push(`PACS_OIDC_SCOPES=${scopes.join(' ')}: must include openid`);
  const roleMap = new Map<string, AccountRole>();
  for (const entry of get('PACS_OIDC_ROLE_MAP').split(',')) {
    if (entry.trim() === '') continue;
    const i = entry.lastIndexOf('=');
    const value = entry.slice(0, Math.max(i, 0)).trim();
    const role = entry.slice(i + 1).trim() as AccountRole;
    if (i <= 0 || value === '' || !ACCOUNT_ROLES.includes(role))
      errors.push(
        `PACS_OIDC_ROLE_MAP: "${entry.trim()}" is not value=role with a role among ${ACCOUNT_ROLES.join(', ')}`,
      );
    else roleMap.set(value, role);
  }
  if (roleMap.size === 0)
    errors.push(
      'PACS_OIDC_ROLE_MAP: required with PACS_OIDC_ISSUER (e.g. pacs-admin=administrator,pacs-radiology=radiologist)',
    );
  return {
    issuer,
    clientId,
    clientSecret: get('PACS_OIDC_CLIENT_SECRET'),
    scopes: scopes.join(' '),
    label: get('PACS_OIDC_LABEL').trim() || VARIABLES.PACS_OIDC_LABEL[0],
    usernameClaim: get('PACS_OIDC_USERNAME_CLAIM').trim(),
    roleClaim: get('PACS_OIDC_ROLE_CLAIM').trim(),
    roleMap,
    referringNameClaim: get('PACS_OIDC_REFERRING_NAME_CLAIM').trim(),
  };
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

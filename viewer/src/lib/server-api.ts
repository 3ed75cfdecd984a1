/**
 * The server's own API (not DICOMweb), named after what it does: sign-in and the current principal,
 * share links, users, API tokens and the audit trail (server/app.ts lists the routes). JSON in and out;
 * a refusal is thrown as a DicomwebError carrying the server's message, so describeError words it.
 *
 * Requests that change something carry the session's CSRF token (X-CSRF-Token), kept here in memory
 * only: the session cookie itself is HttpOnly and never seen by the page.
 */
import { env } from '../config/env';
import { DicomwebError } from './dicomweb-client';

export const CSRF_HEADER = 'X-CSRF-Token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

let csrfToken: string | null = null;

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

export function getCsrfToken(): string | null {
  return csrfToken;
}

/** Whether url is one of our server's (the API or the DICOMweb root), where the session applies. */
export function isServerUrl(url: string): boolean {
  return (
    url.startsWith(`${env.apiRoot}/`) || url.startsWith(`${env.dicomwebRoot}/`) || url === env.dicomwebRoot
  );
}

/** The message of an error response: the server answers {"status", "message"}. */
async function errorMessage(res: Response): Promise<string> {
  try {
    const text = await res.text();
    if (!text) return res.statusText;
    try {
      const body = JSON.parse(text) as { message?: string };
      return body.message ?? text.slice(0, 300);
    } catch {
      return text.slice(0, 300);
    }
  } catch {
    return res.statusText;
  }
}

/** One request to the server API (path below /api). */
export async function apiRequest<T>(
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<T> {
  const url = `${env.apiRoot}${path}`;
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (!SAFE_METHODS.has(method) && csrfToken) headers[CSRF_HEADER] = csrfToken;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new DicomwebError(0, (e as Error).message, url);
  }
  if (!res.ok) throw new DicomwebError(res.status, await errorMessage(res), url);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** The HTTP status of an API error (0: no answer), or undefined for anything else. */
export function errorStatus(e: unknown): number | undefined {
  return e instanceof DicomwebError ? e.status : undefined;
}

/**
 * Puts the session into every same-origin request of the page, whoever makes it (the DICOMweb client,
 * the demo loader): the CSRF token on requests that change something, and a report of each 401 (the
 * session ended) to onUnauthorized. Sign-in endpoints and share-link checks answer 401 for a wrong
 * password or birth date, which is not the end of a session: they are not reported.
 */
export function installSessionFetch(onUnauthorized: (url: string) => void): void {
  const w = window as Window & { __pacsSessionFetch?: boolean };
  if (w.__pacsSessionFetch) return;
  w.__pacsSessionFetch = true;
  const original = window.fetch.bind(window);
  window.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : new URL(String(input), window.location.href).href;
    const ours = isServerUrl(url);
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    let effective = init;
    if (ours && csrfToken && !SAFE_METHODS.has(method)) {
      const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
      if (!headers.has(CSRF_HEADER)) headers.set(CSRF_HEADER, csrfToken);
      effective = { ...init, headers };
    }
    const res = await original(input, effective);
    if (
      res.status === 401 &&
      ours &&
      !url.startsWith(`${env.apiRoot}/auth/`) &&
      !url.startsWith(`${env.apiRoot}/share-links/`)
    )
      onUnauthorized(url);
    return res;
  };
}

// ── sign-in ──

export interface AuthConfig {
  authEnabled: boolean;
  oidc: { enabled: boolean; label: string };
}

export type Role = 'administrator' | 'radiologist' | 'referring' | 'modality' | 'link';
export type AccountRole = Exclude<Role, 'link'>;
export const ACCOUNT_ROLES: readonly AccountRole[] = [
  'administrator',
  'radiologist',
  'referring',
  'modality',
];

export interface Me {
  username: string;
  role: Role;
  displayName: string | null;
  via: string;
  mustChangePassword: boolean;
  csrfToken: string | null;
  /** The one study a link session may read. */
  studyInstanceUID: string | null;
  shareExpiresAt: string | null;
}

export const getAuthConfig = () => apiRequest<AuthConfig>('GET', '/auth/config');
export const getMe = () => apiRequest<Me>('GET', '/auth/me');

export async function login(username: string, password: string): Promise<Me> {
  const r = await apiRequest<Omit<Me, 'via' | 'studyInstanceUID' | 'shareExpiresAt'>>('POST', '/auth/login', {
    username,
    password,
  });
  return { ...r, via: 'session', studyInstanceUID: null, shareExpiresAt: null };
}

export const logout = () => apiRequest<void>('POST', '/auth/logout');

export const changePassword = (currentPassword: string, newPassword: string) =>
  apiRequest<void>('POST', '/auth/password', { currentPassword, newPassword });

/** Where the OpenID Connect sign-in starts (a page navigation, not a fetch). */
/** Single sign-on; after it the browser comes back to `returnTo` (the page that asked for sign-in). */
export const oidcLoginUrl = (returnTo = `${location.pathname}${location.search}`) =>
  `${env.apiRoot}/auth/oidc/login?return=${encodeURIComponent(returnTo)}`;

// ── share links ──

export type ShareVerify = 'none' | 'birthdate' | 'pin';

export interface Share {
  id: string;
  studyInstanceUID: string;
  url: string;
  grantee: string | null;
  verify: ShareVerify;
  createdBy: string;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
  /** 'active', or why the link cannot be used (revoked, expired). */
  status: string;
  qrSvg: string;
  qrPng: string;
  slip: string;
}

export interface NewShare {
  expiresInDays?: number;
  verify?: ShareVerify;
  pin?: string;
  grantee?: string;
}

const uidPath = (uid: string) => encodeURIComponent(uid);

export const createShare = (study: string, s: NewShare) =>
  apiRequest<Share>('POST', `/studies/${uidPath(study)}/shares`, s);
export const listShares = (study: string) => apiRequest<Share[]>('GET', `/studies/${uidPath(study)}/shares`);
export const revokeShare = (id: string) => apiRequest<void>('DELETE', `/shares/${encodeURIComponent(id)}`);

export const describeLink = (token: string) =>
  apiRequest<{ verify: ShareVerify; expiresAt: string; forNamedUser?: boolean }>(
    'GET',
    `/share-links/${encodeURIComponent(token)}`,
  );
export const openLink = (token: string, answer: { birthDate?: string; pin?: string }) =>
  apiRequest<{ studyInstanceUID: string; csrfToken: string }>(
    'POST',
    `/share-links/${encodeURIComponent(token)}/open`,
    answer,
  );

// ── users and API tokens (administrators) ──

export interface UserAccount {
  username: string;
  role: AccountRole;
  displayName: string | null;
  referringName: string | null;
  oidc: boolean;
  mustChangePassword: boolean;
  disabled: boolean;
  createdAt: string;
}

export interface UserChange {
  role?: AccountRole;
  displayName?: string;
  referringName?: string;
  password?: string;
  mustChangePassword?: boolean;
  disabled?: boolean;
}

export const listUsers = () => apiRequest<UserAccount[]>('GET', '/users');
export const createUser = (u: UserChange & { username: string; role: AccountRole }) =>
  apiRequest<UserAccount>('POST', '/users', u);
export const updateUser = (username: string, change: UserChange) =>
  apiRequest<UserAccount>('PATCH', `/users/${encodeURIComponent(username)}`, change);

export interface ApiToken {
  id: string;
  username: string;
  label: string | null;
  /** Times in milliseconds since 1970. */
  createdAt: number;
  expiresAt: number | null;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

export const listTokens = () => apiRequest<ApiToken[]>('GET', '/tokens');
export const createToken = (t: { username: string; label?: string; expiresInDays?: number }) =>
  apiRequest<{ id: string; token: string; username: string }>('POST', '/tokens', t);
export const revokeToken = (id: string) => apiRequest<void>('DELETE', `/tokens/${encodeURIComponent(id)}`);

// ── audit trail (administrators) ──

export interface AuditEvent {
  id: number;
  time: string;
  user: string | null;
  role: string | null;
  action: string;
  study: string | null;
  patient: string | null;
  status: number;
  outcome: 'success' | 'failure';
  source: string | null;
  detail: string | null;
}

export interface AuditFilter {
  from?: string;
  to?: string;
  user?: string;
  action?: string;
  study?: string;
  patient?: string;
  /** success, failure or an HTTP status code */
  result?: string;
  limit?: number;
  before?: number;
}

function auditQuery(f: AuditFilter): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

export const queryAudit = (f: AuditFilter, signal?: AbortSignal) =>
  apiRequest<{ events: AuditEvent[]; next: number | null }>(
    'GET',
    `/audit${auditQuery(f)}`,
    undefined,
    signal,
  );

/** The export of the events matching f (JSON lines), downloaded by a plain link. */
export const auditExportUrl = (f: AuditFilter) =>
  `${env.apiRoot}/audit/export${auditQuery({ ...f, limit: undefined, before: undefined })}`;

// ── storage statistics (administrators) ──

/** The free space of a local disk the archive fills (server/disk.ts). */
export interface DiskSpace {
  path: string;
  freeBytes: number;
  totalBytes: number;
  freePercent: number;
  /** Below the server's PACS_DISK_WARN_PERCENT. */
  low: boolean;
}

/** GET /api/statistics: what the archive holds, where, and the room left on its local disks. */
export interface Statistics {
  studies: number;
  series: number;
  instances: number;
  storedBytes: number;
  blobStore: { kind: 'filesystem' | 's3'; location: string };
  index: { kind: 'sqlite' | 'postgresql'; location: string; disk?: DiskSpace };
  /** The blob folder's disk; null when the blobs are in S3. */
  disk: DiskSpace | null;
}

export const getStatistics = (signal?: AbortSignal) =>
  apiRequest<Statistics>('GET', '/statistics', undefined, signal);

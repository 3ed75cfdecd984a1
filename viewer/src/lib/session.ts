/**
 * Who is using the viewer: whether the server asks for sign-in at all (GET /api/auth/config), and if
 * so the signed-in principal (GET /api/auth/me): a user, or a share link's visitor who may read one
 * study. Any 401 of a later request means the session has ended (expired, signed out elsewhere, the
 * account disabled, the link revoked): the state turns back to signed-out with the reason.
 */
import { useSyncExternalStore } from 'react';
import {
  type AuthConfig,
  changePassword as changePasswordRequest,
  errorStatus,
  getAuthConfig,
  getMe,
  installSessionFetch,
  login,
  logout,
  type Me,
  setCsrfToken,
} from './server-api';

export type SignedOutReason = 'expired' | 'signed-out' | undefined;

export type AuthState =
  | { status: 'loading' }
  /** The server could not be asked. */
  | { status: 'unreachable'; error: unknown }
  /** The server needs no sign-in (PACS_AUTH=off): the viewer works as it always did. */
  | { status: 'off' }
  | {
      status: 'signed-out';
      config: AuthConfig;
      reason?: SignedOutReason;
      /** The link this tab was opened with, when its session has ended: its page says why. */
      linkToken?: string;
    }
  | { status: 'signed-in'; config: AuthConfig; me: Me };

/** What the last visit found (localStorage), so a known setup starts its requests at once. */
const HINT_KEY = 'pacs.auth';
/** The share link this tab was opened with (sessionStorage: this tab only). */
const LINK_KEY = 'pacs.link';

let state: AuthState = { status: 'loading' };
const listeners = new Set<() => void>();
let started = false;
let watching = false;
/** Who was signed in when the session ended: signing in as someone else reloads the page. */
let lastUser: string | null = null;

function set(next: AuthState): void {
  state = next;
  if (next.status === 'signed-in') {
    lastUser = next.me.username;
    setCsrfToken(next.me.csrfToken);
    writeHint(next.me.role === 'link' ? `link:${next.me.studyInstanceUID ?? ''}` : 'user');
  } else {
    setCsrfToken(null);
    if (next.status === 'off') writeHint('off');
    else if (next.status === 'signed-out') writeHint('signed-out');
  }
  for (const l of listeners) l();
}

function storage(kind: 'local' | 'session'): Storage | undefined {
  try {
    return kind === 'local' ? window.localStorage : window.sessionStorage;
  } catch {
    return undefined; // private mode
  }
}

function writeHint(value: string): void {
  if (value) storage('local')?.setItem(HINT_KEY, value);
  else storage('local')?.removeItem(HINT_KEY);
}

/**
 * What the previous visit of this browser found: 'off' (no sign-in), 'user', 'link:<study>',
 * 'signed-out', or '' (no visit yet). Used only to start a study's requests before the answer to
 * /api/auth/me is back.
 */
export function authHint(): string {
  return storage('local')?.getItem(HINT_KEY) ?? '';
}

export function getAuth(): AuthState {
  return state;
}

function subscribe(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function useAuth(): AuthState {
  return useSyncExternalStore(subscribe, getAuth);
}

/** Remembers that this tab was opened with a share link (its page then explains when it ends). */
export function rememberLink(token: string): void {
  storage('session')?.setItem(LINK_KEY, token);
}

function linkOfThisTab(): string | undefined {
  return storage('session')?.getItem(LINK_KEY) ?? undefined;
}

function sessionEnded(config: AuthConfig, reason: SignedOutReason): void {
  set({ status: 'signed-out', config, reason, linkToken: linkOfThisTab() });
}

/** Asks the server who we are. */
async function whoAmI(config: AuthConfig, reason?: SignedOutReason): Promise<void> {
  try {
    set({ status: 'signed-in', config, me: await getMe() });
  } catch (e) {
    if (errorStatus(e) === 401) sessionEnded(config, reason);
    else set({ status: 'unreachable', error: e });
  }
}

/** Finds out whether sign-in is needed and who is signed in; once, at start (again after an error). */
export async function startAuth(): Promise<void> {
  if (started && state.status !== 'unreachable') return;
  started = true;
  installSessionFetch(() => {
    // A request was refused for want of a session: it ended while the viewer was open.
    if (state.status === 'signed-in') sessionEnded(state.config, 'expired');
  });
  if (state.status === 'unreachable') set({ status: 'loading' });
  let config: AuthConfig;
  try {
    config = await getAuthConfig();
  } catch (e) {
    // A server from before sign-in existed has no such route: it needs none.
    if (errorStatus(e) === 404) return set({ status: 'off' });
    return set({ status: 'unreachable', error: e });
  }
  if (!config.authEnabled) return set({ status: 'off' });
  await whoAmI(config);
  if (!watching) {
    watching = true;
    // Coming back to a tab left open: find out at once whether the session is still valid.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') void checkSession();
    });
  }
}

/** Whether the session is still valid (only a 401 ends it: a network blip changes nothing). */
async function checkSession(): Promise<void> {
  const s = state;
  if (s.status !== 'signed-in') return;
  try {
    await getMe();
  } catch (e) {
    if (errorStatus(e) === 401 && state === s) sessionEnded(s.config, 'expired');
  }
}

/** Asks the server again who we are (after a share link was opened, or a password changed). */
export async function refreshSession(): Promise<void> {
  const s = state;
  const config =
    s.status === 'signed-in' || s.status === 'signed-out'
      ? s.config
      : await getAuthConfig().catch(() => null);
  if (!config) return;
  if (!config.authEnabled) return set({ status: 'off' });
  await whoAmI(config);
}

/** Signs in with a username and password; throws the server's refusal (401, 429...). */
export async function signIn(username: string, password: string): Promise<void> {
  const s = state;
  if (s.status !== 'signed-out') return;
  const me = await login(username, password);
  storage('session')?.removeItem(LINK_KEY);
  // Someone else at this workstation: start from a clean page, with nothing of the previous user's
  // studies left in memory (the image cache).
  if (lastUser !== null && lastUser !== me.username) {
    window.location.reload();
    return;
  }
  set({ status: 'signed-in', config: s.config, me });
}

/**
 * Ends a share link's session and stays on the page, signed out: a link made for a named account asks
 * its visitor to sign in with that account instead.
 */
export async function endLinkSession(): Promise<void> {
  const s = state;
  if (s.status !== 'signed-in' || s.me.role !== 'link') return;
  await logout().catch(() => undefined);
  storage('session')?.removeItem(LINK_KEY);
  set({ status: 'signed-out', config: s.config });
}

/** Signs out and reloads the viewer, so nothing of the session stays in memory. */
export async function signOut(): Promise<void> {
  await logout().catch(() => undefined);
  storage('session')?.removeItem(LINK_KEY);
  writeHint('signed-out');
  window.location.assign('/');
}

/** Changes the signed-in user's password, then reads the session again (mustChangePassword is cleared). */
export async function changeOwnPassword(current: string, next: string): Promise<void> {
  await changePasswordRequest(current, next);
  const s = state;
  if (s.status === 'signed-in') await whoAmI(s.config);
}

import { useSyncExternalStore } from 'react';

/** A minimal history router: the app has a handful of routes, so a library would be more code than this. */
const listeners = new Set<() => void>();
window.addEventListener('popstate', () => {
  for (const l of listeners) l();
});

function subscribe(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function snapshot(): string {
  return window.location.pathname + window.location.search;
}

export function useLocation(): URL {
  const href = useSyncExternalStore(subscribe, snapshot);
  return new URL(href, window.location.origin);
}

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  if (to === snapshot()) return;
  if (opts.replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  for (const l of listeners) l();
}

export type AdminPage = 'audit' | 'users' | 'tokens' | 'storage';

export type Route =
  | { name: 'studies' }
  | { name: 'viewer'; studyUID: string }
  /** A share link (/s/{token}): opens one study for whoever holds it. */
  | { name: 'link'; token: string }
  | { name: 'admin'; page: AdminPage }
  /** The signed-in user's own password. */
  | { name: 'password' }
  | { name: 'notFound' };

export function matchRoute(url: URL): Route {
  const path = url.pathname.replace(/\/+$/, '') || '/';
  if (path === '/' || path === '/studies') return { name: 'studies' };
  const m = /^\/viewer\/([0-9.]+)$/.exec(path);
  if (m) return { name: 'viewer', studyUID: m[1] };
  const link = /^\/s\/([A-Za-z0-9._~-]+)$/.exec(path);
  if (link) return { name: 'link', token: link[1] };
  const admin = /^\/admin\/(audit|users|tokens|storage)$/.exec(path);
  if (admin) return { name: 'admin', page: admin[1] as AdminPage };
  if (path === '/account/password') return { name: 'password' };
  return { name: 'notFound' };
}

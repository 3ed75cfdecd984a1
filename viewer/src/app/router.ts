import { useSyncExternalStore } from 'react';

/** A minimal history router: the app has two routes, so a library would be more code than this. */
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

export type Route = { name: 'studies' } | { name: 'viewer'; studyUID: string } | { name: 'notFound' };

export function matchRoute(url: URL): Route {
  const path = url.pathname.replace(/\/+$/, '') || '/';
  if (path === '/' || path === '/studies') return { name: 'studies' };
  const m = /^\/viewer\/([0-9.]+)$/.exec(path);
  if (m) return { name: 'viewer', studyUID: m[1] };
  return { name: 'notFound' };
}

/**
 * The route × role matrix. Every route is listed from the server's router itself, so a route added
 * without an access rule, or without a line in EXPECTED below, fails this test. Each route is then
 * called as each role (and without credentials), and must be refused (401 without credentials, 403
 * with) or let through exactly as the issue specifies.
 */
import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Guard } from '../../server/auth/auth';
import {
  type Client,
  login,
  openLink,
  PASSWORD,
  type SecureArchive,
  startSecureArchive,
  userWithToken,
} from './setup';

type Who = 'administrator' | 'radiologist' | 'referring' | 'modality' | 'link' | 'anonymous';
const ALL: Who[] = ['administrator', 'radiologist', 'referring', 'modality', 'link', 'anonymous'];
const SIGNED_IN: Who[] = ['administrator', 'radiologist', 'referring', 'modality', 'link'];
const READERS: Who[] = ['administrator', 'radiologist', 'referring', 'link'];
const STORERS: Who[] = ['administrator', 'modality'];
const SHARERS: Who[] = ['administrator', 'radiologist'];
const ADMIN: Who[] = ['administrator'];

/** Who may call each route (method and path as in the route table), from the issue's roles. */
const EXPECTED: Record<string, Who[]> = {
  'POST /dicomweb/studies': STORERS,
  'POST /dicomweb/studies/:study': STORERS,
  'GET /dicomweb/studies': READERS,
  'GET /dicomweb/series': READERS,
  'GET /dicomweb/instances': READERS,
  'GET /dicomweb/studies/:study/series': READERS,
  'GET /dicomweb/studies/:study/instances': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances': READERS,
  'GET /dicomweb/studies/:study': READERS,
  'GET /dicomweb/studies/:study/series/:series': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances/:instance': READERS,
  'GET /dicomweb/studies/:study/metadata': READERS,
  'GET /dicomweb/studies/:study/series/:series/metadata': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances/:instance/metadata': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances/:instance/frames/:frames': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances/:instance/bulkdata/*path': READERS,
  'GET /dicomweb/studies/:study/rendered': READERS,
  'GET /dicomweb/studies/:study/series/:series/rendered': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances/:instance/rendered': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances/:instance/frames/:frames/rendered': READERS,
  'GET /dicomweb/studies/:study/thumbnail': READERS,
  'GET /dicomweb/studies/:study/series/:series/thumbnail': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances/:instance/thumbnail': READERS,
  'GET /dicomweb/studies/:study/series/:series/instances/:instance/frames/:frames/thumbnail': READERS,
  'DELETE /dicomweb/studies/:study': ADMIN,
  'DELETE /dicomweb/studies/:study/series/:series': ADMIN,
  'DELETE /dicomweb/studies/:study/series/:series/instances/:instance': ADMIN,
  'GET /healthz': ALL,
  'POST /api/demo': ADMIN,
  'GET /api/statistics': ADMIN,
  'POST /api/studies/:study/send': SHARERS,
  'GET /api/dimse': SHARERS,
  'GET /api/auth/config': ALL,
  'POST /api/auth/login': ALL,
  'POST /api/auth/logout': SIGNED_IN,
  'GET /api/auth/me': SIGNED_IN,
  'POST /api/auth/password': SIGNED_IN,
  'GET /api/auth/oidc/login': ALL,
  'GET /api/auth/oidc/callback': ALL,
  'GET /api/users': ADMIN,
  'POST /api/users': ADMIN,
  'PATCH /api/users/:username': ADMIN,
  'DELETE /api/users/:username': ADMIN,
  'GET /api/tokens': ADMIN,
  'POST /api/tokens': ADMIN,
  'DELETE /api/tokens/:id': ADMIN,
  'GET /api/audit': ADMIN,
  'GET /api/audit/export': ADMIN,
  'POST /api/studies/:study/shares': SHARERS,
  'GET /api/studies/:study/shares': SHARERS,
  'DELETE /api/shares/:id': SHARERS,
  'GET /api/shares/:id/qr.svg': SHARERS,
  'GET /api/shares/:id/qr.png': SHARERS,
  'GET /api/shares/:id/slip': SHARERS,
  'GET /api/share-links/:token': ALL,
  'POST /api/share-links/:token/open': ALL,
  'ALL /dicomweb/*rest': ALL,
  'ALL /api/*rest': ALL,
  'GET /': ALL,
  'GET /*rest': ALL,
};

interface RouteInfo {
  key: string;
  method: string;
  path: string;
  rule: string | undefined;
}

/** Every route of the app, with the rule of its guard (walking mounted routers too). */
function routesOf(app: Express): RouteInfo[] {
  const out: RouteInfo[] = [];
  type Layer = {
    route?: { path: string; methods: Record<string, boolean>; stack: { handle: Partial<Guard> }[] };
    handle: { stack?: Layer[] };
  };
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        const guard = layer.route.stack.find((l) => typeof l.handle.rule === 'string')?.handle;
        // app.all() registers every method: one ALL entry.
        const all = layer.route.methods._all || Object.keys(layer.route.methods).length > 10;
        for (const m of all ? ['_all'] : Object.keys(layer.route.methods)) {
          const method = m === '_all' ? 'ALL' : m.toUpperCase();
          out.push({
            key: `${method} ${layer.route.path}`,
            method,
            path: layer.route.path,
            rule: guard?.rule,
          });
        }
      } else if (layer.handle.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return out;
}

let env: SecureArchive;
let clients: Record<Who, Client>;

beforeAll(async () => {
  env = await startSecureArchive({ PACS_LOGIN_RATE_LIMIT: '1000' });
  const { admin, base, A } = env;
  await userWithToken(admin, 'rad', 'radiologist');
  await userWithToken(admin, 'ref', 'referring');
  const modalityToken = await userWithToken(admin, 'ct1', 'modality');
  // The referring physician and the link may read study A.
  await admin.json(`/api/studies/${A.study}/shares`, { method: 'POST', json: { grantee: 'ref' } });
  const { url } = await admin.json<{ url: string }>(`/api/studies/${A.study}/shares`, {
    method: 'POST',
    json: {},
  });
  const link = await openLink(url);
  expect(link.status).toBe(200);
  clients = {
    administrator: await login(base, 'admin', (await import('./setup')).ADMIN_PASSWORD),
    radiologist: await login(base, 'rad', PASSWORD),
    referring: await login(base, 'ref', PASSWORD),
    modality: new (admin.constructor as typeof Client)(base, { token: modalityToken }),
    link: link.client,
    anonymous: env.anonymous,
  };
}, 120_000);

afterAll(async () => {
  await env?.close();
});

describe('route × role matrix', () => {
  it('lists every route of the router with an access rule and an expectation', () => {
    const routes = routesOf(env.server.running.app);
    expect(routes.length).toBeGreaterThan(50);
    const withoutRule = routes.filter((r) => !r.rule).map((r) => r.key);
    expect(withoutRule, 'routes without allow(rule, action)').toEqual([]);
    const unexpected = routes.filter((r) => !(r.key in EXPECTED)).map((r) => r.key);
    expect(unexpected, 'routes missing from EXPECTED in this test').toEqual([]);
    // GET / alone (a notice) exists only when the viewer is not built; GET /*rest serves it otherwise.
    const gone = Object.keys(EXPECTED).filter((k) => k !== 'GET /' && !routes.some((r) => r.key === k));
    expect(gone, 'EXPECTED lists routes the server no longer has').toEqual([]);
  });

  it('lets each role through, or refuses it, as specified', async () => {
    const { A } = env;
    const fill = (path: string) =>
      path
        .replace(':study', A.study)
        .replace(':series', A.series)
        .replace(':instance', A.instance)
        .replace(':frames', '1')
        .replace('*path', '7FE00010')
        .replace(':username', 'nobody-here')
        .replace(':id', 'no-such-id')
        .replace(':token', 'no-such-token')
        .replace('*rest', 'no/such/thing');
    const routes = routesOf(env.server.running.app)
      // Signing out last: it ends the session the other requests use.
      .sort((a, b) => Number(a.key.includes('logout')) - Number(b.key.includes('logout')));
    const wrong: string[] = [];
    for (const route of routes) {
      const allowed = EXPECTED[route.key] ?? [];
      for (const who of ALL) {
        const method = route.method === 'ALL' ? 'GET' : route.method;
        // Deleting real data is not the point: destructive calls aim at objects that do not exist
        // (the rule is checked before the object is looked up).
        let path = fill(route.path);
        if (method === 'DELETE' && path.startsWith('/dicomweb')) path = path.replace(A.study, '1.2.3.999');
        const init: RequestInit & { json?: unknown } = { method };
        if (['POST', 'PATCH'].includes(method) && route.key !== 'POST /api/demo') init.json = {};
        const r = await clients[who].fetch(path, init);
        await r.arrayBuffer();
        const refusedStatus = who === 'anonymous' ? 401 : 403;
        const refused = r.status === 401 || r.status === 403;
        if (allowed.includes(who) ? refused : r.status !== refusedStatus)
          wrong.push(
            `${route.key} as ${who}: HTTP ${r.status} (${allowed.includes(who) ? 'should pass' : `should be ${refusedStatus}`})`,
          );
      }
    }
    expect(wrong).toEqual([]);
  }, 120_000);
});

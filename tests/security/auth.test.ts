/**
 * Sign-in and its failures: wrong passwords, forged, revoked and expired tokens (401), forbidden
 * actions (403), the login rate limit (429), CSRF, the first-start administrator, and the audit trail
 * that records each of these attempts. Also the hardening a hospital network needs (headers, CORS,
 * /healthz saying nothing) and `npm run user`.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../../server/config';
import { syntheticSeries } from '../../server/synthetic';
import { REPO, startServer, stow } from '../helpers/server';
import {
  ADMIN_PASSWORD,
  Client,
  login,
  PASSWORD,
  type SecureArchive,
  sessionCookie,
  startSecureArchive,
  userWithToken,
} from './setup';

const run = promisify(execFile);

interface AuditRow {
  detail?: string | null;
  user: string | null;
  role: string | null;
  action: string;
  status: number;
  study: string | null;
  patient: string | null;
  source: string | null;
}

let env: SecureArchive;

beforeAll(async () => {
  env = await startSecureArchive({
    PACS_LOGIN_RATE_LIMIT: '5',
    PACS_CORS_ORIGINS: 'https://ris.hospital.vn',
  });
}, 120_000);

afterAll(async () => {
  await env?.close();
});

async function audit(filter: string): Promise<AuditRow[]> {
  return (await env.admin.json<{ events: AuditRow[] }>(`/api/audit?${filter}`)).events;
}

const post = (base: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

describe('sign-in', () => {
  it('refuses wrong passwords with 401 and records each attempt', async () => {
    await userWithToken(env.admin, 'nurse', 'radiologist');
    const r = await post(env.base, '/api/auth/login', { username: 'nurse', password: 'not-the-password' });
    expect(r.status).toBe(401);
    expect(sessionCookie(r)).toBeUndefined();
    const unknown = await post(env.base, '/api/auth/login', {
      username: 'ghost',
      password: 'whatever-it-is',
    });
    expect(unknown.status).toBe(401);
    const events = await audit('action=login&result=failure');
    expect(events.map((e) => [e.user, e.status])).toEqual(
      expect.arrayContaining([
        ['nurse', 401],
        ['ghost', 401],
      ]),
    );
    expect(events[0].source).toMatch(/127\.0\.0\.1/);
    // The right password works, and is recorded as a success.
    const ok = await login(env.base, 'nurse', PASSWORD);
    expect((await ok.fetch('/api/auth/me')).status).toBe(200);
    expect((await audit('action=login&user=nurse&result=success')).length).toBe(1);
  });

  it('ends the other sessions of a user who changes their password, and keeps the one that changed it', async () => {
    await userWithToken(env.admin, 'changer', 'radiologist');
    const here = await login(env.base, 'changer', PASSWORD);
    const elsewhere = await login(env.base, 'changer', PASSWORD);
    const other = await login(env.base, 'nurse', PASSWORD); // another user's session is not touched
    const changed = await here.fetch('/api/auth/password', {
      method: 'POST',
      json: { currentPassword: PASSWORD, newPassword: 'another-good-long-password' },
    });
    expect(changed.status).toBe(204);
    expect((await here.fetch('/api/auth/me')).status).toBe(200);
    expect((await here.fetch('/dicomweb/studies')).status).toBe(200);
    const ended = await elsewhere.fetch('/api/auth/me');
    expect(ended.status).toBe(401);
    expect(await ended.text()).toMatch(/session has ended/);
    expect((await other.fetch('/api/auth/me')).status).toBe(200);
    expect(
      (await login(env.base, 'changer', 'another-good-long-password').then((c) => c.fetch('/api/auth/me')))
        .status,
    ).toBe(200);
  });

  it('refuses forged, revoked and expired tokens and forged sessions with 401, and records them', async () => {
    const { base, admin } = env;
    const forged = new Client(base, { token: 'pacs_forgedforgedforgedforgedforgedforged' });
    expect((await forged.fetch('/dicomweb/studies')).status).toBe(401);

    const token = await userWithToken(admin, 'scanner', 'modality');
    const [t] = await admin.json<{ id: string }[]>('/api/tokens?username=scanner');
    const scanner = new Client(base, { token });
    expect((await scanner.fetch('/api/auth/me')).status).toBe(200);
    expect((await admin.fetch(`/api/tokens/${t.id}`, { method: 'DELETE' })).status).toBe(204);
    const revoked = await scanner.fetch('/api/auth/me');
    expect(revoked.status).toBe(401);
    expect(await revoked.text()).toMatch(/revoked/);

    const token2 = await userWithToken(admin, 'scanner2', 'modality');
    const sql = env.server.running.storage.index.sql();
    await sql.run("UPDATE api_tokens SET expires_at = ? WHERE username = 'scanner2'", [Date.now() - 1]);
    const expired = await new Client(base, { token: token2 }).fetch('/api/auth/me');
    expect(expired.status).toBe(401);
    expect(await expired.text()).toMatch(/expired/);

    const cookie = new Client(base, { cookie: 'pacs_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    expect((await cookie.fetch('/dicomweb/studies')).status).toBe(401);
    expect(
      (await fetch(`${base}/dicomweb/studies`, { headers: { Authorization: 'Basic YWRtaW46YWRtaW4=' } }))
        .status,
    ).toBe(401);

    const refused = await audit('result=401');
    expect(refused.filter((e) => e.action === 'search').length).toBeGreaterThanOrEqual(3);
    expect(refused.some((e) => e.action === 'whoami')).toBe(true);
  });

  it('takes an API token as the password of HTTP Basic, never an account password', async () => {
    const { base, admin, A } = env;
    const token = await userWithToken(admin, 'basic-reader', 'radiologist');
    const basic = (user: string, password: string, headers: Record<string, string> = {}) =>
      fetch(`${base}/dicomweb/studies?StudyInstanceUID=${A.study}`, {
        headers: {
          Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
          ...headers,
        },
      });
    const ok = await basic('basic-reader', token);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as unknown[]).length).toBe(1);
    expect((await audit('user=basic-reader&action=search&result=success')).length).toBe(1);

    // The account's password (it has one: userWithToken sets PASSWORD) is not a Basic password.
    const password = await basic('basic-reader', PASSWORD);
    expect(password.status).toBe(401);
    expect(await password.text()).toMatch(/must be an API token/);
    // The token of another account than the one named.
    const other = await basic('admin', token);
    expect(other.status).toBe(401);
    expect(await other.text()).toMatch(/user name must be the API token's account/);
    const unknown = await basic('basic-reader', 'pacs_forgedforgedforgedforgedforgedforged');
    expect(unknown.status).toBe(401);
    expect(await unknown.text()).toMatch(/unknown API token/);
    const garbled = await fetch(`${base}/dicomweb/studies`, { headers: { Authorization: 'Basic %%%' } });
    expect(garbled.status).toBe(401);
    expect(await garbled.text()).toMatch(/HTTP Basic credentials must be base64 of/);
    // A browser sends credentials it remembers with requests other sites make: those are refused.
    const crossSite = await basic('basic-reader', token, { 'Sec-Fetch-Site': 'cross-site' });
    expect(crossSite.status).toBe(401);
    expect(await crossSite.text()).toMatch(/another site/);
    expect((await basic('basic-reader', token, { 'Sec-Fetch-Site': 'same-origin' })).status).toBe(200);
    // No answer asks for Basic: a browser would open its own login box over the viewer.
    expect(password.headers.get('www-authenticate') ?? '').not.toMatch(/basic/i);
    expect((await fetch(`${base}/dicomweb/studies`)).headers.get('www-authenticate')).toBe(
      'Bearer realm="pacs"',
    );
  });

  it('answers forbidden actions with 403 and records them with who and what', async () => {
    const { base, admin, A } = env;
    await userWithToken(admin, 'reader', 'radiologist');
    const reader = await login(base, 'reader', PASSWORD);
    const r = await reader.fetch(`/dicomweb/studies/${A.study}`, { method: 'DELETE' });
    expect(r.status).toBe(403);
    expect((await admin.json(`/dicomweb/studies?StudyInstanceUID=${A.study}`)) as unknown[]).toHaveLength(1);
    const [e] = await audit('user=reader&action=delete');
    expect(e).toMatchObject({ role: 'radiologist', status: 403, study: A.study, patient: A.patientId });
  });

  it('needs the CSRF token for changes made with a session cookie', async () => {
    const { base, A } = env;
    await userWithToken(env.admin, 'csrfuser', 'radiologist');
    const s = await login(base, 'csrfuser', PASSWORD);
    const without = await fetch(`${base}/api/studies/${A.study}/shares`, {
      method: 'POST',
      headers: { Cookie: s.cred.cookie as string, 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(without.status).toBe(403);
    const withIt = await s.fetch(`/api/studies/${A.study}/shares`, { method: 'POST', json: {} });
    expect(withIt.status).toBe(201);
  });

  it('records reads with the study and patient', async () => {
    const { admin, A } = env;
    await userWithToken(admin, 'auditme', 'radiologist');
    const c = await login(env.base, 'auditme', PASSWORD);
    await (await c.fetch(`/dicomweb/studies/${A.study}/metadata`)).arrayBuffer();
    const [e] = await audit('user=auditme&action=retrieve-metadata');
    expect(e).toMatchObject({ role: 'radiologist', status: 200, study: A.study, patient: 'PID-1' });
    // Export as JSON lines, filtered.
    const r = await admin.fetch('/api/audit/export?user=auditme');
    expect(r.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    const lines = (await r.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRow);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.every((l) => l.user === 'auditme')).toBe(true);
  });
});

describe('audit of frame reads', () => {
  it('counts the frames a viewer reads as one event per study, user and address, and keeps each failure', async () => {
    const { A } = env;
    await userWithToken(env.admin, 'framereader', 'radiologist');
    const c = await login(env.base, 'framereader', PASSWORD);
    const frame = (instance: string) =>
      `/dicomweb/studies/${A.study}/series/${A.series}/instances/${instance}/frames/1`;
    // What a viewer opening the series does: a request per frame (here the same frame, 12 times).
    for (let i = 0; i < 12; i++) {
      const r = await c.fetch(frame(A.instance));
      expect(r.status).toBe(200);
      await r.arrayBuffer();
    }
    const missing = await c.fetch(frame('1.2.3.404'));
    expect(missing.status).toBe(404);
    await missing.arrayBuffer();

    const events = await audit('user=framereader&action=retrieve-frames');
    expect(events.map((e) => e.status).sort()).toEqual([200, 404]);
    const read = events.find((e) => e.status === 200)!;
    expect(read).toMatchObject({ study: A.study, patient: 'PID-1', role: 'radiologist' });
    expect(read.detail).toMatch(
      new RegExp(
        `^GET ${frame(A.instance).replaceAll('.', '\\.')} and 11 more retrieve-frames requests until \\d{4}-\\d\\d-\\d\\dT`,
      ),
    );
    expect(events.find((e) => e.status === 404)?.detail).toBe(`GET ${frame('1.2.3.404')}`);
  });
});

describe('audit of stores', () => {
  it('records a STOW once per study it stored into, with the patient', async () => {
    const token = await userWithToken(env.admin, 'ct-audit', 'modality');
    const files = [
      ...syntheticSeries({
        patientName: 'Audit^One',
        patientId: 'AUD-1',
        instances: 2,
        rows: 16,
        columns: 16,
        seed: 31,
      }),
      ...syntheticSeries({
        patientName: 'Audit^Two',
        patientId: 'AUD-2',
        instances: 1,
        rows: 16,
        columns: 16,
        seed: 32,
      }),
    ];
    const r = await stow(env.base, files, undefined, { Authorization: `Bearer ${token}` });
    expect(r.status).toBe(200);
    const events = await audit('user=ct-audit&action=store');
    expect(events.map((e) => [e.patient, e.status]).sort()).toEqual([
      ['AUD-1', 200],
      ['AUD-2', 200],
    ]);
    expect(events.every((e) => e.study && e.role === 'modality')).toBe(true);
  });
});

describe('first start', () => {
  it('creates admin with a printed one-time password that must be changed first', async () => {
    const printed: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      printed.push(String(chunk));
      return true;
    });
    let server: Awaited<ReturnType<typeof startServer>>;
    try {
      server = await startServer({ env: { PACS_AUTH: 'on' } });
    } finally {
      spy.mockRestore();
    }
    try {
      const password = /one-time password: (\S+)/.exec(printed.join(''))?.[1];
      expect(password).toBeTruthy();
      const admin = await login(server.baseUrl, 'admin', password as string);
      const me = await admin.json<{ mustChangePassword: boolean }>('/api/auth/me');
      expect(me.mustChangePassword).toBe(true);
      expect((await admin.fetch('/dicomweb/studies')).status).toBe(403);
      const change = await admin.fetch('/api/auth/password', {
        method: 'POST',
        json: { currentPassword: password, newPassword: 'a brand new passphrase' },
      });
      expect(change.status).toBe(204);
      expect((await admin.fetch('/dicomweb/studies')).status).toBe(200);
      expect((await post(server.baseUrl, '/api/auth/login', { username: 'admin', password })).status).toBe(
        401,
      );
    } finally {
      await server.close();
    }
  });

  it('refuses PACS_AUTH=off on an address other than loopback', () => {
    expect(() => loadConfig({ PACS_AUTH: 'off', HOST: '0.0.0.0' })).toThrow(ConfigError);
    expect(() => loadConfig({ PACS_AUTH: 'off', HOST: '0.0.0.0' })).toThrow(/loopback/);
    expect(() => loadConfig({ PACS_ADMIN_TOKEN: 'short' })).toThrow(/32 characters/);
  });
});

describe('hardening', () => {
  it('/healthz is open and says nothing else', async () => {
    const r = await fetch(`${env.base}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ok' });
  });

  it('sends secure headers and no server fingerprint', async () => {
    const r = await fetch(`${env.base}/dicomweb/studies`);
    expect(r.headers.get('x-powered-by')).toBeNull();
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const body = await r.json();
    expect(JSON.stringify(body)).not.toMatch(/at .*\.ts:\d+/);
  });

  it('answers CORS for configured origins only', async () => {
    const pre = (origin: string) =>
      fetch(`${env.base}/dicomweb/studies`, {
        method: 'OPTIONS',
        headers: {
          Origin: origin,
          'Access-Control-Request-Method': 'GET',
          'Access-Control-Request-Headers': 'authorization',
        },
      });
    expect((await pre('https://ris.hospital.vn')).headers.get('access-control-allow-origin')).toBe(
      'https://ris.hospital.vn',
    );
    expect((await pre('https://evil.example')).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('limits API request bodies', async () => {
    const r = await post(env.base, '/api/auth/login', { username: 'x', password: 'y'.repeat(40_000) });
    expect(r.status).toBe(413);
  });
});

describe('npm run user', () => {
  it('adds a user and an API token that the running server accepts', async () => {
    const cli = (...args: string[]) =>
      run(process.execPath, ['--import', 'tsx', 'scripts/user.ts', ...args], {
        cwd: REPO,
        env: { ...process.env, PACS_DATA_DIR: env.server.dataDir },
      });
    const added = await cli('add', 'ct-gateway', '--role', 'modality', '--password', 'gateway-password-1');
    expect(added.stdout).toMatch(/created ct-gateway \(modality\)/);
    const created = await cli('token', 'create', 'ct-gateway', '--label', 'CT room 1', '--days', '30');
    const token = created.stdout.trim().split('\n').pop() as string;
    const c = new Client(env.base, { token });
    expect(await c.json('/api/auth/me')).toMatchObject({ username: 'ct-gateway', role: 'modality' });
    expect((await c.fetch('/dicomweb/studies')).status).toBe(403);
    expect((await cli('list')).stdout).toMatch(/ct-gateway\s+modality/);
    const bad = await cli('add', 'x1', '--role', 'king').catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2 });
    expect((bad as { stderr: string }).stderr).toMatch(/--role: expected one of/);
    await cli('disable', 'ct-gateway');
    expect((await c.fetch('/api/auth/me')).status).toBe(401);
  });

  it('refuses a referring name that is a wildcard or too short to name one person', async () => {
    const cli = (...args: string[]) =>
      run(process.execPath, ['--import', 'tsx', 'scripts/user.ts', ...args], {
        cwd: REPO,
        env: { ...process.env, PACS_DATA_DIR: env.server.dataDir },
      });
    for (const bad of ['^', '*', 'V', 'Nguyen^V*']) {
      const e = await cli('add', 'drx', '--role', 'referring', '--referring-name', bad).catch(
        (err: { code: number; stderr: string }) => err,
      );
      expect(e, bad).toMatchObject({ code: 2 });
      expect((e as { stderr: string }).stderr, bad).toMatch(/--referring-name: .*(wildcard|two letters)/);
    }
    expect((await cli('list')).stdout).not.toMatch(/^drx\s/m);
    await cli(
      'add',
      'drx',
      '--role',
      'referring',
      '--referring-name',
      'Nguyen^Van An',
      '--password',
      PASSWORD,
    );
    const set = await cli('set', 'drx', '--referring-name', '^').catch((err: { code: number }) => err);
    expect(set).toMatchObject({ code: 2 });
    expect((await cli('list')).stdout).toMatch(/drx.*referring name: Nguyen\^Van An/);
  });

  it('signs in with the administrator password given in PACS_ADMIN_PASSWORD', async () => {
    const admin = await login(env.base, 'admin', ADMIN_PASSWORD);
    expect(await admin.json('/api/auth/me')).toMatchObject({
      role: 'administrator',
      mustChangePassword: false,
    });
  });
});

// Last: once the limit is reached, this address cannot sign in for 15 minutes.
describe('login rate limit', () => {
  it('holds the login rate limit: after 5 failures even the right password gets 429', async () => {
    await userWithToken(env.admin, 'target', 'radiologist');
    // One address: a limiter of its own is not needed, the previous test's failures count too; fill it up.
    let status = 0;
    for (let i = 0; i < 8 && status !== 429; i++)
      status = (await post(env.base, '/api/auth/login', { username: 'target', password: `guess-${i}-xxxx` }))
        .status;
    expect(status).toBe(429);
    const right = await post(env.base, '/api/auth/login', { username: 'target', password: PASSWORD });
    expect(right.status).toBe(429);
    expect(right.headers.get('ratelimit') ?? right.headers.get('retry-after')).toBeTruthy();
    expect((await audit('action=login&result=429')).length).toBeGreaterThan(0);
  });
});

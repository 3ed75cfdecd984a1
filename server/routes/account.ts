/**
 * Server API for people and programs (not DICOMweb): sign-in, the current principal, password change,
 * users and API tokens (administrators), the audit trail (administrators). Listed in server/app.ts.
 */
import type { Request, Response } from 'express';
import { referringNameProblem } from '../../dicomweb/names';
import { badRequest, DicomwebError, notFound } from '../../dicomweb/status';
import { ACCOUNT_ROLES, type AccountRole, type AuditFilter, type User } from '../../storage/access';
import { type Auth, type Principal, Unauthorized } from '../auth/auth';
import { hashPassword, newApiToken, passwordProblem, verifyPassword } from '../auth/secrets';
import { queryParams } from './common';

const body = (req: Request) =>
  (typeof req.body === 'object' && req.body ? req.body : {}) as Record<string, unknown>;
const text = (v: unknown, name: string, max = 200): string | undefined => {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length > max)
    throw badRequest(`${name}: expected a string of at most ${max} characters`);
  return v;
};
const principal = (res: Response) => res.locals.principal as Principal;
/** A referring name from a request: undefined when absent, null when empty (none), refused when it cannot be matched as a whole. */
const referringName = (v: unknown): string | null | undefined => {
  const s = text(v, 'referringName')?.trim();
  if (s === undefined) return undefined;
  if (s === '') return null;
  const problem = referringNameProblem(s);
  if (problem) throw badRequest(`referringName: ${problem}`);
  return s;
};

/** What the viewer needs before sign-in: whether sign-in is needed, and how. */
export function authConfig(auth: Auth, oidc: () => { enabled: boolean; label: string }) {
  return (_req: Request, res: Response) => {
    res.json({ authEnabled: auth.enabled, oidc: oidc() });
  };
}

export function login(auth: Auth) {
  return async (req: Request, res: Response) => {
    const b = body(req);
    const username = text(b.username, 'username', 64)?.trim() ?? '';
    const password = text(b.password, 'password', 512) ?? '';
    res.locals.auditUser = username.slice(0, 64) || undefined;
    if (!username || !password) throw badRequest('expected a JSON body {"username": …, "password": …}');
    const user = await auth.checkPassword(username, password);
    if (!user) throw new Unauthorized('wrong username or password');
    const { csrf } = await auth.startSession(req, res, user);
    res.locals.principal = { ...describeUser(user), via: 'session' };
    res.json({ ...describeUser(user), csrfToken: csrf });
  };
}

export function logout(auth: Auth) {
  return async (req: Request, res: Response) => {
    await auth.endSession(req, res, principal(res));
    res.status(204).end();
  };
}

export function me() {
  return (_req: Request, res: Response) => {
    const p = principal(res);
    res.json({
      username: p.username,
      role: p.role,
      displayName: p.displayName,
      via: p.via,
      mustChangePassword: p.mustChangePassword,
      csrfToken: p.csrf ?? null,
      studyInstanceUID: p.share?.studyInstanceUID ?? null,
      shareExpiresAt: p.share ? new Date(p.share.expiresAt).toISOString() : null,
    });
  };
}

export function changePassword(auth: Auth) {
  return async (req: Request, res: Response) => {
    const p = principal(res);
    if (p.via !== 'session' && p.via !== 'token')
      throw badRequest(
        'this principal has no account password (a share link, PACS_ADMIN_TOKEN or PACS_AUTH=off)',
      );
    const b = body(req);
    const current = text(b.currentPassword, 'currentPassword', 512) ?? '';
    const next = text(b.newPassword, 'newPassword', 512) ?? '';
    if (!current || !next) throw badRequest('expected a JSON body {"currentPassword": …, "newPassword": …}');
    const user = await auth.access.getUser(p.username);
    if (!user || !(await verifyPassword(current, user.passwordHash)))
      throw new Unauthorized('the current password is not correct');
    const problem = passwordProblem(next);
    if (problem) throw badRequest(problem);
    if (next === current) throw badRequest('the new password must differ from the current one');
    await auth.access.updateUser(p.username, {
      passwordHash: await hashPassword(next),
      mustChangePassword: false,
    });
    // Whoever knew the old password is signed out everywhere else; this session goes on.
    await auth.access.deleteSessionsOf(p.username, p.sessionIdHash);
    res.status(204).end();
  };
}

// ── users (administrators) ──

export function describeUser(u: User) {
  return {
    username: u.username,
    role: u.role,
    displayName: u.displayName,
    referringName: u.referringName,
    oidc: u.oidcSubject !== null,
    mustChangePassword: u.mustChangePassword,
    disabled: u.disabled,
    createdAt: new Date(u.createdAt).toISOString(),
  };
}

function role(v: unknown): AccountRole | undefined {
  if (v === undefined) return undefined;
  if (!ACCOUNT_ROLES.includes(v as AccountRole))
    throw badRequest(`role: expected one of ${ACCOUNT_ROLES.join(', ')}`);
  return v as AccountRole;
}

export function listUsers(auth: Auth) {
  return async (_req: Request, res: Response) => {
    res.json((await auth.access.listUsers()).map(describeUser));
  };
}

export function createUser(auth: Auth) {
  return async (req: Request, res: Response) => {
    const b = body(req);
    const username = text(b.username, 'username', 64)?.trim();
    if (!username || !/^[A-Za-z0-9._@-]{2,64}$/.test(username))
      throw badRequest('username: 2 to 64 letters, digits, or . _ @ -');
    const r = role(b.role);
    if (!r) throw badRequest(`role: expected one of ${ACCOUNT_ROLES.join(', ')}`);
    const password = text(b.password, 'password', 512);
    if (password !== undefined) {
      const problem = passwordProblem(password);
      if (problem) throw badRequest(problem);
    }
    const created = await auth.access.createUser({
      username,
      role: r,
      displayName: text(b.displayName, 'displayName') ?? null,
      referringName: referringName(b.referringName) ?? null,
      oidcSubject: null,
      passwordHash: password ? await hashPassword(password) : null,
      mustChangePassword: b.mustChangePassword === true,
      disabled: false,
    });
    if (!created) throw new DicomwebError(409, `the user ${username} already exists`);
    res.locals.auditDetail = `user=${username} role=${r}`;
    res.status(201).json(describeUser((await auth.access.getUser(username)) as User));
  };
}

export function updateUser(auth: Auth) {
  return async (req: Request, res: Response) => {
    const username = req.params.username as string;
    const b = body(req);
    const password = text(b.password, 'password', 512);
    if (password !== undefined) {
      const problem = passwordProblem(password);
      if (problem) throw badRequest(problem);
    }
    if (b.disabled !== undefined && typeof b.disabled !== 'boolean')
      throw badRequest('disabled: expected true or false');
    const updated = await auth.access.updateUser(username, {
      role: role(b.role),
      displayName: text(b.displayName, 'displayName'),
      referringName: referringName(b.referringName),
      passwordHash: password ? await hashPassword(password) : undefined,
      mustChangePassword: typeof b.mustChangePassword === 'boolean' ? b.mustChangePassword : undefined,
      disabled: b.disabled as boolean | undefined,
    });
    if (!updated) throw notFound(`no user ${username}`);
    if (password !== undefined || b.disabled === true || b.role !== undefined)
      await auth.access.deleteSessionsOf(username);
    res.locals.auditDetail = `user=${username}`;
    res.json(describeUser((await auth.access.getUser(username)) as User));
  };
}

export function deleteUser(auth: Auth) {
  return async (req: Request, res: Response) => {
    const username = req.params.username as string;
    if (username === principal(res).username)
      throw badRequest('an administrator cannot delete their own account');
    if (!(await auth.access.deleteUser(username))) throw notFound(`no user ${username}`);
    res.locals.auditDetail = `user=${username}`;
    res.status(204).end();
  };
}

// ── API tokens (administrators) ──

export function listTokens(auth: Auth) {
  return async (req: Request, res: Response) => {
    const user = queryParams(req).get('username') || undefined;
    res.json(await auth.access.listTokens(user));
  };
}

export function createToken(auth: Auth) {
  return async (req: Request, res: Response) => {
    const b = body(req);
    const username = text(b.username, 'username', 64);
    if (!username || !(await auth.access.getUser(username)))
      throw badRequest('username: expected an existing user');
    const days = b.expiresInDays;
    if (days !== undefined && !(Number.isInteger(days) && (days as number) > 0 && (days as number) <= 3650))
      throw badRequest('expiresInDays: expected an integer from 1 to 3650');
    const { id, token } = await issueToken(
      auth,
      username,
      text(b.label, 'label') ?? null,
      days as number | undefined,
    );
    res.locals.auditDetail = `token=${id} user=${username}`;
    res.status(201).json({ id, token, username });
  };
}

/** Makes an API token for a user: the token is shown once; only its hash is kept. */
export async function issueToken(auth: Auth, username: string, label: string | null, expiresInDays?: number) {
  const { id, token, tokenHash } = newApiToken();
  await auth.access.createToken({
    id,
    tokenHash,
    username,
    label,
    expiresAt: expiresInDays ? Date.now() + expiresInDays * 86_400_000 : null,
  });
  return { id, token };
}

export function revokeToken(auth: Auth) {
  return async (req: Request, res: Response) => {
    const id = req.params.id as string;
    if (!(await auth.access.revokeToken(id, Date.now()))) throw notFound(`no active token ${id}`);
    res.locals.auditDetail = `token=${id}`;
    res.status(204).end();
  };
}

// ── audit trail (administrators) ──

function auditFilter(q: URLSearchParams): AuditFilter {
  const time = (name: string) => {
    const v = q.get(name);
    if (v === null || v === '') return undefined;
    const t = Date.parse(v);
    if (Number.isNaN(t)) throw badRequest(`${name}: expected an ISO 8601 date or time`);
    return t;
  };
  const int = (name: string, min: number, max: number) => {
    const v = q.get(name);
    if (v === null || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw badRequest(`${name}: expected an integer from ${min} to ${max}`);
    return n;
  };
  const result = q.get('result') ?? '';
  if (result !== '' && result !== 'success' && result !== 'failure' && !/^\d{3}$/.test(result))
    throw badRequest('result: expected success, failure or an HTTP status code');
  return {
    from: time('from'),
    to: time('to'),
    username: q.get('user') || undefined,
    action: q.get('action') || undefined,
    studyInstanceUID: q.get('study') || undefined,
    patientID: q.get('patient') || undefined,
    result:
      result === '' ? undefined : result === 'success' || result === 'failure' ? result : Number(result),
    beforeId: int('before', 1, Number.MAX_SAFE_INTEGER),
    limit: int('limit', 1, 1000) ?? 100,
  };
}

function auditJson(e: import('../../storage/access').AuditEvent) {
  return {
    id: e.id,
    time: new Date(e.time).toISOString(),
    user: e.username,
    role: e.role,
    action: e.action,
    study: e.studyInstanceUID,
    patient: e.patientID,
    status: e.status,
    outcome: e.status < 400 ? 'success' : 'failure',
    source: e.source,
    detail: e.detail,
  };
}

export function queryAudit(auth: Auth, flush: () => Promise<void>) {
  return async (req: Request, res: Response) => {
    const f = auditFilter(queryParams(req));
    await flush();
    const events = await auth.access.queryAudit(f);
    const last = events.at(-1);
    res.json({
      events: events.map(auditJson),
      next: events.length === f.limit && last ? last.id : null,
    });
  };
}

/** Every matching event as JSON lines (newest first), streamed page by page. */
export function exportAudit(auth: Auth, flush: () => Promise<void>) {
  return async (req: Request, res: Response) => {
    const f = auditFilter(queryParams(req));
    await flush();
    res.status(200).type('application/x-ndjson; charset=utf-8');
    res.setHeader('Content-Disposition', 'attachment; filename="audit.jsonl"');
    let beforeId = f.beforeId;
    for (;;) {
      const page = await auth.access.queryAudit({ ...f, beforeId, limit: 1000 });
      if (page.length === 0) break;
      const chunk = page.map((e) => `${JSON.stringify(auditJson(e))}\n`).join('');
      if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
      if (res.destroyed) return;
      beforeId = page.at(-1)?.id;
      if (page.length < 1000) break;
    }
    res.end();
  };
}

/**
 * Authentication and authorization: who is asking (a viewer session cookie, an API token, the
 * configured administrator token, a share link's session) and whether the route's rule lets them.
 *
 * - Sessions: a random id in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS), stored hashed;
 *   requests that change something must echo the session's CSRF token in X-CSRF-Token.
 * - API tokens: `Authorization: Bearer <token>`, stored hashed, revocable, optionally expiring; or HTTP
 *   Basic with the token as the password, for clients that can send nothing else.
 * - Share links: /s/{id}.{hmac}; opening one (after the birth date or PIN check it may require) gives a
 *   session of role link, valid for that study only, until the link expires or is revoked. A link made
 *   for a named account (a referring physician) opens only in that account's own signed-in session.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { parseQuery } from '../../dicomweb/qido';
import { DicomwebError } from '../../dicomweb/status';
import type { AccessStore, Role, Share, User } from '../../storage/access';
import type { Index } from '../../storage/index';
import type { Config } from '../config';
import type { Logger } from '../log';
import { PERMISSIONS, permits, type Rule, SCOPED_ROLES } from './rules';
import { hashPassword, hmac, randomPassword, randomToken, sameText, sha256, verifyPassword } from './secrets';

export const SESSION_COOKIE = 'pacs_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface Principal {
  username: string;
  role: Role;
  /** How the request proved who it is. */
  via: 'session' | 'token' | 'admin-token' | 'auth-off' | 'link';
  /** Hash of the session id (cookie sessions and link sessions). */
  sessionIdHash?: string;
  /** The CSRF token that requests changing something must carry (cookie sessions). */
  csrf?: string;
  /** The share a link session was opened with. */
  share?: Share;
  mustChangePassword: boolean;
  referringName: string | null;
  displayName: string | null;
}

export class Unauthorized extends DicomwebError {
  constructor(message: string) {
    super(401, message);
  }
}

export const forbidden = (message: string) => new DicomwebError(403, message);

/** Wrong birth dates or PINs for one link, from all addresses, are counted over this window. */
const SHARE_ANSWER_WINDOW_MS = 24 * 3600_000;

const UNKNOWN_TOKEN = 'unknown API token';

/** Why a share link made for a named account does not open for whoever holds it. */
export const NAMED_LINK_SIGN_IN =
  'this link is for a named user: sign in with the account it was made for to open it';

export class Auth {
  private secret = '';

  constructor(
    readonly config: Config,
    readonly access: AccessStore,
    private readonly index: Index,
    private readonly log: Logger,
  ) {}

  get enabled(): boolean {
    return this.config.auth.enabled;
  }

  /** Prepares the share link key and, in an archive without users, the administrator. */
  async init(): Promise<void> {
    this.secret =
      this.config.auth.secret || (await this.access.setting('share-link-key', () => randomToken(32)));
    if ((await this.access.countUsers()) > 0) return;
    const given = this.config.auth.adminPassword;
    const password = given || randomPassword();
    const created = await this.access.createUser({
      username: 'admin',
      role: 'administrator',
      displayName: 'Administrator',
      referringName: null,
      oidcSubject: null,
      passwordHash: await hashPassword(password),
      mustChangePassword: !given,
      disabled: false,
    });
    if (!created) return; // another server process created it first
    if (given) {
      this.log.info('created the administrator "admin" with PACS_ADMIN_PASSWORD');
    } else {
      this.log.warn('created the administrator "admin" with a one-time password (printed on stderr)');
      process.stderr.write(
        `\n  First start: administrator "admin", one-time password: ${password}\n` +
          '  Sign in at the viewer and choose a new password (it is asked at first login).\n\n',
      );
    }
  }

  // ── who is asking ──

  /** The principal of a request; undefined when it carries no credential; Unauthorized when a credential is bad. */
  async authenticate(req: Request): Promise<Principal | undefined> {
    if (!this.enabled)
      return {
        username: 'local',
        role: 'administrator',
        via: 'auth-off',
        mustChangePassword: false,
        referringName: null,
        displayName: null,
      };
    const authorization = req.headers.authorization;
    if (authorization !== undefined) {
      const m = /^Bearer\s+([A-Za-z0-9._~+/=-]{16,512})\s*$/i.exec(authorization);
      if (m) return this.fromToken(m[1]);
      if (/^Basic\s/i.test(authorization)) return this.fromBasic(authorization, req);
      throw new Unauthorized('the Authorization header must be "Bearer <token>" (or "Basic" with a token)');
    }
    const sid = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (sid) return this.fromSession(sid);
    return undefined;
  }

  /**
   * HTTP Basic, for DICOMweb clients that can send nothing else (Orthanc's `Username`/`Password`, many
   * gateways): the user name is the token's account and the password an API token. An account's own
   * password is never taken here: it would let anyone try passwords without the sign-in's rate limit.
   * No response asks for Basic (a browser would pop up its own login box), and a browser's request
   * from another site that carries it (credentials a browser remembered) is refused: Basic is for programs.
   */
  private async fromBasic(authorization: string, req: Request): Promise<Principal> {
    const m = /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(authorization);
    const decoded = m && m[1].length % 4 === 0 ? Buffer.from(m[1], 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 1)
      throw new Unauthorized('HTTP Basic credentials must be base64 of "<user name>:<API token>"');
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none')
      throw new Unauthorized('HTTP Basic is for programs: a request from another site may not carry it');
    const username = decoded.slice(0, colon);
    const secret = decoded.slice(colon + 1);
    const notToken = 'the HTTP Basic password must be an API token (an account password is not accepted)';
    if (!/^[A-Za-z0-9._~+/=-]{16,512}$/.test(secret)) throw new Unauthorized(notToken);
    const p = await this.fromToken(secret).catch((err: unknown) => {
      throw err instanceof Unauthorized && err.message === UNKNOWN_TOKEN
        ? new Unauthorized(`${UNKNOWN_TOKEN}: ${notToken}`)
        : err;
    });
    if (username !== p.username)
      throw new Unauthorized(`the HTTP Basic user name must be the API token's account (${p.username})`);
    return p;
  }

  private async fromToken(value: string): Promise<Principal> {
    const admin = this.config.auth.adminToken;
    if (admin && sameText(value, admin))
      return {
        username: 'admin-token',
        role: 'administrator',
        via: 'admin-token',
        mustChangePassword: false,
        referringName: null,
        displayName: 'PACS_ADMIN_TOKEN',
      };
    const token = await this.access.findToken(sha256(value));
    const now = Date.now();
    if (!token) throw new Unauthorized(UNKNOWN_TOKEN);
    if (token.revokedAt !== null) throw new Unauthorized('this API token has been revoked');
    if (token.expiresAt !== null && token.expiresAt <= now)
      throw new Unauthorized('this API token has expired');
    const user = activeUser(token.username, token.owner);
    if (token.lastUsedAt === null || now - token.lastUsedAt > 60_000)
      void this.access.touchToken(token.id, now).catch(() => {});
    return { ...principalOf(user), via: 'token', mustChangePassword: false };
  }

  private async fromSession(sid: string): Promise<Principal> {
    const idHash = sha256(sid);
    const s = await this.access.findSession(idHash);
    const now = Date.now();
    if (!s || s.expiresAt <= now) throw new Unauthorized('the session has ended: sign in again');
    if (s.shareId) {
      const share = await this.access.getShare(s.shareId);
      const problem = share ? shareProblem(share, now) : 'the share link no longer exists';
      if (!share || problem) throw new Unauthorized(problem ?? 'the share link is not valid');
      // A link for a named account opens no session of its own (one opened before that rule ends here).
      if (share.grantee !== null) throw new Unauthorized(NAMED_LINK_SIGN_IN);
      return {
        username: `link:${share.id}`,
        role: 'link',
        via: 'link',
        sessionIdHash: idHash,
        csrf: s.csrf,
        share,
        mustChangePassword: false,
        referringName: null,
        displayName: null,
      };
    }
    const user = activeUser(s.username, s.user);
    return { ...principalOf(user), via: 'session', sessionIdHash: idHash, csrf: s.csrf };
  }

  // ── sessions ──

  /** Starts a viewer session for a user (after a password or OpenID Connect sign-in); sets the cookie. */
  async startSession(req: Request, res: Response, user: User): Promise<{ csrf: string }> {
    const sid = randomToken();
    const csrf = randomToken();
    const now = Date.now();
    await this.access.createSession({
      idHash: sha256(sid),
      username: user.username,
      role: user.role,
      shareId: null,
      csrf,
      createdAt: now,
      expiresAt: now + this.config.auth.sessionHours * 3600_000,
    });
    void this.access.deleteExpiredSessions(now).catch(() => {});
    this.setCookie(req, res, sid, this.config.auth.sessionHours * 3600_000);
    return { csrf };
  }

  /** Checks a password; the user on success. */
  async checkPassword(username: string, password: string): Promise<User | undefined> {
    const user = await this.access.getUser(username);
    const ok = await verifyPassword(password, user?.passwordHash ?? null);
    return ok && user && !user.disabled ? user : undefined;
  }

  async endSession(req: Request, res: Response, p: Principal): Promise<void> {
    if (p.sessionIdHash) await this.access.deleteSession(p.sessionIdHash);
    res.clearCookie(SESSION_COOKIE, this.cookieOptions(req));
  }

  private cookieOptions(req: Request) {
    const https = req.secure || this.config.publicUrl.startsWith('https:');
    return { httpOnly: true, sameSite: 'strict' as const, secure: https, path: '/' };
  }

  private setCookie(req: Request, res: Response, value: string, maxAge: number) {
    res.cookie(SESSION_COOKIE, value, { ...this.cookieOptions(req), maxAge });
  }

  // ── share links ──

  /** The secret part of a share link: the share id and its HMAC under the server's key. */
  shareToken(id: string): string {
    return `${id}.${hmac(this.secret, id)}`;
  }

  /** The share a link token names, when its HMAC is right. */
  async shareOfToken(token: string): Promise<Share | undefined> {
    const m = /^([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!m || !sameText(m[2], hmac(this.secret, m[1]))) return undefined;
    return this.access.getShare(m[1]);
  }

  /**
   * Opens a share link: checks it (and the birth date or PIN it asks for), then starts a link session.
   * A link made for a named account (grantee) opens only for a signed-in session of that account, or of
   * an administrator, and starts no session: theirs already reads the study (csrf is theirs).
   */
  async openShare(
    req: Request,
    res: Response,
    share: Share,
    answer: { birthDate?: string; pin?: string },
    p: Principal | undefined,
  ): Promise<{ csrf: string }> {
    const now = Date.now();
    const problem = shareProblem(share, now);
    if (problem) throw new DicomwebError(410, problem);
    if (share.grantee !== null) {
      if (!p || p.via === 'link') throw new Unauthorized(NAMED_LINK_SIGN_IN);
      if (p.via !== 'session' || (p.username !== share.grantee && p.role !== 'administrator'))
        throw forbidden(`${NAMED_LINK_SIGN_IN}; you are signed in as ${p.username}`);
    }
    if (share.verify !== 'none') {
      // Answers are counted per link too, from every address together, so that a 4-digit PIN or a birth
      // date cannot be found by trying from many addresses. Each attempt is counted (one atomic step)
      // before its answer is checked, so attempts sent all at once are counted too; a right answer
      // takes its count back.
      const limitName = `share:${share.id}`;
      const tried = await this.access.hitRateLimit(limitName, now, SHARE_ANSWER_WINDOW_MS);
      if (tried.hits > this.config.auth.loginRateLimit)
        throw new DicomwebError(
          429,
          `too many wrong answers for this link: it can be tried again after ${new Date(tried.resetAt).toISOString()}, or ask for a new link`,
        );
      if (share.verify === 'pin' && !(await verifyPassword(String(answer.pin ?? ''), share.pinHash)))
        throw new Unauthorized('the PIN is not correct');
      if (share.verify === 'birthdate') {
        const given = normalizeBirthDate(String(answer.birthDate ?? ''));
        const expected = await this.patientBirthDate(share.studyInstanceUID);
        if (!expected || !given || !sameText(given, expected))
          throw new Unauthorized("the patient's birth date is not correct");
      }
      await this.access.unhitRateLimit(limitName);
    }
    if (share.grantee !== null) return { csrf: p?.csrf ?? '' };
    const sid = randomToken();
    const csrf = randomToken();
    const lifetime = Math.min(share.expiresAt - now, this.config.auth.sessionHours * 3600_000);
    await this.access.createSession({
      idHash: sha256(sid),
      username: `link:${share.id}`,
      role: 'link',
      shareId: share.id,
      csrf,
      createdAt: now,
      expiresAt: now + lifetime,
    });
    this.setCookie(req, res, sid, lifetime);
    return { csrf };
  }

  private async patientBirthDate(study: string): Promise<string | undefined> {
    const q = parseQuery(
      'study',
      new URLSearchParams({ StudyInstanceUID: study, includefield: '00100030' }),
      {},
      {},
    );
    const [ds] = (await this.index.search(q)).matches as Record<string, { Value?: unknown[] }>[];
    const v = ds?.['00100030']?.Value?.[0];
    return typeof v === 'string' && /^\d{8}$/.test(v) ? v : undefined;
  }

  // ── what a principal may read ──

  /** The studies a principal may read; undefined: every study. */
  async readableStudies(p: Principal): Promise<Set<string> | undefined> {
    if (!SCOPED_ROLES.has(p.role)) return undefined;
    if (p.role === 'link') return new Set(p.share ? [p.share.studyInstanceUID] : []);
    const studies = new Set(await this.access.studiesSharedWith(p.username, Date.now()));
    if (this.config.auth.referringAccess === 'shared-and-named' && p.referringName) {
      // The whole name, exactly (folded), in the index query: never a prefix, a wildcard or a fuzzy match.
      for (const uid of await this.access.studiesNamingReferrer(p.referringName)) studies.add(uid);
    }
    return studies;
  }

  // ── middleware ──

  /** Resolves the principal of every request (res.locals.principal), or the credential's problem. */
  middleware(): RequestHandler {
    return async (req: Request, res: Response, next: NextFunction) => {
      try {
        res.locals.principal = await this.authenticate(req);
      } catch (err) {
        if (!(err instanceof Unauthorized)) return next(err);
        res.locals.credentialProblem = err.message;
      }
      next();
    };
  }
}

/**
 * The guard of one route: the rule it needs, and the audit action name. Routes list it first
 * (`r.get(path, allow('read', 'retrieve'), handler)`); the route × role test reads `rule` from the router.
 */
export type Guard = RequestHandler & { rule: Rule; action: string };

export function allow(auth: Auth, rule: Rule, action: string): Guard {
  const guard = (async (req: Request, res: Response, next: NextFunction) => {
    res.locals.action = action;
    const study = (req.params as Record<string, string | undefined>).study;
    if (study) res.locals.study = study;
    try {
      if (rule === 'public') return next();
      const p = res.locals.principal as Principal | undefined;
      if (!p) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="pacs"');
        throw new Unauthorized(
          res.locals.credentialProblem ?? 'sign in, or send an API token (Authorization: Bearer)',
        );
      }
      if (p.mustChangePassword && rule !== 'signed-in')
        throw forbidden('the password must be changed first (POST /api/auth/password)');
      if (!permits(p.role, rule))
        throw forbidden(
          `the ${p.role} role may not do this (${action}); it may: ${PERMISSIONS[p.role].join(', ')}`,
        );
      const unsafe = !['GET', 'HEAD', 'OPTIONS'].includes(req.method);
      if (unsafe && p.csrf !== undefined) {
        const sent = req.headers[CSRF_HEADER];
        if (typeof sent !== 'string' || !sameText(sent, p.csrf))
          throw forbidden(`missing or wrong ${CSRF_HEADER} header (the session's CSRF token)`);
      }
      if (rule === 'read' && SCOPED_ROLES.has(p.role)) {
        const readable = (await auth.readableStudies(p)) ?? new Set<string>();
        if (study && !readable.has(study))
          throw forbidden(
            p.role === 'link'
              ? 'this link opens another study only'
              : `study ${study} is not shared with you`,
          );
        res.locals.readableStudies = [...readable];
      }
      next();
    } catch (err) {
      next(err);
    }
  }) as Guard;
  guard.rule = rule;
  guard.action = action;
  return guard;
}

/** The account a token or session belongs to (looked up with it), if it may still be used. */
function activeUser(username: string, user: User | undefined): User {
  if (!user) throw new Unauthorized(`the account ${username} no longer exists`);
  if (user.disabled) throw new Unauthorized(`the account ${username} is disabled`);
  return user;
}

export function principalOf(user: User): Omit<Principal, 'via'> {
  return {
    username: user.username,
    role: user.role,
    mustChangePassword: user.mustChangePassword,
    referringName: user.referringName,
    displayName: user.displayName,
  };
}

/** Why a share cannot be used now, or undefined. */
export function shareProblem(share: Share, now: number): string | undefined {
  if (share.revokedAt !== null) return 'this share link has been revoked';
  if (share.expiresAt <= now) return 'this share link has expired';
  return undefined;
}

/** YYYYMMDD from what a person types: yyyy-mm-dd (a date input), yyyymmdd, or dd/mm/yyyy (Vietnamese order). */
export function normalizeBirthDate(text: string): string | undefined {
  const t = text.trim();
  let m = /^(\d{4})[-./]?(\d{2})[-./]?(\d{2})$/.exec(t);
  if (m) return `${m[1]}${m[2]}${m[3]}`;
  m = /^(\d{1,2})[-./](\d{1,2})[-./](\d{4})$/.exec(t);
  if (m) return `${m[3]}${m[2].padStart(2, '0')}${m[1].padStart(2, '0')}`;
  return undefined;
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      const v = part.slice(i + 1).trim();
      return /^[A-Za-z0-9_-]{16,128}$/.test(v) ? v : undefined;
    }
  }
  return undefined;
}

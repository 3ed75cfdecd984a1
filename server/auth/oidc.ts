/**
 * OpenID Connect sign-in with the hospital's identity provider (Keycloak, Entra ID, ADFS...), on
 * openid-client: the authorization code flow with PKCE, state and nonce.
 *
 * - GET /api/auth/oidc/login[?return=/viewer/…] sends the browser to the provider. The flow's secrets
 *   (state, nonce, PKCE verifier, redirect URI, return path) ride in a short-lived cookie, encrypted and
 *   authenticated (AES-256-GCM) with a key derived from the server's share link key, named after the
 *   state (two tabs signing in at once do not disturb each other). It is HttpOnly and SameSite=Lax: the
 *   provider brings the browser back with a cross-site redirect, which a Strict cookie would not follow.
 * - GET /api/auth/oidc/callback checks the answer (state, issuer, code exchange with the verifier, ID
 *   token signature and nonce), reads the claims (ID token, then userinfo), maps them to a local user
 *   keyed by `${issuer}|${sub}` (created on first sign-in, its role refreshed at each one), starts a
 *   viewer session and redirects to the return path. Refusals are pages a person can read, and every
 *   attempt is in the audit trail (res.locals.auditUser / auditDetail).
 *
 * The provider's discovery document is read at start; when it cannot be reached the server still starts,
 * and discovery is tried again at the next sign-in.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { CookieOptions, Request, Response } from 'express';
import * as client from 'openid-client';
import { referringNameProblem } from '../../dicomweb/names';
import { ACCOUNT_ROLES, type User } from '../../storage/access';
import type { OidcRoutes } from '../app';
import type { Config, OidcConfig } from '../config';
import type { Logger } from '../log';
import { publicOrigin, queryParams } from '../routes/common';
import { type Auth, type Principal, principalOf } from './auth';
import { sha256 } from './secrets';

export const OIDC_CALLBACK_PATH = '/api/auth/oidc/callback';
const FLOW_COOKIE_PREFIX = 'pacs_oidc_';
/** How long a sign-in at the identity provider may take. */
const FLOW_MS = 10 * 60_000;
/** Seconds an HTTP request to the identity provider may take. */
const PROVIDER_TIMEOUT_S = 10;
const USERNAME_RE = /^[A-Za-z0-9._@-]{2,64}$/;

/** What the login step hands to the callback step, in the flow cookie. */
interface Flow {
  state: string;
  nonce: string;
  verifier: string;
  redirectUri: string;
  returnTo: string;
  expiresAt: number;
}

/** A refusal shown to the person signing in (and written to the audit trail). */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
    /** For the audit trail and the log (not shown). */
    readonly detail: string,
  ) {
    super(message);
  }
}

export async function openOidc(config: Config, auth: Auth, log: Logger): Promise<OidcRoutes | undefined> {
  const oc = config.auth.oidc;
  if (!oc) return undefined;
  if (!auth.enabled) {
    log.warn('PACS_AUTH=off: PACS_OIDC_ISSUER is ignored (no sign-in at all)');
    return undefined;
  }
  const provider = new Provider(oc, log);
  try {
    await provider.configuration();
    log.info('OpenID Connect sign-in ready', { issuer: oc.issuer });
  } catch (err) {
    log.error(
      'OpenID Connect: the identity provider cannot be reached; discovery is tried again at the next sign-in',
      {
        issuer: oc.issuer,
        err,
      },
    );
  }
  return new OidcSignIn(config, oc, auth, provider, log).routes();
}

/** The provider's discovered configuration, fetched once (again after a failure). */
class Provider {
  private pending: Promise<client.Configuration> | undefined;

  constructor(
    private readonly oc: OidcConfig,
    private readonly log: Logger,
  ) {}

  configuration(): Promise<client.Configuration> {
    this.pending ??= this.discover().catch((err) => {
      this.pending = undefined;
      throw err;
    });
    return this.pending;
  }

  private async discover(): Promise<client.Configuration> {
    const insecure = new URL(this.oc.issuer).protocol === 'http:'; // loopback only (config.ts)
    const execute = insecure ? [client.allowInsecureRequests] : [];
    const found = await client.discovery(
      new URL(this.oc.issuer),
      this.oc.clientId,
      undefined,
      client.None(),
      {
        execute,
        timeout: PROVIDER_TIMEOUT_S,
      },
    );
    const meta = found.serverMetadata();
    // Client authentication: what the provider supports, preferring client_secret_basic (the default of
    // OpenID Connect and of most providers' client registrations).
    const supported = meta.token_endpoint_auth_methods_supported ?? ['client_secret_basic'];
    const secret = this.oc.clientSecret;
    const authMethod =
      secret === ''
        ? client.None()
        : supported.includes('client_secret_basic') || !supported.includes('client_secret_post')
          ? client.ClientSecretBasic(secret)
          : client.ClientSecretPost(secret);
    const configuration = new client.Configuration(
      meta,
      this.oc.clientId,
      secret ? { client_secret: secret } : undefined,
      authMethod,
    );
    configuration.timeout = PROVIDER_TIMEOUT_S;
    for (const f of execute) f(configuration);
    this.log.debug('OpenID Connect discovery', { issuer: meta.issuer, userinfo: !!meta.userinfo_endpoint });
    return configuration;
  }
}

class OidcSignIn {
  private key: Buffer | undefined;

  constructor(
    private readonly config: Config,
    private readonly oc: OidcConfig,
    private readonly auth: Auth,
    private readonly provider: Provider,
    private readonly log: Logger,
  ) {}

  routes(): OidcRoutes {
    return {
      label: this.oc.label,
      login: (req, res) => this.login(req, res),
      callback: (req, res) => this.callback(req, res),
    };
  }

  // ── GET /api/auth/oidc/login ──

  private async login(req: Request, res: Response): Promise<void> {
    const query = queryParams(req);
    const returnTo = safeReturnPath(query.get('return'));
    let configuration: client.Configuration;
    try {
      configuration = await this.provider.configuration();
    } catch (err) {
      this.log.error('OpenID Connect: the identity provider cannot be reached', {
        issuer: this.oc.issuer,
        err,
      });
      res.locals.auditDetail = 'identity provider unreachable';
      return page(
        res,
        503,
        'Sign-in is not available',
        "The hospital's identity provider cannot be reached at the moment. Try again in a few minutes, or sign in with a PACS password.",
      );
    }
    const flow: Flow = {
      state: client.randomState(),
      nonce: client.randomNonce(),
      verifier: client.randomPKCECodeVerifier(),
      redirectUri: `${publicOrigin(req)}${OIDC_CALLBACK_PATH}`,
      returnTo,
      expiresAt: Date.now() + FLOW_MS,
    };
    const url = client.buildAuthorizationUrl(configuration, {
      redirect_uri: flow.redirectUri,
      scope: this.oc.scopes,
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(flow.verifier),
      code_challenge_method: 'S256',
    });
    const name = flowCookieName(flow.state);
    res.cookie(name, this.seal(name, flow), { ...this.flowCookieOptions(req), maxAge: FLOW_MS });
    res.setHeader('Cache-Control', 'no-store');
    res.redirect(303, url.href);
  }

  // ── GET /api/auth/oidc/callback ──

  private async callback(req: Request, res: Response): Promise<void> {
    const query = queryParams(req);
    // The authorization code and state are not written to the access log or the audit trail.
    req.originalUrl = OIDC_CALLBACK_PATH;
    res.setHeader('Cache-Control', 'no-store');
    try {
      const state = query.get('state') ?? '';
      const name = flowCookieName(state);
      const flow = state ? this.unseal(name, readCookie(req.headers.cookie, name)) : undefined;
      if (state) res.clearCookie(name, this.flowCookieOptions(req));
      if (!flow || flow.state !== state || flow.expiresAt <= Date.now())
        throw new Refusal(
          400,
          'This sign-in cannot be completed',
          'It was not started from this browser, or it took too long. Sign in again.',
          state ? 'unknown, forged or expired state' : 'no state',
        );
      const claims = await this.claimsOf(flow, query);
      const user = await this.localUser(res, claims);
      const previous = res.locals.principal as Principal | undefined;
      if (previous?.sessionIdHash) await this.auth.access.deleteSession(previous.sessionIdHash);
      await this.auth.startSession(req, res, user);
      res.locals.principal = { ...principalOf(user), via: 'session' } satisfies Principal;
      res.locals.auditDetail = `oidc sign-in role=${user.role}`;
      this.log.info('OpenID Connect sign-in', { username: user.username, role: user.role });
      res.redirect(303, flow.returnTo);
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      res.locals.auditDetail = `refused: ${err.detail}`;
      this.log.warn('OpenID Connect sign-in refused', {
        user: res.locals.auditUser,
        status: err.status,
        reason: err.detail,
      });
      page(res, err.status, err.title, err.message);
    }
  }

  /** The claims of the person who signed in: the ID token's, completed by the userinfo endpoint. */
  private async claimsOf(flow: Flow, query: URLSearchParams): Promise<Record<string, unknown>> {
    let configuration: client.Configuration;
    try {
      configuration = await this.provider.configuration();
    } catch (err) {
      this.log.error('OpenID Connect: the identity provider cannot be reached', {
        issuer: this.oc.issuer,
        err,
      });
      throw new Refusal(
        503,
        'Sign-in is not available',
        "The hospital's identity provider cannot be reached at the moment. Try again in a few minutes.",
        'identity provider unreachable',
      );
    }
    const currentUrl = new URL(flow.redirectUri);
    currentUrl.search = query.toString();
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(configuration, currentUrl, {
        pkceCodeVerifier: flow.verifier,
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      if (err instanceof client.AuthorizationResponseError)
        throw new Refusal(
          401,
          'You were not signed in',
          `The identity provider answered: ${err.error_description || err.error}.`,
          `provider error ${err.error}`,
        );
      this.log.warn('OpenID Connect: the sign-in answer was not accepted', { err });
      throw new Refusal(
        401,
        'You were not signed in',
        "The identity provider's answer could not be verified. Sign in again; if it happens again, tell the PACS administrator.",
        `answer not accepted: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const idClaims = tokens.claims() as Record<string, unknown>;
    const sub = String(idClaims.sub);
    const meta = configuration.serverMetadata();
    if (!meta.userinfo_endpoint || !tokens.access_token) return idClaims;
    try {
      const info = await client.fetchUserInfo(configuration, tokens.access_token, sub);
      return { ...idClaims, ...info, iss: idClaims.iss, sub };
    } catch (err) {
      this.log.warn('OpenID Connect: userinfo could not be read', { err });
      throw new Refusal(
        502,
        'You were not signed in',
        'Your profile could not be read from the identity provider. Sign in again in a moment.',
        `userinfo failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  /**
   * The referring name in the claim PACS_OIDC_REFERRING_NAME_CLAIM; null when absent, or when it cannot
   * be matched as a whole name (a wildcard, fewer than two letters): such a value is ignored, with a warning.
   */
  private referringNameOf(claims: Record<string, unknown>, username: string): string | null {
    const v = claimAt(claims, this.oc.referringNameClaim);
    const name = typeof v === 'string' && v.trim() ? v.trim().slice(0, 200) : null;
    const problem = name === null ? undefined : referringNameProblem(name);
    if (!problem) return name;
    this.log.warn('OpenID Connect: the referring name claim was ignored', {
      username,
      claim: this.oc.referringNameClaim,
      value: name,
      problem,
    });
    return null;
  }

  /** The local user of these claims: created, linked or updated; a Refusal when they give no access. */
  private async localUser(res: Response, claims: Record<string, unknown>): Promise<User> {
    const access = this.auth.access;
    const subject = `${String(claims.iss)}|${String(claims.sub)}`;
    const rawName = claimAt(claims, this.oc.usernameClaim);
    const username = typeof rawName === 'string' ? rawName.trim() : '';
    res.locals.auditUser = (username || `oidc:${String(claims.sub)}`).slice(0, 64);
    const values = claimValues(claimAt(claims, this.oc.roleClaim));
    const mapped = new Set(values.map((v) => this.oc.roleMap.get(v)).filter((r) => r !== undefined));
    const role = ACCOUNT_ROLES.find((r) => mapped.has(r));
    const linked = await access.findUserByOidcSubject(subject);
    if (linked) res.locals.auditUser = linked.username;
    if (!role) {
      // The provider no longer grants a role: the sessions the user still has end too.
      if (linked) await access.deleteSessionsOf(linked.username);
      throw new Refusal(
        403,
        'No access to the PACS',
        `You signed in at the identity provider${username ? ` as ${username}` : ''}, but your account has no role in the PACS. Ask the PACS administrator or the IT service desk for access.`,
        `no mapped role (${this.oc.roleClaim}: ${values.length ? values.join(' ').slice(0, 200) : 'none'})`,
      );
    }
    const profile = {
      role,
      displayName: displayNameOf(claims),
      ...(this.oc.referringNameClaim ? { referringName: this.referringNameOf(claims, username) } : {}),
    };
    if (linked) {
      if (linked.disabled)
        throw new Refusal(
          403,
          'No access to the PACS',
          `Your PACS account ${linked.username} is disabled. Ask the PACS administrator.`,
          'account disabled',
        );
      await access.updateUser(linked.username, profile);
      return (await access.getUser(linked.username)) as User;
    }
    if (!USERNAME_RE.test(username))
      throw new Refusal(
        403,
        'No access to the PACS',
        `The identity provider did not give a usable username (claim ${this.oc.usernameClaim}: 2 to 64 letters, digits or . _ @ -). Tell the PACS administrator.`,
        `no usable username in claim ${this.oc.usernameClaim}`,
      );
    const existing = await access.getUser(username);
    if (existing) {
      // An account the administrator made for this person (no password, never linked) is linked; any other
      // account of that name is someone else's, and is never taken over.
      if (existing.oidcSubject !== null || existing.passwordHash !== null || existing.disabled)
        throw new Refusal(
          403,
          'No access to the PACS',
          `A different PACS account is already named ${username}. Ask the PACS administrator to rename one of them.`,
          'username taken by another account',
        );
      await access.updateUser(username, { ...profile, oidcSubject: subject });
      this.log.info('OpenID Connect: linked an existing account', { username });
      return (await access.getUser(username)) as User;
    }
    try {
      await access.createUser({
        username,
        role,
        displayName: profile.displayName,
        referringName: profile.referringName ?? null,
        oidcSubject: subject,
        passwordHash: null,
        mustChangePassword: false,
        disabled: false,
      });
    } catch (err) {
      this.log.debug('OpenID Connect: user creation raced', { err }); // the same person signing in twice at once
    }
    const created = await access.findUserByOidcSubject(subject);
    if (!created)
      throw new Refusal(
        403,
        'No access to the PACS',
        `A different PACS account is already named ${username}. Ask the PACS administrator to rename one of them.`,
        'username taken by another account',
      );
    this.log.info('OpenID Connect: created a user', { username, role });
    return created;
  }

  // ── the flow cookie ──

  private flowCookieOptions(req: Request): CookieOptions {
    const https = req.secure || this.config.publicUrl.startsWith('https:');
    return { httpOnly: true, sameSite: 'lax', secure: https, path: OIDC_CALLBACK_PATH };
  }

  /** AES-256-GCM key derived from the share link key (under a name no share id can have). */
  private cookieKey(): Buffer {
    this.key ??= Buffer.from(
      hkdfSync('sha256', this.auth.shareToken('oidc:flow-cookie'), 'open-pacs', 'oidc flow cookie', 32),
    );
    return this.key;
  }

  private seal(name: string, flow: Flow): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.cookieKey(), iv);
    cipher.setAAD(Buffer.from(name));
    const body = Buffer.concat([cipher.update(JSON.stringify(flow), 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
  }

  private unseal(name: string, value: string | undefined): Flow | undefined {
    if (!value) return undefined;
    try {
      const bytes = Buffer.from(value, 'base64url');
      const decipher = createDecipheriv('aes-256-gcm', this.cookieKey(), bytes.subarray(0, 12));
      decipher.setAAD(Buffer.from(name));
      decipher.setAuthTag(bytes.subarray(12, 28));
      const text = Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8');
      return JSON.parse(text) as Flow;
    } catch {
      return undefined;
    }
  }
}

function flowCookieName(state: string): string {
  return `${FLOW_COOKIE_PREFIX}${sha256(state).slice(0, 16)}`;
}

function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** A path of this site to return to after sign-in (never another origin); '/' otherwise. */
export function safeReturnPath(value: string | null | undefined): string {
  if (!value || value.length > 512 || !value.startsWith('/') || /[\\\u0000-\u001f\u007f]/.test(value))
    return '/';
  const base = 'http://pacs.invalid';
  const url = URL.parse(value, base);
  if (!url || url.origin !== base || url.pathname.startsWith('/api/')) return '/';
  // Checked on what is returned: '/.//host' and '/a/..//host' normalise to '//host', another origin.
  const path = `${url.pathname}${url.search}${url.hash}`;
  return /^\/[/\\]/.test(path) ? '/' : path;
}

/** A claim by name, or by dotted path into nested objects (realm_access.roles). */
export function claimAt(claims: Record<string, unknown>, name: string): unknown {
  if (name in claims) return claims[name];
  let v: unknown = claims;
  for (const part of name.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function claimValues(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

function displayNameOf(claims: Record<string, unknown>): string | null {
  const text = (v: unknown) => (typeof v === 'string' && v.trim() ? v.trim().slice(0, 200) : undefined);
  const joined = [text(claims.given_name), text(claims.family_name)].filter(Boolean).join(' ');
  return text(claims.name) ?? (joined || null);
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

/** A short page for the person in the browser (the sign-in steps are page loads, not API calls). */
function page(res: Response, status: number, title: string, message: string): void {
  res
    .status(status)
    .type('html')
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
        `<title>${escapeHtml(title)}</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}</style></head>` +
        `<body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p><p><a href="/">Back to the sign-in page</a></p></body></html>`,
    );
}

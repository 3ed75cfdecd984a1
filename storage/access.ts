/**
 * Who may read what: users, API tokens, sessions, share links, the audit trail and server settings, kept
 * in the index's database (tables of migration 3 in sql.ts), on SQLite and PostgreSQL alike through the
 * index's SqlRunner. Secrets are never stored: passwords as scrypt hashes, tokens and session ids as
 * SHA-256 hashes (server/auth/secrets.ts makes and checks them).
 */
import { personNameMatchKey, referringNameProblem } from '../dicomweb/names';
import type { SqlRunner } from './index';
import { referringStudiesSql, referringStudyUids } from './sql';

export const ROLES = ['administrator', 'radiologist', 'referring', 'modality', 'link'] as const;
export type Role = (typeof ROLES)[number];
/** Roles a user account can have (link is the role of a share link's session, never of an account). */
export const ACCOUNT_ROLES = ['administrator', 'radiologist', 'referring', 'modality'] as const;
export type AccountRole = (typeof ACCOUNT_ROLES)[number];

export interface User {
  username: string;
  role: AccountRole;
  displayName: string | null;
  /** DICOM person name (Family^Given) matched against ReferringPhysicianName, for referring physicians. */
  referringName: string | null;
  oidcSubject: string | null;
  passwordHash: string | null;
  mustChangePassword: boolean;
  disabled: boolean;
  createdAt: number;
}

export interface ApiToken {
  id: string;
  username: string;
  label: string | null;
  createdAt: number;
  expiresAt: number | null;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

export type ShareVerify = 'none' | 'birthdate' | 'pin';

export interface Share {
  id: string;
  studyInstanceUID: string;
  createdBy: string;
  /** Username of the referring physician the study is shared with; null for a link anyone may open. */
  grantee: string | null;
  verify: ShareVerify;
  pinHash: string | null;
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
}

export interface Session {
  idHash: string;
  username: string;
  role: Role;
  shareId: string | null;
  csrf: string;
  createdAt: number;
  expiresAt: number;
}

export interface AuditEvent {
  id?: number;
  time: number;
  username: string | null;
  role: string | null;
  action: string;
  studyInstanceUID: string | null;
  patientID: string | null;
  /** HTTP status of the answer (or the DIMSE outcome mapped to one). */
  status: number;
  /** Source address of the request. */
  source: string | null;
  /** Method and path, or what else identifies the object of the action. */
  detail: string | null;
}

export interface AuditFilter {
  from?: number;
  to?: number;
  username?: string;
  action?: string;
  studyInstanceUID?: string;
  patientID?: string;
  /** 'success' (status < 400), 'failure' (>= 400), or one status code. */
  result?: 'success' | 'failure' | number;
  /** Events with a smaller id only (paging backwards in time). */
  beforeId?: number;
  limit?: number;
}

type Row = Record<string, unknown>;
const bool = (v: unknown) => v === 1 || v === true || v === '1';
const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
const str = (v: unknown) => (v === null || v === undefined ? null : String(v));

function user(r: Row): User {
  return {
    username: String(r.username),
    role: r.role as AccountRole,
    displayName: str(r.display_name),
    referringName: str(r.referring_name),
    oidcSubject: str(r.oidc_subject),
    passwordHash: str(r.password_hash),
    mustChangePassword: bool(r.must_change_password),
    disabled: bool(r.disabled),
    createdAt: Number(r.created_at),
  };
}

/** The columns of users, prefixed u_, for a query that joins them to a token or a session. */
const JOINED_USER = [
  'username',
  'role',
  'display_name',
  'referring_name',
  'oidc_subject',
  'password_hash',
  'must_change_password',
  'disabled',
  'created_at',
]
  .map((c) => `u.${c} AS u_${c}`)
  .join(', ');

/** The joined user of a row (JOINED_USER), if there was one. */
function joinedUser(r: Row): User | undefined {
  if (r.u_username === null || r.u_username === undefined) return undefined;
  const u: Row = {};
  for (const [k, v] of Object.entries(r)) if (k.startsWith('u_')) u[k.slice(2)] = v;
  return user(u);
}

function token(r: Row): ApiToken {
  return {
    id: String(r.id),
    username: String(r.username),
    label: str(r.label),
    createdAt: Number(r.created_at),
    expiresAt: num(r.expires_at),
    lastUsedAt: num(r.last_used_at),
    revokedAt: num(r.revoked_at),
  };
}

function share(r: Row): Share {
  return {
    id: String(r.id),
    studyInstanceUID: String(r.study_uid),
    createdBy: String(r.created_by),
    grantee: str(r.grantee),
    verify: r.verify as ShareVerify,
    pinHash: str(r.pin_hash),
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
    revokedAt: num(r.revoked_at),
  };
}

function session(r: Row): Session {
  return {
    idHash: String(r.id_hash),
    username: String(r.username),
    role: r.role as Role,
    shareId: str(r.share_id),
    csrf: String(r.csrf),
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
  };
}

function auditEvent(r: Row): AuditEvent {
  return {
    id: Number(r.id),
    time: Number(r.time),
    username: str(r.username),
    role: str(r.role),
    action: String(r.action),
    studyInstanceUID: str(r.study_uid),
    patientID: str(r.patient_id),
    status: Number(r.status),
    source: str(r.source),
    detail: str(r.detail),
  };
}

export class AccessStore {
  constructor(private readonly db: SqlRunner) {}

  // ── users ──

  async countUsers(): Promise<number> {
    const [r] = await this.db.all<{ n: number }>('SELECT COUNT(*) AS n FROM users');
    return Number(r.n);
  }

  async getUser(username: string): Promise<User | undefined> {
    const [r] = await this.db.all('SELECT * FROM users WHERE username = ?', [username]);
    return r ? user(r) : undefined;
  }

  async findUserByOidcSubject(subject: string): Promise<User | undefined> {
    const [r] = await this.db.all('SELECT * FROM users WHERE oidc_subject = ?', [subject]);
    return r ? user(r) : undefined;
  }

  async listUsers(): Promise<User[]> {
    return (await this.db.all('SELECT * FROM users ORDER BY username')).map(user);
  }

  /** Creates a user; false when the username is taken. */
  async createUser(u: Omit<User, 'createdAt'> & { createdAt?: number }): Promise<boolean> {
    const n = await this.db.run(
      `INSERT INTO users (username, role, display_name, password_hash, referring_name, oidc_subject,
         must_change_password, disabled, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING`,
      [
        u.username,
        u.role,
        u.displayName,
        u.passwordHash,
        u.referringName,
        u.oidcSubject,
        u.mustChangePassword ? 1 : 0,
        u.disabled ? 1 : 0,
        u.createdAt ?? Date.now(),
      ],
    );
    return n === 1;
  }

  /** Changes some fields of a user; false when there is no such user. */
  async updateUser(username: string, patch: Partial<Omit<User, 'username' | 'createdAt'>>): Promise<boolean> {
    const columns: Record<string, unknown> = {};
    if (patch.role !== undefined) columns.role = patch.role;
    if (patch.displayName !== undefined) columns.display_name = patch.displayName;
    if (patch.referringName !== undefined) columns.referring_name = patch.referringName;
    if (patch.oidcSubject !== undefined) columns.oidc_subject = patch.oidcSubject;
    if (patch.passwordHash !== undefined) columns.password_hash = patch.passwordHash;
    if (patch.mustChangePassword !== undefined)
      columns.must_change_password = patch.mustChangePassword ? 1 : 0;
    if (patch.disabled !== undefined) columns.disabled = patch.disabled ? 1 : 0;
    const names = Object.keys(columns);
    if (names.length === 0) return (await this.getUser(username)) !== undefined;
    const n = await this.db.run(
      `UPDATE users SET ${names.map((c) => `${c} = ?`).join(', ')} WHERE username = ?`,
      [...Object.values(columns), username],
    );
    return n === 1;
  }

  /**
   * Removes a user with their tokens and sessions, and revokes the shares made for them (an account made
   * later under the same username must not inherit them); false when there is no such user.
   */
  async deleteUser(username: string, now = Date.now()): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await tx.run('DELETE FROM sessions WHERE username = ? AND share_id IS NULL', [username]);
      await tx.run('DELETE FROM api_tokens WHERE username = ?', [username]);
      await tx.run('DELETE FROM sessions WHERE share_id IN (SELECT id FROM shares WHERE grantee = ?)', [
        username,
      ]);
      await tx.run('UPDATE shares SET revoked_at = ? WHERE grantee = ? AND revoked_at IS NULL', [
        now,
        username,
      ]);
      return (await tx.run('DELETE FROM users WHERE username = ?', [username])) === 1;
    });
  }

  // ── API tokens ──

  async createToken(t: Omit<ApiToken, 'createdAt' | 'lastUsedAt' | 'revokedAt'> & { tokenHash: string }) {
    await this.db.run(
      'INSERT INTO api_tokens (id, token_hash, username, label, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
      [t.id, t.tokenHash, t.username, t.label, Date.now(), t.expiresAt],
    );
  }

  /**
   * A token and its owner's account, in one query: it is looked up on every request made with the token
   * (one round trip less to PostgreSQL than two lookups).
   */
  async findToken(tokenHash: string): Promise<(ApiToken & { owner?: User }) | undefined> {
    const [r] = await this.db.all(
      `SELECT t.*, ${JOINED_USER} FROM api_tokens t LEFT JOIN users u ON u.username = t.username WHERE t.token_hash = ?`,
      [tokenHash],
    );
    return r ? { ...token(r), owner: joinedUser(r) } : undefined;
  }

  async touchToken(id: string, now: number): Promise<void> {
    await this.db.run('UPDATE api_tokens SET last_used_at = ? WHERE id = ?', [now, id]);
  }

  async listTokens(username?: string): Promise<ApiToken[]> {
    const rows = username
      ? await this.db.all('SELECT * FROM api_tokens WHERE username = ? ORDER BY created_at', [username])
      : await this.db.all('SELECT * FROM api_tokens ORDER BY username, created_at');
    return rows.map(token);
  }

  async revokeToken(id: string, now: number): Promise<boolean> {
    return (
      (await this.db.run('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [
        now,
        id,
      ])) === 1
    );
  }

  // ── sessions ──

  async createSession(s: Session): Promise<void> {
    await this.db.run(
      'INSERT INTO sessions (id_hash, username, role, share_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      [s.idHash, s.username, s.role, s.shareId, s.csrf, s.createdAt, s.expiresAt],
    );
  }

  /**
   * A session and, for a user's session (not a share link's), the user's account, in one query: it is
   * looked up on every request of a signed-in viewer.
   */
  async findSession(idHash: string): Promise<(Session & { user?: User }) | undefined> {
    const [r] = await this.db.all(
      `SELECT s.*, ${JOINED_USER} FROM sessions s
       LEFT JOIN users u ON u.username = s.username AND s.share_id IS NULL WHERE s.id_hash = ?`,
      [idHash],
    );
    return r ? { ...session(r), user: joinedUser(r) } : undefined;
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.db.run('DELETE FROM sessions WHERE id_hash = ?', [idHash]);
  }

  /** Ends every session of a user (password changed, account disabled), but the one named by `except`. */
  async deleteSessionsOf(username: string, except?: string): Promise<void> {
    if (except === undefined)
      await this.db.run('DELETE FROM sessions WHERE username = ? AND share_id IS NULL', [username]);
    else
      await this.db.run('DELETE FROM sessions WHERE username = ? AND share_id IS NULL AND id_hash <> ?', [
        username,
        except,
      ]);
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    return this.db.run('DELETE FROM sessions WHERE expires_at < ?', [now]);
  }

  // ── shares ──

  async createShare(s: Omit<Share, 'revokedAt'>): Promise<void> {
    await this.db.run(
      `INSERT INTO shares (id, study_uid, created_by, grantee, verify, pin_hash, created_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [s.id, s.studyInstanceUID, s.createdBy, s.grantee, s.verify, s.pinHash, s.createdAt, s.expiresAt],
    );
  }

  async getShare(id: string): Promise<Share | undefined> {
    const [r] = await this.db.all('SELECT * FROM shares WHERE id = ?', [id]);
    return r ? share(r) : undefined;
  }

  async listShares(studyInstanceUID?: string): Promise<Share[]> {
    const rows = studyInstanceUID
      ? await this.db.all('SELECT * FROM shares WHERE study_uid = ? ORDER BY created_at DESC', [
          studyInstanceUID,
        ])
      : await this.db.all('SELECT * FROM shares ORDER BY created_at DESC');
    return rows.map(share);
  }

  /** Revokes a share and ends the sessions opened with it. */
  async revokeShare(id: string, now: number): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await tx.run('DELETE FROM sessions WHERE share_id = ?', [id]);
      return (
        (await tx.run('UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id])) ===
        1
      );
    });
  }

  /** Studies shared with a user (valid shares only). */
  async studiesSharedWith(username: string, now: number): Promise<string[]> {
    const rows = await this.db.all<{ study_uid: string }>(
      'SELECT DISTINCT study_uid FROM shares WHERE grantee = ? AND revoked_at IS NULL AND expires_at > ?',
      [username, now],
    );
    return rows.map((r) => r.study_uid);
  }

  /**
   * Studies whose ReferringPhysicianName is this name as a whole (alphabetic group; case, diacritics,
   * `đ`, NFC/NFD, `^` or spaces between components and trailing empty components ignored); none for a
   * name referringNameProblem refuses (a wildcard, fewer than two letters).
   */
  async studiesNamingReferrer(name: string): Promise<string[]> {
    if (referringNameProblem(name)) return [];
    const key = personNameMatchKey(name);
    const q = referringStudiesSql(key);
    return referringStudyUids(await this.db.all(q.sql, q.params), key);
  }

  // ── audit trail ──

  async appendAudit(events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.db.transaction(async (tx) => {
      for (const e of events)
        await tx.run(
          `INSERT INTO audit_events (time, username, role, action, study_uid, patient_id, status, source, detail)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [
            e.time,
            e.username,
            e.role,
            e.action,
            e.studyInstanceUID,
            e.patientID,
            e.status,
            e.source,
            e.detail,
          ],
        );
    });
  }

  /**
   * Deletes the events older than `before` (ms since the epoch), oldest first, `batch` rows per
   * statement so that neither database (nor, for SQLite, the event loop) is held for long; returns how
   * many went.
   */
  async pruneAudit(before: number, batch = 5_000): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.db.run(
        `DELETE FROM audit_events WHERE id IN
           (SELECT id FROM audit_events WHERE time < ? ORDER BY id LIMIT ${Math.max(1, Math.floor(batch))})`,
        [before],
      );
      total += n;
      if (n < batch) return total;
      // SQLite runs on the event loop: let requests through between batches of a long backlog.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Events matching the filter, newest first. */
  async queryAudit(f: AuditFilter): Promise<AuditEvent[]> {
    const q = auditQuerySql(f);
    const rows = await this.db.all(q.sql, q.params);
    return rows.map(auditEvent);
  }

  // ── rate limits ──

  /**
   * Counts one hit against `name` (a limiter and a client address) and returns the count of its window:
   * a new window of `windowMs` begins when the last one has ended. One statement, so server processes
   * counting the same address at once each get their own number.
   */
  async hitRateLimit(
    name: string,
    now: number,
    windowMs: number,
  ): Promise<{ hits: number; resetAt: number }> {
    const [row] = await this.db.all<Row>(
      `INSERT INTO rate_limits (name, hits, reset_at) VALUES (?, 1, ?)
       ON CONFLICT (name) DO UPDATE SET
         hits = CASE WHEN rate_limits.reset_at <= ? THEN 1 ELSE rate_limits.hits + 1 END,
         reset_at = CASE WHEN rate_limits.reset_at <= ? THEN ? ELSE rate_limits.reset_at END
       RETURNING hits, reset_at`,
      [name, now + windowMs, now, now, now + windowMs],
    );
    return { hits: Number(row.hits), resetAt: Number(row.reset_at) };
  }

  /** Takes back one hit (the attempt succeeded, and only failures count). */
  async unhitRateLimit(name: string): Promise<void> {
    await this.db.run('UPDATE rate_limits SET hits = hits - 1 WHERE name = ? AND hits > 0', [name]);
  }

  async rateLimit(name: string, now: number): Promise<{ hits: number; resetAt: number } | undefined> {
    const [row] = await this.db.all<Row>(
      'SELECT hits, reset_at FROM rate_limits WHERE name = ? AND reset_at > ?',
      [name, now],
    );
    return row && { hits: Number(row.hits), resetAt: Number(row.reset_at) };
  }

  /** Clears a name's count; whether it had failures counted in a window not ended at `now`. */
  async resetRateLimit(name: string, now = Date.now()): Promise<boolean> {
    const rows = await this.db.all<Row>('DELETE FROM rate_limits WHERE name = ? RETURNING hits, reset_at', [
      name,
    ]);
    return rows.some((r) => Number(r.hits) > 0 && Number(r.reset_at) > now);
  }

  /** The counts whose window has not ended, most hits first. */
  async listRateLimits(now: number): Promise<{ name: string; hits: number; resetAt: number }[]> {
    const rows = await this.db.all<Row>(
      'SELECT name, hits, reset_at FROM rate_limits WHERE reset_at > ? AND hits > 0 ORDER BY hits DESC, name',
      [now],
    );
    return rows.map((r) => ({ name: String(r.name), hits: Number(r.hits), resetAt: Number(r.reset_at) }));
  }

  /** Forgets the windows that have ended. */
  async deleteExpiredRateLimits(now: number): Promise<number> {
    return this.db.run('DELETE FROM rate_limits WHERE reset_at <= ?', [now]);
  }

  // ── settings ──

  /** The stored value of a setting, created with make() when absent (the first server to ask wins). */
  async setting(name: string, make: () => string): Promise<string> {
    await this.db.run('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', [
      name,
      make(),
    ]);
    const [r] = await this.db.all<{ value: string }>('SELECT value FROM settings WHERE name = ?', [name]);
    return r.value;
  }
}

/** What copyAccessState moved. */
export interface AccessCopyReport {
  users: number;
  apiTokens: number;
  shares: number;
  settings: number;
  auditEvents: number;
}

/**
 * Tables copied by primary key (source rows replace target rows with the same key), in foreign-key
 * order. Their columns are read from the rows: both databases have the same schema (migrations run
 * when a store is opened).
 */
const COPIED_TABLES: { table: string; key: string; report: keyof AccessCopyReport }[] = [
  { table: 'users', key: 'username', report: 'users' },
  { table: 'api_tokens', key: 'id', report: 'apiTokens' },
  { table: 'shares', key: 'id', report: 'shares' },
  { table: 'settings', key: 'name', report: 'settings' },
];

/** Inserts `rows` (all with the same columns) into `table`, their values in column order. */
function insertRows(table: string, columns: string[], conflict: string) {
  const sql = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) ${conflict}`;
  return (tx: Omit<SqlRunner, 'transaction'>, r: Record<string, unknown>) =>
    tx.run(
      sql,
      columns.map((c) => r[c] ?? null),
    );
}

const AUDIT_BATCH = 1000;

/**
 * Copies the security state of one index database into another (npm run migrate-storage): users, API
 * tokens, share links, settings (the generated share-link key among them, so links keep working) and the
 * audit trail. Sessions are not copied: people sign in again. Users, tokens, shares and settings of the
 * source replace those with the same key in the target (the source is the installation being moved).
 * Audit events are appended in the source's order, in batches, each batch in one transaction with a
 * watermark kept in the target's settings (`migrated-audit:<source>`), so an interrupted run resumes
 * without duplicating an event.
 */
export async function copyAccessState(
  from: SqlRunner,
  to: SqlRunner,
  sourceName: string,
): Promise<AccessCopyReport> {
  const report: AccessCopyReport = { users: 0, apiTokens: 0, shares: 0, settings: 0, auditEvents: 0 };
  for (const t of COPIED_TABLES) {
    const rows = (await from.all(`SELECT * FROM ${t.table}`)).filter(
      (r) => !(t.table === 'settings' && String(r.name).startsWith('migrated-audit:')),
    );
    if (rows.length === 0) continue;
    const columns = Object.keys(rows[0]);
    const updates = columns.filter((c) => c !== t.key).map((c) => `${c} = excluded.${c}`);
    const put = insertRows(t.table, columns, `ON CONFLICT (${t.key}) DO UPDATE SET ${updates.join(', ')}`);
    await to.transaction(async (tx) => {
      for (const r of rows) await put(tx, r);
    });
    report[t.report] = rows.length;
  }
  const mark = `migrated-audit:${sourceName}`;
  const [m] = await to.all<{ value: string }>('SELECT value FROM settings WHERE name = ?', [mark]);
  let after = m ? Number(m.value) : 0;
  for (;;) {
    const rows = await from.all(`SELECT * FROM audit_events WHERE id > ? ORDER BY id LIMIT ${AUDIT_BATCH}`, [
      after,
    ]);
    if (rows.length === 0) break;
    const last = Number(rows[rows.length - 1].id);
    // The target numbers its own events: the source's ids are not copied.
    const append = insertRows(
      'audit_events',
      Object.keys(rows[0]).filter((c) => c !== 'id'),
      '',
    );
    await to.transaction(async (tx) => {
      for (const r of rows) await append(tx, r);
      await tx.run(
        'INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
        [mark, String(last)],
      );
    });
    report.auditEvents += rows.length;
    after = last;
  }
  return report;
}

/**
 * The query of AccessStore.queryAudit: events matching the filter, newest first (ORDER BY id DESC), each
 * filter key served by an index ending in id (migration 6) so that only the rows returned are read.
 */
export function auditQuerySql(f: AuditFilter): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    where.push(sql);
    params.push(value);
  };
  if (f.from !== undefined) add('time >= ?', f.from);
  if (f.to !== undefined) add('time <= ?', f.to);
  if (f.username) add('username = ?', f.username);
  if (f.action) add('action = ?', f.action);
  if (f.studyInstanceUID) add('study_uid = ?', f.studyInstanceUID);
  if (f.patientID) add('patient_id = ?', f.patientID);
  if (f.result === 'success') where.push('status < 400');
  else if (f.result === 'failure') where.push('status >= 400');
  else if (typeof f.result === 'number') {
    add('status = ?', f.result);
    // Implied by the code, and the very term of the partial index audit_failure_id: its planners use
    // that index only when the query says so.
    if (f.result >= 400) where.push('status >= 400');
  }
  if (f.beforeId !== undefined) add('id < ?', f.beforeId);
  const limit = Math.min(Math.max(f.limit ?? 100, 1), 10_000);
  return {
    sql: `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`,
    params: [...params, limit],
  };
}

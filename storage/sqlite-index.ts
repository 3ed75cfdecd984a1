/**
 * The embedded index: SQLite through better-sqlite3 (synchronous, so each call below runs to completion
 * without interleaving inside one process). Writes use BEGIN IMMEDIATE, so puts from several processes
 * sharing the file serialize on the write lock (busy_timeout waits for it) and counts stay exact.
 * WAL + synchronous=FULL: a committed put survives a power cut.
 *
 * Study and series attributes come from the first instance stored in them; an instance replaced with
 * overwrite refreshes them (a correction resent by the modality wins).
 */
import { type FileHandle, open } from 'node:fs/promises';
import Database from 'better-sqlite3';
import type { Query } from '../dicomweb/qido';
import { conflict } from '../dicomweb/status';
import type {
  SqlRunner,
  Index,
  IndexedBlob,
  IndexStatistics,
  InstanceRecord,
  PendingCommitment,
  PutOutcome,
  Scope,
  SearchResult,
  StoredInstance,
} from './index';
import {
  COMMITMENT_SQL,
  COMMON_MODALITY_SERIES,
  commitmentValues,
  COMMON_NAME_STUDIES,
  filterRowsSql,
  INDEXED_BLOBS_SQL,
  indexStatistics,
  indexedBlob,
  type LevelRows,
  migrations,
  modalityCountSql,
  multiValue,
  nameCandidatesSql,
  pendingCommitment,
  rowsFor,
  scopeDelete,
  scopeQuery,
  searchResults,
  searchSql,
  SQLITE_STATISTICS,
  STATISTICS_SQL,
  sqliteDialect,
  statements,
  storedInstance,
  valuesOf,
} from './sql';

type Db = Database.Database;
type InstanceRow = Record<string, unknown> & {
  series_uid: string;
  study_uid: string;
  blob_key: string;
  sha256: string;
};

/** Opens (creating or migrating) the index in `file`; ':memory:' for a private in-memory index. */
export async function openSqliteIndex(file: string): Promise<Index> {
  const db = new Database(file);
  try {
    db.pragma('busy_timeout = 30000');
    db.pragma('journal_mode = WAL');
    // NORMAL: a commit does not fsync on this thread; durability comes from syncWal(), which fsyncs the
    // WAL in libuv's thread pool before any put or delete is reported done (see flush()).
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    // Our LIKE patterns are built from already case-folded values: LIKE must be byte-exact (and can then use indexes).
    db.pragma('case_sensitive_like = ON');
    migrate(db);
    return new SqliteIndex(db);
  } catch (e) {
    db.close();
    throw e;
  }
}

function migrate(db: Db): void {
  const all = migrations(sqliteDialect);
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > all.length) {
      throw new Error(`index schema version ${version} is newer than this program knows (${all.length})`);
    }
    for (let v = version; v < all.length; v++) for (const s of all[v]) db.exec(s);
    db.pragma(`user_version = ${all.length}`);
    setStatistics(db);
  }).immediate();
}

/**
 * The planner statistics of SQLITE_STATISTICS in place of the file's (from an earlier version's PRAGMA
 * optimize, an ANALYZE run by hand, or none): every other row of sqlite_stat1 and every sqlite_stat4
 * sample removed (those of FTS5's own tables too, which it reads by key), then loaded by this
 * connection. Written only when they differ: a few rows, read at every opening.
 */
function setStatistics(db: Db): void {
  const exists = (t: string) => db.prepare('SELECT 1 FROM sqlite_schema WHERE name = ?').get(t) !== undefined;
  const rows = (sql: string) => (db.prepare(sql).raw().all() as unknown[][]).map((r) => r.join('|')).sort();
  const want = SQLITE_STATISTICS.map((r) => r.join('|')).sort();
  const have = exists('sqlite_stat1') ? rows('SELECT tbl, idx, stat FROM sqlite_stat1') : [];
  const samples =
    exists('sqlite_stat4') && db.prepare('SELECT 1 FROM sqlite_stat4 LIMIT 1').get() !== undefined;
  if (!samples && have.length === want.length && have.every((r, k) => r === want[k])) return;
  db.exec('ANALYZE sqlite_schema'); // creates the statistics tables when the file has none
  db.exec('DELETE FROM sqlite_stat1');
  db.exec('DELETE FROM sqlite_stat4');
  const insert = db.prepare('INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)');
  for (const row of SQLITE_STATISTICS) insert.run(...row);
  db.exec('ANALYZE sqlite_schema'); // the planner reads them again
}

/**
 * The statement of a search on SQLite, after the counts that decide how its filters are read (a series
 * Modality across studies, a fuzzy or infix name, the filters of filterRowsSql), each asked through
 * `ask`: SqliteIndex.search runs it on its connection; the benchmark and the tests explain it.
 */
export async function searchStatement(
  query: Query,
  ask: (sql: string, params: unknown[]) => unknown[] | Promise<unknown[]>,
): Promise<{ sql: string; params: unknown[] }> {
  const first = async (c: { sql: string; params: unknown[] }) =>
    ((await ask(c.sql, c.params))[0] as { n: number }).n;
  const count = modalityCountSql(query);
  const modalityViaStudies = count !== undefined && (await first(count)) >= COMMON_MODALITY_SERIES;
  const names = nameCandidatesSql(query);
  const candidates =
    names && ((await ask(names.sql, names.params)) as { rowid: number }[]).map((r) => r.rowid);
  const nameKeys = candidates && candidates.length < COMMON_NAME_STUDIES ? candidates : undefined;
  const filterRows = new Map<string, number>();
  for (const c of filterRowsSql(query)) filterRows.set(c.tag, await first(c));
  return searchSql(query, sqliteDialect, { modalityViaStudies, nameKeys, filterRows });
}

const GROUP_COMMIT_MS = 2;
const GROUP_COMMIT_MAX = 32;

class SqliteIndex implements Index {
  private readonly db: Db;
  private readonly s: ReturnType<typeof prepare>;
  private readonly cols = statements(sqliteDialect).columns;
  private readonly searchCache = new Map<string, Database.Statement>();
  private readonly put: (rec: InstanceRecord, rows: LevelRows, overwrite: boolean) => PutOutcome;
  private readonly del: (scope: Scope) => string[];

  constructor(db: Db) {
    this.db = db;
    this.s = prepare(db);
    // Called inside flush()'s transaction, where a nested transaction is a savepoint.
    this.put = (rec, rows, overwrite) => db.transaction(() => this.putTx(rec, rows, overwrite))();
    this.del = (scope) => db.transaction(() => this.deleteTx(scope)).immediate();
  }

  /**
   * Group commit: puts that arrive in the same turn of the event loop (other parts of a STOW request,
   * other requests) are written in one transaction, so the WAL is synced once per group instead of once
   * per instance. Each put runs in its own savepoint: one refused put does not affect the others, and
   * none resolves before the group is durable.
   */
  async putInstance(rec: InstanceRecord, opts: { overwrite: boolean }): Promise<PutOutcome> {
    const rows = rowsFor(rec, JSON.stringify(rec.metadata));
    return new Promise<PutOutcome>((resolve, reject) => {
      this.pending.push({ rec, rows, overwrite: opts.overwrite, resolve, reject });
      // A group closes when it is large, or shortly after its first put: a few milliseconds of latency
      // buy one WAL sync for many instances when several requests are storing at once.
      if (this.pending.length === 1) {
        // A lone writer (one DICOM association storing instance after instance, one STOW client)
        // gains nothing from the wait: when the last group was a single put and no WAL sync is under
        // way, the group closes at the next turn of the event loop instead.
        const alone = this.lastGroup === 1 && this.syncing === 0;
        this.timer = setTimeout(() => this.flush(), alone ? 0 : GROUP_COMMIT_MS);
      } else if (this.pending.length >= GROUP_COMMIT_MAX) this.flush();
    });
  }

  private pending: {
    rec: InstanceRecord;
    rows: LevelRows;
    overwrite: boolean;
    resolve: (o: PutOutcome) => void;
    reject: (e: unknown) => void;
  }[] = [];

  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Size of the last group written, and the WAL syncs under way (putInstance's choice of wait). */
  private lastGroup = 0;
  private syncing = 0;

  private flush(): void {
    clearTimeout(this.timer);
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const results: ({ ok: true; outcome: PutOutcome } | { ok: false; err: unknown })[] = [];
    try {
      this.db
        .transaction(() => {
          results.length = 0;
          for (const p of batch) {
            try {
              results.push({ ok: true, outcome: this.put(p.rec, p.rows, p.overwrite) });
            } catch (err) {
              results.push({ ok: false, err });
            }
          }
        })
        .immediate();
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    this.lastGroup = batch.length;
    this.syncing++;
    this.syncWal()
      .finally(() => this.syncing--)
      .then(
        () =>
          batch.forEach((p, i) => {
            const r = results[i];
            if (r.ok) p.resolve(r.outcome);
            else p.reject(r.err);
          }),
        (err) => {
          for (const p of batch) p.reject(err);
        },
      );
  }

  /**
   * Makes every committed transaction durable: fsync of the WAL file, off the event loop. A put is
   * acknowledged, and a delete lets blobs go, only after this; a crash before it loses only
   * transactions that were never acknowledged.
   */
  private async syncWal(): Promise<void> {
    if (this.db.memory) return;
    let fh: FileHandle;
    try {
      fh = await open(`${this.db.name}-wal`, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // checkpointed and removed: in the database file
      throw err;
    }
    try {
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  private putTx(rec: InstanceRecord, rows: LevelRows, overwrite: boolean): PutOutcome {
    const { s, cols } = this;
    const existing = s.findInstance.get(rec.SOPInstanceUID) as InstanceRow | undefined;
    if (existing) {
      if (existing.sha256 === rec.sha256) return { outcome: 'identical' };
      if (!overwrite) return { outcome: 'conflict', existing: storedInstance(existing) };
    }
    const owner = s.seriesStudy.get(rec.SeriesInstanceUID) as { study_uid: string } | undefined;
    if (owner && owner.study_uid !== rec.StudyInstanceUID) {
      throw conflict(
        `Series ${rec.SeriesInstanceUID} already belongs to study ${owner.study_uid}, not ${rec.StudyInstanceUID}`,
      );
    }
    if (existing) {
      s.deleteInstance.run(rec.SOPInstanceUID);
      s.countSeries.run(existing.series_uid, existing.series_uid);
      if (existing.series_uid !== rec.SeriesInstanceUID)
        this.dropIfEmpty(existing.series_uid, existing.study_uid);
      else this.recountStudy(existing.study_uid);
    }
    s.insertStudy.run(valuesOf(rows.study, cols.study));
    s.insertSeries.run(valuesOf(rows.series, cols.series));
    if (existing) {
      // A replacement is a correction: its study and series attributes win.
      s.updateStudy.run(updateValues(rows.study, cols.study, 'study_uid'));
      s.updateSeries.run(updateValues(rows.series, cols.series, 'series_uid'));
    }
    s.insertInstance.run(valuesOf(rows.instance, cols.instance));
    s.bumpSeries.run(rec.SeriesInstanceUID);
    this.recountStudy(rec.StudyInstanceUID);
    return existing ? { outcome: 'replaced', previousBlobKey: existing.blob_key } : { outcome: 'stored' };
  }

  /** Study counts and ModalitiesInStudy from its series rows (a handful of rows: cheap on every put). */
  private recountStudy(study: string): void {
    const mods = this.s.studyModalities.pluck().all(study) as string[];
    this.s.countStudy.run(study, study, multiValue(mods), study);
  }

  /** After deletions from a series: exact series count, then remove the series and study if emptied. */
  private dropIfEmpty(series: string, study: string): void {
    this.s.countSeries.run(series, series);
    this.s.deleteEmptySeries.run(series);
    this.recountStudy(study);
    this.s.deleteEmptyStudy.run(study);
  }

  private deleteTx(scope: Scope): string[] {
    const q = scopeQuery(sqliteDialect, scope, 'delete');
    const rows = this.db.prepare(q.sql).all(...q.params) as {
      sop_uid: string;
      series_uid: string;
      blob_key: string;
    }[];
    if (rows.length === 0) return [];
    const d = scopeDelete(sqliteDialect, scope);
    this.db.prepare(d.sql).run(...d.params);
    for (const series of new Set(rows.map((r) => r.series_uid))) {
      this.s.countSeries.run(series, series);
      this.s.deleteEmptySeries.run(series);
    }
    this.recountStudy(scope.StudyInstanceUID);
    this.s.deleteEmptyStudy.run(scope.StudyInstanceUID);
    return rows.map((r) => r.blob_key);
  }

  async getInstance(key: Required<Scope>): Promise<StoredInstance | undefined> {
    const r = this.s.getInstance.get(key.SOPInstanceUID, key.SeriesInstanceUID, key.StudyInstanceUID);
    return r ? storedInstance(r as Record<string, unknown>) : undefined;
  }

  async listInstances(scope: Scope): Promise<StoredInstance[]> {
    const q = scopeQuery(sqliteDialect, scope, 'stored');
    return (this.statement(q.sql).all(...q.params) as Record<string, unknown>[]).map(storedInstance);
  }

  async metadata(scope: Scope): Promise<string[]> {
    const q = scopeQuery(sqliteDialect, scope, 'metadata');
    return this.statement(q.sql)
      .pluck()
      .all(...q.params) as string[];
  }

  async search(query: Query): Promise<SearchResult> {
    const q = await searchStatement(query, (sql, params) =>
      this.statement(sql).all(...(params as (string | number)[])),
    );
    const rows = this.statement(q.sql).all(...(q.params as (string | number)[])) as Record<string, unknown>[];
    return searchResults(query, rows);
  }

  async indexedBlobs(): Promise<IndexedBlob[]> {
    return (this.db.prepare(INDEXED_BLOBS_SQL).all() as Record<string, unknown>[]).map(indexedBlob);
  }

  async statistics(): Promise<IndexStatistics> {
    return indexStatistics(this.db.prepare(STATISTICS_SQL).get() as Record<string, unknown>);
  }

  async deleteInstances(scope: Scope): Promise<string[]> {
    const keys = this.del(scope);
    await this.syncWal(); // before the caller deletes the blobs
    return keys;
  }

  async clear(): Promise<void> {
    this.flush();
    this.db
      .transaction(() => {
        for (const table of ['instances', 'series', 'studies']) this.db.exec(`DELETE FROM ${table}`);
      })
      .immediate();
    await this.syncWal();
  }

  async addCommitment(c: PendingCommitment): Promise<boolean> {
    const added = this.statement(COMMITMENT_SQL.add).run(...commitmentValues(c)).changes === 1;
    // The requester is told 0000 once this resolves: it must survive a power cut.
    if (added) await this.syncWal();
    return added;
  }

  async dueCommitments(now: number, limit: number): Promise<PendingCommitment[]> {
    const rows = this.statement(COMMITMENT_SQL.due).all(now, limit) as Record<string, unknown>[];
    return rows.map(pendingCommitment);
  }

  async claimCommitment(
    uid: string,
    now: number,
    leaseUntil: number,
  ): Promise<PendingCommitment | undefined> {
    const row = this.statement(COMMITMENT_SQL.claim).get(leaseUntil, uid, now) as
      | Record<string, unknown>
      | undefined;
    return row ? pendingCommitment(row) : undefined;
  }

  async deferCommitment(
    uid: string,
    next: { nextAttempt: number; attempts: number; error: string | null },
  ): Promise<void> {
    this.statement(COMMITMENT_SQL.defer).run(next.nextAttempt, next.attempts, next.error, uid);
  }

  async releaseCommitments(now: number): Promise<number> {
    const released = this.statement(COMMITMENT_SQL.release).run(now).changes;
    if (released > 0) await this.syncWal();
    return released;
  }

  async removeCommitment(uid: string): Promise<boolean> {
    const removed = this.statement(COMMITMENT_SQL.remove).run(uid).changes === 1;
    // A report delivered is not sent again after a power cut (once per transaction: one fsync).
    if (removed) await this.syncWal();
    return removed;
  }

  sql(): SqlRunner {
    const db = this.db;
    const statements = new Map<string, Database.Statement>();
    const prepared = (sql: string) => {
      let st = statements.get(sql);
      if (!st) {
        st = db.prepare(sql);
        statements.set(sql, st);
      }
      return st;
    };
    const runner: Omit<SqlRunner, 'transaction'> = {
      dialect: sqliteDialect,
      all: async <T>(sql: string, params: unknown[] = []) => {
        const st = prepared(sql);
        if (st.reader) return st.all(...params) as T[];
        st.run(...params);
        return [];
      },
      run: async (sql: string, params: unknown[] = []) => prepared(sql).run(...params).changes,
    };
    let queue: Promise<unknown> = Promise.resolve();
    return {
      ...runner,
      // better-sqlite3 is synchronous: BEGIN … COMMIT around awaited statements that complete at once.
      // Transactions are queued so two never interleave on the one connection.
      transaction: <T>(fn: (tx: Omit<SqlRunner, 'transaction'>) => Promise<T>) => {
        const next = queue.then(async () => {
          db.exec('BEGIN IMMEDIATE');
          try {
            const value = await fn(runner);
            db.exec('COMMIT');
            return value;
          } catch (err) {
            if (db.inTransaction) db.exec('ROLLBACK');
            throw err;
          }
        });
        queue = next.catch(() => {});
        return next;
      },
    };
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    this.flush();
    // No PRAGMA optimize: the planner statistics are the archive's own (setStatistics); its ANALYZE
    // within the analysis limit would replace them with approximate ones, and the plans with them.
    this.db.close();
  }

  /** Prepared statements by SQL text (queries differ only by which filters are present: few shapes). */
  private statement(sql: string): Database.Statement {
    let st = this.searchCache.get(sql);
    if (!st) {
      if (this.searchCache.size >= 500) this.searchCache.clear();
      st = this.db.prepare(sql);
      this.searchCache.set(sql, st);
    }
    return st;
  }
}

function prepare(db: Db) {
  const sql = statements(sqliteDialect);
  const out: Record<string, Database.Statement> = {};
  for (const [k, v] of Object.entries(sql)) if (typeof v === 'string') out[k] = db.prepare(v);
  return out as { [K in Exclude<keyof typeof sql, 'columns'>]: Database.Statement };
}

function updateValues(row: LevelRows[keyof LevelRows], cols: string[], key: string) {
  return [
    ...valuesOf(
      row,
      cols.filter((c) => c !== key),
    ),
    row[key],
  ];
}

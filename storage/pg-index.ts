/**
 * The index on PostgreSQL (DATABASE_URL=postgres://…), for scale-out: any number of server processes,
 * on any number of machines, share one database and give the same answers. Same SQL as the SQLite index
 * (storage/sql.ts, postgresDialect: $n placeholders, text columns COLLATE "C" so that =, <, LIKE are
 * byte-exact as in SQLite and LIKE 'prefix%' uses the btree indexes).
 *
 * Schema: versioned migrations (sql.ts `migrations`), applied at open in one transaction under an advisory
 * lock, recorded in schema_migrations; servers starting together apply each version once, and a database
 * migrated by a newer program is refused.
 *
 * Concurrency: each put and delete is one READ COMMITTED transaction that first locks the study row
 * (SELECT … FOR UPDATE; a new study's row is inserted first so there is a row to lock). Every write to a
 * study's series and instances therefore happens under that study's lock, whichever process makes it, and
 * the counts and ModalitiesInStudy recomputed in the transaction are exact. A put that moves an instance
 * to another study locks both studies in UID order. The races locks cannot order (two puts of one SOP
 * Instance UID into different studies: a unique violation; deadlocks) roll back and run again.
 * Durability: a put resolves after COMMIT, which PostgreSQL makes durable (synchronous_commit on).
 */
import pg from 'pg';
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
  commitmentValues,
  INDEXED_BLOBS_SQL,
  indexStatistics,
  indexedBlob,
  type LevelRows,
  migrations,
  multiValue,
  pendingCommitment,
  postgresDialect,
  type Row,
  rowsFor,
  scopeDelete,
  scopeQuery,
  searchResults,
  searchSql,
  STATISTICS_SQL,
  statements,
  storedInstance,
  valuesOf,
} from './sql';

type InstanceRow = Record<string, unknown> & {
  series_uid: string;
  study_uid: string;
  blob_key: string;
  sha256: string;
};

/** Connections per server process. */
const POOL_SIZE = 10;
/** Attempts of a transaction that hit a deadlock, a serialization failure or a unique-key race. */
const MAX_ATTEMPTS = 10;
/** 40001 serialization_failure, 40P01 deadlock_detected, 23505 unique_violation (a concurrent insert). */
const RETRYABLE = new Set(['40001', '40P01', '23505']);

/** Opens the index in the database at url (postgres://user:password@host:port/database), migrating it. */
export async function openPgIndex(url: string): Promise<Index> {
  const pool = new pg.Pool({
    connectionString: url,
    max: POOL_SIZE,
    idleTimeoutMillis: 30_000,
    // The database unreachable: fail (503 / 0xA700 for the client) rather than wait forever.
    connectionTimeoutMillis: 10_000,
  });
  // An idle connection that breaks (database restarted) is dropped by the pool; the next query opens another.
  pool.on('error', () => {});
  // And every connection listens for its own errors for all its life: pg emits 'error' on a client whose
  // connection breaks, sometimes twice (the server's FATAL message, then the socket), and a checked-out
  // client may have no listener left (pool.query's is used once), which would crash the process. The
  // query that fails reports the error itself; a broken connection is not handed out again.
  pool.on('connect', (client) => client.on('error', () => {}));
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end();
    throw err;
  }
  return new PgIndex(pool);
}

/** Schema version of each applied migration (1-based, as in sql.ts). */
const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`;

/**
 * Runs fn in BEGIN … COMMIT on one pooled connection (ROLLBACK when it throws). A connection that broke
 * meanwhile (an 'error' event, which nobody would otherwise listen to, and which would crash the
 * process) is not handed out again by the pool.
 */
async function inTransaction<T>(
  pool: pg.Pool,
  fn: (c: pg.PoolClient) => Promise<{ value: T; commit: boolean }>,
): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  c.on('error', onError);
  try {
    await c.query('BEGIN');
    const { value, commit } = await fn(c);
    await c.query(commit ? 'COMMIT' : 'ROLLBACK');
    return value;
  } catch (err) {
    await c.query('ROLLBACK').catch((e: Error) => {
      broken = e; // the connection is unusable: the pool must not hand it out again
    });
    throw err;
  } finally {
    c.off('error', onError);
    c.release(broken);
  }
}

async function migrate(pool: pg.Pool): Promise<void> {
  const all = migrations(postgresDialect);
  await inTransaction(pool, async (c) => {
    // Servers starting at once: the first migrates, the others wait here and then find nothing to do.
    await c.query("SELECT pg_advisory_xact_lock(hashtext('open-pacs schema_migrations'))");
    await c.query(MIGRATIONS_TABLE);
    const applied = new Set(
      (await c.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    const newest = Math.max(0, ...applied);
    if (newest > all.length) {
      throw new Error(
        `index schema version ${newest} is newer than this program knows (${all.length}): the database was migrated by a newer version of the archive`,
      );
    }
    for (let v = 1; v <= all.length; v++) {
      if (applied.has(v)) continue;
      for (const statement of all[v - 1]) await c.query(statement);
      await c.query('INSERT INTO schema_migrations (version) VALUES ($1)', [v]);
    }
    return { value: undefined, commit: true };
  });
}

const SQL = statements(postgresDialect);
const COLS = SQL.columns;
type StatementName = Exclude<keyof typeof SQL, 'columns'>;

/** Locks a study row for the rest of the transaction: every write to its series and instances takes it first. */
const LOCK_STUDY = 'SELECT study_uid FROM studies WHERE study_uid = $1 FOR UPDATE';

/** Thrown inside a transaction to run it again (the instance moved between our read and our lock). */
class Retry extends Error {
  readonly code = '40001';
}

type Client = pg.PoolClient;

class PgIndex implements Index {
  private closed = false;

  constructor(private readonly pool: pg.Pool) {}

  /** One of the shared statements, prepared once per connection (named). */
  private run(c: Client, name: StatementName, values: unknown[]) {
    return c.query<Record<string, unknown>>({ name: `pacs_${name}`, text: SQL[name], values });
  }

  /**
   * Runs fn in a transaction, again from the start when it fails on a deadlock, a serialization failure
   * or a unique-key race. fn says whether to commit: a put that changes nothing rolls back.
   */
  private async transaction<T>(fn: (c: Client) => Promise<{ value: T; commit: boolean }>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await inTransaction(this.pool, fn);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (attempt >= MAX_ATTEMPTS || typeof code !== 'string' || !RETRYABLE.has(code)) throw err;
      }
      await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
    }
  }

  async putInstance(rec: InstanceRecord, opts: { overwrite: boolean }): Promise<PutOutcome> {
    const rows = rowsFor(rec, JSON.stringify(rec.metadata));
    return this.transaction((c) => this.putTx(c, rec, rows, opts.overwrite));
  }

  private async putTx(
    c: Client,
    rec: InstanceRecord,
    rows: LevelRows,
    overwrite: boolean,
  ): Promise<{ value: PutOutcome; commit: boolean }> {
    const unchanged = (existing: InstanceRow | undefined) => {
      if (!existing) return undefined;
      if (existing.sha256 === rec.sha256) return { value: { outcome: 'identical' as const }, commit: false };
      if (!overwrite)
        return {
          value: { outcome: 'conflict' as const, existing: storedInstance(existing) },
          commit: false,
        };
      return undefined;
    };
    const find = async () =>
      (await this.run(c, 'findInstance', [rec.SOPInstanceUID])).rows[0] as InstanceRow | undefined;

    // Most re-sends end here, without a lock.
    let existing = await find();
    const early = unchanged(existing);
    if (early) return early;

    // Lock the studies this put writes to, in UID order (two puts never wait for each other in a cycle).
    const locked = [...new Set([rec.StudyInstanceUID, existing?.study_uid ?? rec.StudyInstanceUID])].sort();
    for (const study of locked) {
      if (study === rec.StudyInstanceUID) await this.lockNewOrExistingStudy(c, rows.study);
      else await c.query(LOCK_STUDY, [study]);
    }
    // Under the lock, the instance is what it is until we commit.
    existing = await find();
    if (existing && !locked.includes(existing.study_uid)) throw new Retry('instance moved meanwhile');
    const late = unchanged(existing);
    if (late) return late;

    const owner = await this.seriesOwner(c, rec.SeriesInstanceUID);
    if (owner !== undefined && owner !== rec.StudyInstanceUID) throw seriesConflict(rec, owner);
    if (existing) {
      await this.run(c, 'deleteInstance', [rec.SOPInstanceUID]);
      await this.run(c, 'countSeries', [existing.series_uid, existing.series_uid]);
      if (existing.series_uid !== rec.SeriesInstanceUID)
        await this.dropIfEmpty(c, existing.series_uid, existing.study_uid);
      else await this.recountStudy(c, existing.study_uid);
    }
    await this.run(c, 'insertStudy', valuesOf(rows.study, COLS.study));
    await this.run(c, 'insertSeries', valuesOf(rows.series, COLS.series));
    // Another study's put may have created this series since we looked (a misbehaving sender).
    const nowOwner = await this.seriesOwner(c, rec.SeriesInstanceUID);
    if (nowOwner !== rec.StudyInstanceUID) throw seriesConflict(rec, nowOwner ?? '(none)');
    if (existing) {
      // A replacement is a correction: its study and series attributes win.
      await this.run(c, 'updateStudy', updateValues(rows.study, COLS.study, 'study_uid'));
      await this.run(c, 'updateSeries', updateValues(rows.series, COLS.series, 'series_uid'));
    }
    await this.run(c, 'insertInstance', valuesOf(rows.instance, COLS.instance));
    await this.run(c, 'bumpSeries', [rec.SeriesInstanceUID]);
    await this.recountStudy(c, rec.StudyInstanceUID);
    return {
      value: existing ? { outcome: 'replaced', previousBlobKey: existing.blob_key } : { outcome: 'stored' },
      commit: true,
    };
  }

  /**
   * Locks the put's study row, inserting it first when the study is new. A concurrent delete may remove
   * the row between the insert and the lock: then insert again.
   */
  private async lockNewOrExistingStudy(c: Client, study: Row): Promise<void> {
    for (;;) {
      await this.run(c, 'insertStudy', valuesOf(study, COLS.study));
      if ((await c.query(LOCK_STUDY, [study.study_uid])).rowCount === 1) return;
    }
  }

  private async seriesOwner(c: Client, series: string): Promise<string | undefined> {
    return (await this.run(c, 'seriesStudy', [series])).rows[0]?.study_uid as string | undefined;
  }

  /** Study counts and ModalitiesInStudy from its series rows (a handful of rows: cheap on every put). */
  private async recountStudy(c: Client, study: string): Promise<void> {
    const mods = (await this.run(c, 'studyModalities', [study])).rows.map((r) => r.modality as string);
    await this.run(c, 'countStudy', [study, study, multiValue(mods), study]);
  }

  /** After deletions from a series: exact series count, then remove the series and study if emptied. */
  private async dropIfEmpty(c: Client, series: string, study: string): Promise<void> {
    await this.run(c, 'countSeries', [series, series]);
    await this.run(c, 'deleteEmptySeries', [series]);
    await this.recountStudy(c, study);
    await this.run(c, 'deleteEmptyStudy', [study]);
  }

  async deleteInstances(scope: Scope): Promise<string[]> {
    return this.transaction(async (c) => {
      if ((await c.query(LOCK_STUDY, [scope.StudyInstanceUID])).rowCount === 0)
        return { value: [], commit: false };
      const q = scopeQuery(postgresDialect, scope, 'delete');
      const rows = (await c.query<{ series_uid: string; blob_key: string }>(q.sql, q.params)).rows;
      if (rows.length === 0) return { value: [], commit: false };
      const d = scopeDelete(postgresDialect, scope);
      await c.query(d.sql, d.params);
      for (const series of new Set(rows.map((r) => r.series_uid))) {
        await this.run(c, 'countSeries', [series, series]);
        await this.run(c, 'deleteEmptySeries', [series]);
      }
      await this.recountStudy(c, scope.StudyInstanceUID);
      await this.run(c, 'deleteEmptyStudy', [scope.StudyInstanceUID]);
      return { value: rows.map((r) => r.blob_key), commit: true };
    });
  }

  async getInstance(key: Required<Scope>): Promise<StoredInstance | undefined> {
    const r = await this.pool.query({
      name: 'pacs_getInstance',
      text: SQL.getInstance,
      values: [key.SOPInstanceUID, key.SeriesInstanceUID, key.StudyInstanceUID],
    });
    return r.rows[0] ? storedInstance(r.rows[0]) : undefined;
  }

  async listInstances(scope: Scope): Promise<StoredInstance[]> {
    const q = scopeQuery(postgresDialect, scope, 'stored');
    return (await this.pool.query(q.sql, q.params)).rows.map(storedInstance);
  }

  async metadata(scope: Scope): Promise<string[]> {
    const q = scopeQuery(postgresDialect, scope, 'metadata');
    return (await this.pool.query<{ metadata: string }>(q.sql, q.params)).rows.map((r) => r.metadata);
  }

  async search(query: Query): Promise<SearchResult> {
    // Unnamed statements: PostgreSQL plans each with its values (a LIKE prefix becomes an index range).
    const q = searchSql(query, postgresDialect);
    const rows = (await this.pool.query(q.sql, q.params)).rows;
    return searchResults(query, rows);
  }

  async indexedBlobs(): Promise<IndexedBlob[]> {
    return (await this.pool.query(INDEXED_BLOBS_SQL)).rows.map(indexedBlob);
  }

  async statistics(): Promise<IndexStatistics> {
    return indexStatistics((await this.pool.query(STATISTICS_SQL)).rows[0]);
  }

  /** TRUNCATE: immediate at any size; it waits for (and blocks) every other use of the tables meanwhile. */
  async clear(): Promise<void> {
    await this.pool.query('TRUNCATE instances, series, studies');
  }

  async addCommitment(c: PendingCommitment): Promise<boolean> {
    const r = await this.pool.query(postgresDialect.sql(COMMITMENT_SQL.add), commitmentValues(c));
    return r.rowCount === 1;
  }

  async dueCommitments(now: number, limit: number): Promise<PendingCommitment[]> {
    const r = await this.pool.query(postgresDialect.sql(COMMITMENT_SQL.due), [now, limit]);
    return r.rows.map(pendingCommitment);
  }

  async claimCommitment(
    uid: string,
    now: number,
    leaseUntil: number,
  ): Promise<PendingCommitment | undefined> {
    const r = await this.pool.query(postgresDialect.sql(COMMITMENT_SQL.claim), [leaseUntil, uid, now]);
    return r.rows[0] ? pendingCommitment(r.rows[0]) : undefined;
  }

  async deferCommitment(
    uid: string,
    next: { nextAttempt: number; attempts: number; error: string | null },
  ): Promise<void> {
    await this.pool.query(postgresDialect.sql(COMMITMENT_SQL.defer), [
      next.nextAttempt,
      next.attempts,
      next.error,
      uid,
    ]);
  }

  async releaseCommitments(now: number): Promise<number> {
    return (await this.pool.query(postgresDialect.sql(COMMITMENT_SQL.release), [now])).rowCount ?? 0;
  }

  async removeCommitment(uid: string): Promise<boolean> {
    return (await this.pool.query(postgresDialect.sql(COMMITMENT_SQL.remove), [uid])).rowCount === 1;
  }

  sql(): SqlRunner {
    const convert = (c: pg.Pool | Client): Omit<SqlRunner, 'transaction'> => ({
      dialect: postgresDialect,
      all: async <T>(sql: string, params: unknown[] = []) =>
        numbersOf(await c.query(postgresDialect.sql(sql), params)) as T[],
      run: async (sql: string, params: unknown[] = []) =>
        (await c.query(postgresDialect.sql(sql), params)).rowCount ?? 0,
    });
    return {
      ...convert(this.pool),
      transaction: async <T>(fn: (tx: Omit<SqlRunner, 'transaction'>) => Promise<T>) =>
        this.transaction(async (c) => ({ value: await fn(convert(c)), commit: true })),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** BIGINT (int8) values arrive as strings (they may exceed 2^53): ours are times, ids and counts, well below. */
function numbersOf(r: pg.QueryResult): Record<string, unknown>[] {
  const int8 = r.fields.filter((f) => f.dataTypeID === 20).map((f) => f.name);
  if (int8.length > 0)
    for (const row of r.rows) for (const k of int8) if (typeof row[k] === 'string') row[k] = Number(row[k]);
  return r.rows;
}

function seriesConflict(rec: InstanceRecord, owner: string) {
  return conflict(
    `Series ${rec.SeriesInstanceUID} already belongs to study ${owner}, not ${rec.StudyInstanceUID}`,
  );
}

function updateValues(row: Row, cols: string[], key: string) {
  return [
    ...valuesOf(
      row,
      cols.filter((c) => c !== key),
    ),
    row[key],
  ];
}

/**
 * The one place where QIDO-RS queries and index writes become SQL (Orthanc ISqlLookupFormatter style).
 * Backends (sqlite-index.ts, pg-index.ts) supply a small Dialect and run the statements.
 *
 * Work done at write time (rowsFor): every matching key is stored in a column in a comparable form:
 * - person names: `<col>` = NFC upper case of "Alphabetic=Ideographic=Phonetic" (case-insensitive match),
 *   `<col>_fold` = " " + foldPersonName(name) (fuzzy match: each query word starts a word, in order);
 * - dates 'YYYYMMDD', times 'HHMMSS.FFFFFF', datetimes 'YYYYMMDDHHMMSS.FFFFFF' (sortable text);
 * - multi-valued keys (ModalitiesInStudy, RequestAttributesSequence item IDs) as "\CT\MR\";
 * - each level's returnable attributes as a DICOM JSON text (attrs), the instance's full metadata as
 *   the JSON text it was serialized to once, never re-parsed to serve /metadata.
 * Missing values are NULL. Wildcards become LIKE patterns with ESCAPE '!'. On SQLite, a study search by
 * a fuzzy or infix name may also be restricted to the candidates of a trigram index (nameCandidatesSql): the
 * LIKE on the column still decides, so the results are the same.
 */
import {
  ATTRIBUTES,
  type LevelAttribute,
  keptTags,
  lookupAttribute,
  matchingKey,
  type QueryLevel,
  SPECIFIC_CHARACTER_SET,
} from '../dicomweb/attributes';
import { foldPersonName, personNameKey, personNameMatchKey, personNameString } from '../dicomweb/names';
import { dateTimeKey, type Filter, type Query, type Term, timeKey } from '../dicomweb/qido';
import type {
  IndexedBlob,
  IndexStatistics,
  InstanceRecord,
  PendingCommitment,
  Scope,
  StoredInstance,
} from './index';

export interface Dialect {
  name: string;
  /** Rewrites the `?` placeholders of our SQL into the dialect's ($1, $2… for PostgreSQL). */
  sql(text: string): string;
  /** Column type of text values compared with = < > LIKE (byte order, e.g. `TEXT COLLATE "C"` in PostgreSQL). */
  text: string;
  /** Column type of JSON stored as text (kept verbatim: key order and bytes as serialized). */
  json: string;
  /** 64-bit integer column type. */
  bigint: string;
  /** Column definition of an auto-incrementing 64-bit primary key. */
  autoId: string;
  /** LIMIT/OFFSET clause; limit undefined = no limit. */
  limitOffset(limit: number | undefined, offset: number): { sql: string; params: number[] };
}

export const sqliteDialect: Dialect = {
  name: 'sqlite',
  sql: (text) => text,
  text: 'TEXT',
  json: 'TEXT',
  bigint: 'INTEGER',
  autoId: 'INTEGER PRIMARY KEY AUTOINCREMENT',
  limitOffset(limit, offset) {
    if (limit === undefined)
      return offset > 0 ? { sql: 'LIMIT -1 OFFSET ?', params: [offset] } : { sql: '', params: [] };
    return { sql: 'LIMIT ? OFFSET ?', params: [limit, offset] };
  },
};

export const postgresDialect: Dialect = {
  name: 'postgres',
  sql: (text) => {
    let n = 0;
    return text.replace(/\?/g, () => `$${++n}`);
  },
  text: 'TEXT COLLATE "C"',
  json: 'TEXT',
  bigint: 'BIGINT',
  autoId: 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY',
  limitOffset(limit, offset) {
    if (limit === undefined)
      return offset > 0 ? { sql: 'OFFSET ?', params: [offset] } : { sql: '', params: [] };
    return { sql: 'LIMIT ? OFFSET ?', params: [limit, offset] };
  },
};

// ───────────────────────────── schema ─────────────────────────────

/**
 * Schema migrations, in order: entry n is schema version n + 1. The backend records which it applied
 * (SQLite: user_version = how many; PostgreSQL: the schema_migrations table). One list for every dialect:
 * a step one dialect does not need is an empty entry for it, so versions mean the same everywhere.
 * Append only: an applied entry is never changed.
 */
export function migrations(d: Dialect): string[][] {
  const T = d.text;
  const pg = d.name === 'postgres';
  return [
    [
      `CREATE TABLE studies (
        study_uid ${T} PRIMARY KEY,
        patient_name ${T}, patient_name_fold ${T},
        patient_id ${T}, issuer_of_patient_id ${T}, patient_birth_date ${T}, patient_sex ${T},
        study_date ${T}, study_time ${T}, accession_number ${T},
        referring_physician_name ${T}, referring_physician_name_fold ${T},
        study_id ${T}, study_description ${T},
        modalities ${T},
        num_series INTEGER NOT NULL DEFAULT 0,
        num_instances INTEGER NOT NULL DEFAULT 0,
        attrs ${d.json} NOT NULL
      )`,
      `CREATE TABLE series (
        series_uid ${T} PRIMARY KEY,
        study_uid ${T} NOT NULL REFERENCES studies (study_uid) ON DELETE CASCADE,
        modality ${T}, series_number ${d.bigint}, series_description ${T}, body_part_examined ${T},
        pps_start_date ${T}, pps_start_time ${T}, request_sps_ids ${T}, request_rp_ids ${T},
        num_instances INTEGER NOT NULL DEFAULT 0,
        attrs ${d.json} NOT NULL
      )`,
      `CREATE TABLE instances (
        sop_uid ${T} PRIMARY KEY,
        series_uid ${T} NOT NULL REFERENCES series (series_uid) ON DELETE CASCADE,
        study_uid ${T} NOT NULL,
        sop_class_uid ${T} NOT NULL,
        transfer_syntax_uid ${T} NOT NULL,
        instance_number ${d.bigint},
        acquisition_datetime ${T},
        blob_key ${T} NOT NULL,
        size ${d.bigint} NOT NULL,
        sha256 ${T} NOT NULL,
        number_of_frames INTEGER NOT NULL,
        frames ${d.json},
        bulk ${d.json} NOT NULL,
        attrs ${d.json} NOT NULL,
        metadata ${d.json} NOT NULL
      )`,
      'CREATE INDEX studies_patient_name ON studies (patient_name)',
      'CREATE INDEX studies_patient_id ON studies (patient_id)',
      'CREATE INDEX studies_date ON studies (study_date, study_time, study_uid)',
      'CREATE INDEX studies_accession ON studies (accession_number)',
      'CREATE INDEX studies_referring ON studies (referring_physician_name)',
      'CREATE INDEX series_study ON series (study_uid, series_number)',
      'CREATE INDEX series_modality ON series (modality)',
      'CREATE INDEX instances_series ON instances (series_uid, instance_number, sop_uid)',
      'CREATE INDEX instances_study ON instances (study_uid)',
      'CREATE INDEX instances_sop_class ON instances (sop_class_uid)',
    ],
    // 2: PostgreSQL only (SQLite's studies_date already serves the study list order, and it scans names).
    pg ? postgresQidoIndexes() : [],
    // 3: users, API tokens, sessions, share links, the audit trail and server settings (storage/access.ts).
    accessTables(d),
    // 4: counts of failed sign-ins and link checks per client address, shared by every server process.
    [
      `CREATE TABLE rate_limits (name ${T} PRIMARY KEY, hits INTEGER NOT NULL, reset_at ${d.bigint} NOT NULL)`,
    ],
    // 5: the studies that name a referring physician (referringStudiesSql), asked on each of their requests.
    ['CREATE INDEX studies_referring_fold ON studies (referring_physician_name_fold)'],
    // 6: the audit trail's filters (AccessStore.queryAudit lists newest first, ORDER BY id DESC LIMIT n):
    // one index per filter key ending in id, so a user's, a patient's or an action's events are read in
    // that order from their index instead of sorting all of them (a user's) or scanning the whole table
    // (a patient, a rare action); failures (status >= 400, a few in a thousand) from a partial index.
    [
      'CREATE INDEX audit_user_id ON audit_events (username, id)',
      'CREATE INDEX audit_patient_id ON audit_events (patient_id, id)',
      'CREATE INDEX audit_action_id ON audit_events (action, id)',
      'CREATE INDEX audit_failure_id ON audit_events (id) WHERE status >= 400',
    ],
    // 7: SQLite only: a trigram index of the study-level person names (fuzzy and infix searches, see
    // NAME_FTS). PostgreSQL has its pg_trgm indexes since version 2.
    pg ? [] : sqliteNameTrigrams('rowid'),
    // 8: SQLite only: NAME_FTS keyed by studies.name_key, which VACUUM cannot renumber (see NAME_KEY).
    pg ? [] : sqliteNameKey(),
    // 9: storage commitment requests whose report is not delivered yet (COMMITMENT_SQL), shared by every
    // server process and kept across restarts.
    [
      `CREATE TABLE commitments (
        transaction_uid ${T} PRIMARY KEY,
        calling_aet ${T} NOT NULL,
        called_aet ${T} NOT NULL,
        refs ${d.json} NOT NULL,
        state ${T} NOT NULL,
        received_at ${d.bigint} NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt ${d.bigint} NOT NULL,
        last_error ${T}
      )`,
      'CREATE INDEX commitments_due ON commitments (next_attempt)',
    ],
    // 10: the bytes stored (STATISTICS_SQL): SUM(size) read from this index, not from the instances'
    // rows with their metadata (at 6,000,000 instances: 70 MB of index entries against GBs of rows).
    // Built at the first start after the upgrade, which then reads every instance row once.
    ['CREATE INDEX IF NOT EXISTS instances_size ON instances (size)'],
  ];
}

/**
 * The person-name columns that fuzzy matching (`<col>_fold`) and wildcards (`<col>`) read at study level,
 * indexed by trigrams in an FTS5 table (SQLite's answer to pg_trgm): `<col> LIKE '%…%'` on it reads the
 * studies that hold every trigram of the pattern's literal runs instead of every study.
 */
export const NAME_FTS = 'studies_names';
const NAME_FTS_COLUMNS = [
  'patient_name',
  'patient_name_fold',
  'referring_physician_name',
  'referring_physician_name_fold',
];

/**
 * NAME_FTS as an external-content FTS5 table over studies (it stores only the index; the text stays in
 * studies), kept in step by triggers. Its rows are keyed by `key`, a column of studies: the rowid in
 * schema 7, studies.name_key since schema 8 (NAME_KEY). The update trigger fires only when a name column
 * is set to another value: the per-instance updates of a put (counts, ModalitiesInStudy) do not touch it;
 * a replacement that renames the study does.
 * detail=column: each trigram's studies and columns, no positions (the LIKE is checked on the text).
 */
function sqliteNameTrigrams(key: 'rowid' | 'name_key'): string[] {
  const cols = NAME_FTS_COLUMNS.join(', ');
  const values = (row: string) => NAME_FTS_COLUMNS.map((c) => `${row}.${c}`).join(', ');
  const remove = `INSERT INTO ${NAME_FTS} (${NAME_FTS}, rowid, ${cols}) VALUES ('delete', old.${key}, ${values('old')});`;
  const add = `INSERT INTO ${NAME_FTS} (rowid, ${cols}) VALUES (new.${key}, ${values('new')});`;
  // A new study's name_key, one above the largest (read from studies_name_key): set after the insert,
  // since a trigger cannot change the row being inserted. It never changes afterwards.
  const insert =
    key === 'rowid'
      ? add
      : `UPDATE studies SET ${key} = (SELECT COALESCE(MAX(${key}), 0) + 1 FROM studies) WHERE rowid = new.rowid;
         INSERT INTO ${NAME_FTS} (rowid, ${cols}) SELECT ${key}, ${cols} FROM studies WHERE rowid = new.rowid;`;
  const changed = NAME_FTS_COLUMNS.map((c) => `old.${c} IS NOT new.${c}`).join(' OR ');
  return [
    `CREATE VIRTUAL TABLE ${NAME_FTS} USING fts5(${cols}, content='studies', content_rowid='${key}', tokenize='trigram', detail='column')`,
    `CREATE TRIGGER ${NAME_FTS}_insert AFTER INSERT ON studies BEGIN ${insert} END`,
    `CREATE TRIGGER ${NAME_FTS}_delete AFTER DELETE ON studies BEGIN ${remove} END`,
    `CREATE TRIGGER ${NAME_FTS}_update AFTER UPDATE OF ${cols} ON studies WHEN ${changed} BEGIN ${remove} ${add} END`,
    `INSERT INTO ${NAME_FTS} (${NAME_FTS}) VALUES ('rebuild')`,
  ];
}

/**
 * The key of a study in NAME_FTS (schema 8). In schema 7 it was the rowid of studies, and SQLite
 * documents that VACUUM may change the rowids of a table without an INTEGER PRIMARY KEY (studies has a
 * text one): an index vacuumed by hand, or a VACUUM INTO copy restored, could then miss studies in name
 * searches, so every opening checked the whole table against studies (O(studies): 1.5 s at 300,000).
 * name_key is an ordinary column, which VACUUM copies as it is, unique (studies_name_key, which also
 * serves FTS5's lookups of a row by key), set once when the study is inserted (the insert trigger).
 * The migration gives the existing studies their rowids as keys and rebuilds NAME_FTS from them (a
 * schema-7 table may be out of step with a file vacuumed since its last opening).
 */
export const NAME_KEY = 'name_key';

function sqliteNameKey(): string[] {
  return [
    `DROP TRIGGER ${NAME_FTS}_insert`,
    `DROP TRIGGER ${NAME_FTS}_delete`,
    `DROP TRIGGER ${NAME_FTS}_update`,
    `DROP TABLE ${NAME_FTS}`,
    `ALTER TABLE studies ADD COLUMN ${NAME_KEY} INTEGER`,
    `UPDATE studies SET ${NAME_KEY} = rowid`,
    `CREATE UNIQUE INDEX studies_${NAME_KEY} ON studies (${NAME_KEY})`,
    // Statistics of the new index: without them, the PRAGMA optimize at close would analyze the whole
    // table again, within its analysis_limit, replacing the statistics of its other indexes with coarser
    // ones (at 300,000 studies: studies_patient_name 39 rows per name → 14, and PatientName=Nguyễn*
    // sorted every Nguyễn instead of walking studies_date, 0.8 → 180 ms).
    `ANALYZE studies_${NAME_KEY}`,
    ...sqliteNameTrigrams(NAME_KEY),
  ];
}

/**
 * SQLite's planner statistics (sqlite_stat1 rows: table, index, "rows [rows per distinct prefix…]"),
 * the archive's own, written at every opening (SqliteIndex: only when they differ) in place of whatever
 * the file held, with no sqlite_stat4 samples; nothing analyzes the index afterwards (no PRAGMA optimize
 * at close). They describe an archive of a provincial hospital after six years (docs/benchmarks.md,
 * "Index at scale": the full ANALYZE of its 300,000 studies, rounded), whatever the size of this one.
 *
 * Why not SQLite's own: its plans then depended on how the statistics happened to be gathered. A young
 * index has none until the first close, and a server started on it keeps planning without any for its
 * whole life: every table looks the same size, and `/instances?limit=100` read every instance through
 * instances_series and sorted them (6.6 s at 300,000 studies), `/series?limit=100` 1.0 s. The PRAGMA
 * optimize at close analyzes within its analysis limit (approximate rows per value, no sqlite_stat4),
 * and re-analyzes only after a tenfold growth: `PatientName=Nguyễn*` then read and sorted every Nguyễn
 * (0.8 → 670 ms), `SOPClassUID=` a common class every instance of it (2 ms → 8 s). A full ANALYZE holds
 * the write lock for seconds on a large index, and its per-value samples are what made Nguyễn* fast:
 * the bounded counts of filterRowsSql now make that choice, the same way on every index. With fixed
 * statistics the plans are the same on an empty, a young and a large index, as the tests check; SQLite
 * documents this use of sqlite_stat1 ("Manual Control Of Query Plans Using SQLITE_STAT Tables",
 * https://sqlite.org/optoverview.html#manctrl). A new index needs its row here (a test checks that every
 * index of the schema has one).
 */
export const SQLITE_STATISTICS: [table: string, index: string, stat: string][] = [
  ['studies', 'sqlite_autoindex_studies_1', '300000 1'],
  ['studies', 'studies_accession', '300000 1'],
  ['studies', 'studies_date', '300000 80 1 1'],
  ['studies', `studies_${NAME_KEY}`, '300000 1'],
  ['studies', 'studies_patient_id', '300000 3'],
  ['studies', 'studies_patient_name', '300000 40'],
  ['studies', 'studies_referring', '300000 1500'],
  ['studies', 'studies_referring_fold', '300000 1500'],
  ['series', 'sqlite_autoindex_series_1', '900000 1'],
  ['series', 'series_study', '900000 3 1'],
  ['series', 'series_modality', '900000 150000'],
  ['instances', 'sqlite_autoindex_instances_1', '6000000 1'],
  ['instances', 'instances_series', '6000000 7 1 1'],
  ['instances', 'instances_study', '6000000 20'],
  ['instances', 'instances_sop_class', '6000000 1000000'],
  ['instances', 'instances_size', '6000000 100'],
  ['audit_events', 'audit_time', '3000000 1'],
  ['audit_events', 'audit_user_time', '3000000 50000 1'],
  ['audit_events', 'audit_study_time', '3000000 20 1'],
  ['audit_events', 'audit_user_id', '3000000 50000 1'],
  ['audit_events', 'audit_patient_id', '3000000 20 1'],
  ['audit_events', 'audit_action_id', '3000000 300000 1'],
  ['audit_events', 'audit_failure_id', '6000 1'],
  ['users', 'sqlite_autoindex_users_1', '60 1'],
  ['users', 'sqlite_autoindex_users_2', '60 1'],
  ['api_tokens', 'sqlite_autoindex_api_tokens_1', '100 1'],
  ['api_tokens', 'sqlite_autoindex_api_tokens_2', '100 1'],
  ['shares', 'sqlite_autoindex_shares_1', '20000 1'],
  ['shares', 'shares_study', '20000 1'],
  ['shares', 'shares_grantee', '20000 500'],
  ['sessions', 'sqlite_autoindex_sessions_1', '2000 1'],
  ['sessions', 'sessions_expires', '2000 1'],
  ['settings', 'sqlite_autoindex_settings_1', '20 1'],
  ['rate_limits', 'sqlite_autoindex_rate_limits_1', '1000 1'],
  ['commitments', 'sqlite_autoindex_commitments_1', '100 1'],
  ['commitments', 'commitments_due', '100 1'],
];

/**
 * Security state (storage/access.ts). Secrets are never stored: passwords as scrypt hashes, tokens and
 * session ids as SHA-256 hashes. Times are milliseconds since the epoch (bigint). Audit rows are only
 * ever inserted, and deleted only by the retention (PACS_AUDIT_RETENTION_DAYS).
 */
function accessTables(d: Dialect): string[] {
  const T = d.text;
  const B = d.bigint;
  return [
    `CREATE TABLE users (
      username ${T} PRIMARY KEY,
      role ${T} NOT NULL,
      display_name ${T},
      password_hash ${T},
      referring_name ${T},
      oidc_subject ${T} UNIQUE,
      must_change_password INTEGER NOT NULL DEFAULT 0,
      disabled INTEGER NOT NULL DEFAULT 0,
      created_at ${B} NOT NULL
    )`,
    `CREATE TABLE api_tokens (
      id ${T} PRIMARY KEY,
      token_hash ${T} NOT NULL UNIQUE,
      username ${T} NOT NULL REFERENCES users (username) ON DELETE CASCADE,
      label ${T},
      created_at ${B} NOT NULL,
      expires_at ${B},
      last_used_at ${B},
      revoked_at ${B}
    )`,
    `CREATE TABLE shares (
      id ${T} PRIMARY KEY,
      study_uid ${T} NOT NULL,
      created_by ${T} NOT NULL,
      grantee ${T},
      verify ${T} NOT NULL,
      pin_hash ${T},
      created_at ${B} NOT NULL,
      expires_at ${B} NOT NULL,
      revoked_at ${B}
    )`,
    'CREATE INDEX shares_study ON shares (study_uid)',
    'CREATE INDEX shares_grantee ON shares (grantee)',
    `CREATE TABLE sessions (
      id_hash ${T} PRIMARY KEY,
      username ${T} NOT NULL,
      role ${T} NOT NULL,
      share_id ${T} REFERENCES shares (id) ON DELETE CASCADE,
      csrf ${T} NOT NULL,
      created_at ${B} NOT NULL,
      expires_at ${B} NOT NULL
    )`,
    'CREATE INDEX sessions_expires ON sessions (expires_at)',
    `CREATE TABLE audit_events (
      id ${d.autoId},
      time ${B} NOT NULL,
      username ${T},
      role ${T},
      action ${T} NOT NULL,
      study_uid ${T},
      patient_id ${T},
      status INTEGER NOT NULL,
      source ${T},
      detail ${T}
    )`,
    'CREATE INDEX audit_time ON audit_events (time)',
    'CREATE INDEX audit_user_time ON audit_events (username, time)',
    'CREATE INDEX audit_study_time ON audit_events (study_uid, time)',
    `CREATE TABLE settings (name ${T} PRIMARY KEY, value ${T} NOT NULL)`,
  ];
}

/**
 * What keeps PostgreSQL's QIDO fast at a million instances, beyond the btree indexes of version 1 (which,
 * on "C"-collated text, also serve LIKE 'prefix%' and ranges):
 * - the study list order (StudyDate, StudyTime DESC NULLS LAST): an index in exactly that order, so
 *   `/studies?limit=…` reads the first rows instead of sorting every study (SQLite's NULLs sort first,
 *   so its ascending index read backwards already gives that order);
 * - trigram (pg_trgm) GIN indexes on the person-name columns: fuzzy matching (`LIKE '% nguyen% an%'`)
 *   and wildcards inside a name (`*an*`) have no usable prefix. pg_trgm is a trusted extension
 *   (PostgreSQL 13+: the database owner may create it); where it cannot be created the step only warns
 *   (in the server log) and those searches scan the studies table: results are the same, slower.
 * - fillfactor below 100 on studies and series, whose counts every put updates: room on the page lets
 *   those updates stay HOT (no index writes).
 */
function postgresQidoIndexes(): string[] {
  const trigram = [
    ['studies_patient_name_trgm', 'patient_name'],
    ['studies_patient_name_fold_trgm', 'patient_name_fold'],
    ['studies_referring_trgm', 'referring_physician_name'],
    ['studies_referring_fold_trgm', 'referring_physician_name_fold'],
  ];
  return [
    'DROP INDEX studies_date',
    'CREATE INDEX studies_date ON studies (study_date DESC NULLS LAST, study_time DESC NULLS LAST, study_uid DESC)',
    'ALTER TABLE studies SET (fillfactor = 70)',
    'ALTER TABLE series SET (fillfactor = 70)',
    `DO $$
    BEGIN
      CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'PACS index: pg_trgm unavailable (%): fuzzy and infix name searches will scan the studies table', SQLERRM;
    END $$`,
    `DO $$
    DECLARE ns name;
    BEGIN
      SELECT n.nspname INTO ns FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
      IF ns IS NOT NULL THEN
${trigram.map(([name, col]) => `        EXECUTE format('CREATE INDEX ${name} ON studies USING gin (${col} %I.gin_trgm_ops) WITH (fastupdate = off)', ns);`).join('\n')}
      END IF;
    END $$`,
  ];
}

// ───────────────────────────── write time ─────────────────────────────

type Json = Record<string, { vr: string; Value?: unknown[] } | undefined>;
export type Row = Record<string, string | number | null>;

export interface LevelRows {
  study: Row;
  series: Row;
  instance: Row;
}

const firstValue = (md: Json, tag: string): unknown => md[tag]?.Value?.[0];

function text(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  const s = String(v).normalize('NFC').trim();
  return s === '' ? null : s;
}

function lenientDate(v: unknown): string | null {
  const s = text(v)?.replace(/[.-]/g, '');
  return s && /^\d{8}$/.test(s) ? s : null;
}

function integer(v: unknown): number | null {
  const n = typeof v === 'number' ? v : Number(text(v) ?? Number.NaN);
  // beyond 2^53 a value is not exact, nor storable in every backend's 64-bit column
  return Number.isSafeInteger(n) ? n : null;
}

/** "\A\B\" from the values of a multi-valued key; null when none. */
export function multiValue(values: (string | null)[]): string | null {
  const vs = [...new Set(values.filter((v): v is string => v !== null))].sort();
  return vs.length === 0 ? null : `\\${vs.join('\\')}\\`;
}

function columnValue(attr: LevelAttribute, md: Json): Row {
  const col = attr.column!;
  switch (attr.match) {
    case 'pn': {
      const name = personNameString(firstValue(md, attr.tag));
      return {
        [col]: name ? personNameKey(name) : null,
        [`${col}_fold`]: name ? ` ${foldPersonName(name)}` : null,
      };
    }
    case 'date':
      return { [col]: lenientDate(firstValue(md, attr.tag)) };
    case 'time': {
      const t = text(firstValue(md, attr.tag));
      return { [col]: (t && timeKey(t)) ?? null };
    }
    case 'datetime': {
      const t = text(firstValue(md, attr.tag));
      return { [col]: (t && dateTimeKey(t)) ?? null };
    }
    case 'integer':
      return { [col]: integer(firstValue(md, attr.tag)) };
    case 'multi': {
      const [seq, item] = attr.tag.split('.');
      if (!item) return { [col]: null }; // computed (ModalitiesInStudy)
      const items = (md[seq]?.Value ?? []) as Json[];
      return { [col]: multiValue(items.map((it) => text(it?.[item]?.Value?.[0]))) };
    }
    default:
      return { [col]: text(firstValue(md, attr.tag)) };
  }
}

/** The level's returnable attributes, as DICOM JSON text. */
function attrsJson(level: QueryLevel, md: Json, uids: Record<string, string>): string {
  const out: Json = {};
  for (const tag of keptTags(level)) if (md[tag] !== undefined) out[tag] = md[tag];
  for (const [tag, uid] of Object.entries(uids)) out[tag] = { vr: 'UI', Value: [uid] };
  // QIDO answers in NFC even when the file held decomposed text (JSON syntax is ASCII: NFC leaves it alone).
  return JSON.stringify(out).normalize('NFC');
}

/** Columns of the study, series and instance rows for one instance (computed once, at write time). */
export function rowsFor(rec: InstanceRecord, metadataText: string): LevelRows {
  const md = rec.metadata as Json;
  const rows: LevelRows = { study: {}, series: {}, instance: {} };
  for (const attr of ATTRIBUTES) {
    if (!attr.column || attr.computed) continue;
    Object.assign(rows[attr.level], columnValue(attr, md));
  }
  Object.assign(rows.study, {
    study_uid: rec.StudyInstanceUID,
    attrs: attrsJson('study', md, { '0020000D': rec.StudyInstanceUID }),
  });
  Object.assign(rows.series, {
    series_uid: rec.SeriesInstanceUID,
    study_uid: rec.StudyInstanceUID,
    attrs: attrsJson('series', md, { '0020000E': rec.SeriesInstanceUID }),
  });
  Object.assign(rows.instance, {
    sop_uid: rec.SOPInstanceUID,
    series_uid: rec.SeriesInstanceUID,
    study_uid: rec.StudyInstanceUID,
    sop_class_uid: rec.SOPClassUID,
    transfer_syntax_uid: rec.TransferSyntaxUID,
    blob_key: rec.blobKey,
    size: rec.size,
    sha256: rec.sha256,
    number_of_frames: rec.numberOfFrames,
    frames: rec.frames === null ? null : JSON.stringify(rec.frames),
    bulk: JSON.stringify(rec.bulk),
    attrs: attrsJson('instance', md, { '00080016': rec.SOPClassUID, '00080018': rec.SOPInstanceUID }),
    metadata: metadataText,
  });
  return rows;
}

/** Writes and lookups shared by every backend (placeholders rewritten by the dialect). */
export function statements(d: Dialect, rows: LevelRows = emptyRows()) {
  const insert = (table: string, row: Row, conflict: string) => {
    const cols = Object.keys(row);
    return d.sql(
      `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')}) ${conflict}`,
    );
  };
  const update = (table: string, row: Row, key: string) => {
    const cols = Object.keys(row).filter((c) => c !== key);
    return d.sql(`UPDATE ${table} SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE ${key} = ?`);
  };
  const I =
    'sop_uid, series_uid, study_uid, sop_class_uid, transfer_syntax_uid, blob_key, size, sha256, number_of_frames, frames, bulk';
  return {
    /** columns in the order of the row objects of rowsFor */
    columns: {
      study: Object.keys(rows.study),
      series: Object.keys(rows.series),
      instance: Object.keys(rows.instance),
    },
    insertStudy: insert('studies', rows.study, 'ON CONFLICT (study_uid) DO NOTHING'),
    insertSeries: insert('series', rows.series, 'ON CONFLICT (series_uid) DO NOTHING'),
    insertInstance: insert('instances', rows.instance, ''),
    updateStudy: update('studies', rows.study, 'study_uid'),
    updateSeries: update('series', rows.series, 'series_uid'),
    seriesStudy: d.sql('SELECT study_uid FROM series WHERE series_uid = ?'),
    findInstance: d.sql(`SELECT ${I} FROM instances WHERE sop_uid = ?`),
    deleteInstance: d.sql('DELETE FROM instances WHERE sop_uid = ?'),
    bumpSeries: d.sql('UPDATE series SET num_instances = num_instances + 1 WHERE series_uid = ?'),
    countSeries: d.sql(
      'UPDATE series SET num_instances = (SELECT COUNT(*) FROM instances WHERE series_uid = ?) WHERE series_uid = ?',
    ),
    countStudy: d.sql(
      `UPDATE studies SET
        num_series = (SELECT COUNT(*) FROM series WHERE study_uid = ?),
        num_instances = (SELECT COALESCE(SUM(num_instances), 0) FROM series WHERE study_uid = ?),
        modalities = ?
      WHERE study_uid = ?`,
    ),
    studyModalities: d.sql(
      'SELECT DISTINCT modality FROM series WHERE study_uid = ? AND modality IS NOT NULL',
    ),
    deleteEmptySeries: d.sql('DELETE FROM series WHERE series_uid = ? AND num_instances = 0'),
    deleteEmptyStudy: d.sql('DELETE FROM studies WHERE study_uid = ? AND num_series = 0'),
    getInstance: d.sql(`SELECT ${I} FROM instances WHERE sop_uid = ? AND series_uid = ? AND study_uid = ?`),
  };
}

function emptyRows(): LevelRows {
  const rec: InstanceRecord = {
    StudyInstanceUID: '',
    SeriesInstanceUID: '',
    SOPInstanceUID: '',
    SOPClassUID: '',
    TransferSyntaxUID: '',
    blobKey: '',
    size: 0,
    sha256: '',
    numberOfFrames: 0,
    frames: null,
    bulk: {},
    metadata: {},
  };
  return rowsFor(rec, '{}');
}

/**
 * The pending storage commitments (schema 9; storage/index.ts PendingCommitment), `?` placeholders.
 * add: insert-or-detect on the Transaction UID, the primary key, so a duplicate is seen whichever process
 * recorded the first. claim: takes a due row for one attempt; the WHERE on next_attempt makes two claims
 * of one row exclusive (SQLite: one writer at a time; PostgreSQL: the second UPDATE waits for the first
 * and re-checks the condition on the row it wrote, READ COMMITTED), the changed row count says who won.
 * release: every request held by a process (received, delivering) made due now, for a server that
 * knows no other one can hold them (server/main.ts).
 */
export const COMMITMENT_SQL = {
  add: `INSERT INTO commitments
      (transaction_uid, calling_aet, called_aet, refs, state, received_at, attempts, next_attempt, last_error)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (transaction_uid) DO NOTHING`,
  due: 'SELECT * FROM commitments WHERE next_attempt <= ? ORDER BY next_attempt, transaction_uid LIMIT ?',
  claim: `UPDATE commitments SET state = 'delivering', next_attempt = ?
      WHERE transaction_uid = ? AND next_attempt <= ? RETURNING *`,
  defer: `UPDATE commitments SET state = 'waiting', next_attempt = ?, attempts = ?, last_error = ?
      WHERE transaction_uid = ?`,
  remove: 'DELETE FROM commitments WHERE transaction_uid = ?',
  release: `UPDATE commitments SET state = 'waiting', next_attempt = ? WHERE state <> 'waiting'`,
};

/** The values of COMMITMENT_SQL.add. */
export const commitmentValues = (c: PendingCommitment): (string | number | null)[] => [
  c.TransactionUID,
  c.callingAETitle,
  c.calledAETitle,
  JSON.stringify(c.references),
  c.state,
  c.receivedAt,
  c.attempts,
  c.nextAttempt,
  c.lastError,
];

/** A commitments row as a PendingCommitment. */
export const pendingCommitment = (r: Record<string, unknown>): PendingCommitment => ({
  TransactionUID: r.transaction_uid as string,
  callingAETitle: r.calling_aet as string,
  calledAETitle: r.called_aet as string,
  references: JSON.parse(r.refs as string) as PendingCommitment['references'],
  state: r.state as PendingCommitment['state'],
  receivedAt: Number(r.received_at),
  attempts: Number(r.attempts),
  nextAttempt: Number(r.next_attempt),
  lastError: (r.last_error as string | null) ?? null,
});

/**
 * What the index holds (IndexStatistics), in one statement: each count from the smallest index of its
 * table, the bytes from instances_size (schema 10), never the rows themselves.
 */
export const STATISTICS_SQL = `SELECT * FROM
  (SELECT COUNT(*) AS studies FROM studies) st,
  (SELECT COUNT(*) AS series FROM series) se,
  (SELECT COUNT(*) AS instances, COALESCE(SUM(size), 0) AS stored_bytes FROM instances) i`;
/** The row of STATISTICS_SQL (PostgreSQL answers COUNT as BIGINT and SUM as NUMERIC: text). */
export const indexStatistics = (r: Record<string, unknown>): IndexStatistics => ({
  studies: Number(r.studies),
  series: Number(r.series),
  instances: Number(r.instances),
  storedBytes: Number(r.stored_bytes),
});

/** The query of Index.indexedBlobs(), and its rows turned into IndexedBlob. */
export const INDEXED_BLOBS_SQL = 'SELECT blob_key, study_uid, series_uid, sop_uid FROM instances';
export const indexedBlob = (r: Record<string, unknown>): IndexedBlob => ({
  blobKey: r.blob_key as string,
  StudyInstanceUID: r.study_uid as string,
  SeriesInstanceUID: r.series_uid as string,
  SOPInstanceUID: r.sop_uid as string,
});

/** Values of a row in the order of the statement's columns. */
export const valuesOf = (row: Row, cols: string[]) => cols.map((c) => row[c] ?? null);

/** The columns findInstance/getInstance/scopeQuery select, turned into a StoredInstance. */
export function storedInstance(r: Record<string, unknown>): StoredInstance {
  return {
    StudyInstanceUID: r.study_uid as string,
    SeriesInstanceUID: r.series_uid as string,
    SOPInstanceUID: r.sop_uid as string,
    SOPClassUID: r.sop_class_uid as string,
    TransferSyntaxUID: r.transfer_syntax_uid as string,
    blobKey: r.blob_key as string,
    size: Number(r.size),
    sha256: r.sha256 as string,
    numberOfFrames: Number(r.number_of_frames),
    frames: r.frames === null || r.frames === undefined ? null : JSON.parse(r.frames as string),
    bulk: JSON.parse(r.bulk as string),
  };
}

/**
 * Instances in a scope (study, series or one instance), ordered by series (SeriesNumber, UID) then
 * InstanceNumber. `what` is the select list: 'stored' (StoredInstance columns), 'metadata', 'blob'.
 */
export function scopeQuery(
  d: Dialect,
  scope: Scope,
  what: 'stored' | 'metadata' | 'delete',
): { sql: string; params: string[] } {
  const { where, params } = scopeWhere(scope, 'i.');
  const cols =
    what === 'metadata'
      ? 'i.metadata'
      : what === 'delete'
        ? 'i.sop_uid, i.series_uid, i.blob_key'
        : 'i.sop_uid, i.series_uid, i.study_uid, i.sop_class_uid, i.transfer_syntax_uid, i.blob_key, i.size, i.sha256, i.number_of_frames, i.frames, i.bulk';
  // Within one series, the (series_uid, instance_number, sop_uid) index gives the order without a join.
  const sql =
    scope.SeriesInstanceUID !== undefined
      ? `SELECT ${cols} FROM instances i WHERE ${where.join(' AND ')} ORDER BY i.instance_number NULLS LAST, i.sop_uid`
      : `SELECT ${cols} FROM instances i JOIN series se ON se.series_uid = i.series_uid WHERE ${where.join(' AND ')}
         ORDER BY se.series_number NULLS LAST, i.series_uid, i.instance_number NULLS LAST, i.sop_uid`;
  return { sql: d.sql(sql), params };
}

function scopeWhere(scope: Scope, prefix: string): { where: string[]; params: string[] } {
  const where = [`${prefix}study_uid = ?`];
  const params = [scope.StudyInstanceUID];
  if (scope.SeriesInstanceUID !== undefined) {
    where.push(`${prefix}series_uid = ?`);
    params.push(scope.SeriesInstanceUID);
  }
  if (scope.SOPInstanceUID !== undefined) {
    where.push(`${prefix}sop_uid = ?`);
    params.push(scope.SOPInstanceUID);
  }
  return { where, params };
}

/** Deletes the instance rows of a scope (run after scopeQuery(…, 'delete') collected their blob keys). */
export function scopeDelete(d: Dialect, scope: Scope): { sql: string; params: string[] } {
  const { where, params } = scopeWhere(scope, '');
  return { sql: d.sql(`DELETE FROM instances WHERE ${where.join(' AND ')}`), params };
}

// ───────────────────────────── search ─────────────────────────────

const ALIAS: Record<QueryLevel, string> = { study: 'st', series: 'se', instance: 'i' };
const ESCAPE = '!';

/** A literal for LIKE: escapes the escape character, % and _. */
export function likeLiteral(s: string): string {
  return s.replace(/[!%_]/g, (c) => ESCAPE + c);
}

/** A DICOM wildcard pattern (`*`, `?`) as a LIKE pattern. */
export function likePattern(s: string): string {
  return likeLiteral(s).replace(/\*/g, '%').replace(/\?/g, '_');
}

const LIKE = `LIKE ? ESCAPE '${ESCAPE}'`;

/**
 * The studies whose ReferringPhysicianName is, as a whole, the name whose exact-match key is `key`
 * (personNameMatchKey: the alphabetic group, folded): what a referring physician reads as "named in the
 * order". Never a wildcard, never a prefix. A stored name of one component group matches when its folded
 * column is exactly " key"; one with ideographic or phonetic groups (folded after it in the same column)
 * is a candidate when that column starts with " key ", and referringStudyUids then compares its
 * alphabetic group. Plain SQL, the same on every dialect (rewrite the placeholders with Dialect.sql).
 *
 * An equality and a LIKE with a fixed prefix on the folded column only, so both are answered from its
 * index (studies_referring_fold; SQLite's case_sensitive_like and PostgreSQL's "C" collation make the
 * prefix usable): every request of a referring physician asks this, and a scan of the studies table
 * would hold SQLite's event loop for the whole table.
 */
export function referringStudiesSql(key: string): { sql: string; params: string[] } {
  return {
    sql: `SELECT study_uid, referring_physician_name, referring_physician_name_fold FROM studies
      WHERE referring_physician_name_fold = ? OR referring_physician_name_fold ${LIKE}`,
    params: [` ${key}`, ` ${likeLiteral(key)} %`],
  };
}

/** The study UIDs of referringStudiesSql's rows whose name is, as a whole, the one of the key. */
export function referringStudyUids(rows: Record<string, unknown>[], key: string): string[] {
  // The stored column is upper case: compare it with the key gone through the same case mapping.
  const upperKey = foldPersonName(personNameKey(key));
  return rows
    .filter((r) => {
      const name = String(r.referring_physician_name);
      // One component group: the whole folded column (a longer name that starts with the key is not it).
      if (!name.includes('=')) return r.referring_physician_name_fold === ` ${key}`;
      return personNameMatchKey(name) === upperKey;
    })
    .map((r) => String(r.study_uid));
}

/** The column of a matching key, from the table that is cheapest to filter at the query's level. */
function columnRef(q: Query, attr: LevelAttribute): string {
  if (attr.column === 'study_uid' && q.level !== 'study') return `${ALIAS[q.level]}.study_uid`;
  if (attr.column === 'series_uid' && q.level === 'instance') return 'i.series_uid';
  return `${ALIAS[attr.level]}.${attr.column}`;
}

function termSql(attr: LevelAttribute, col: string, t: Term, params: unknown[]): string {
  const exact = 'exact' in t;
  const v = exact ? t.exact : t.pattern;
  switch (attr.match) {
    case 'integer':
      params.push(Number(v));
      return `${col} = ?`;
    case 'multi':
      params.push(`%\\${exact ? likeLiteral(v) : likePattern(v)}\\%`);
      return `${col} ${LIKE}`;
    case 'pn': {
      // Without "=", the query names the alphabetic group: also match "value=ideographic=phonetic".
      const p = exact ? likeLiteral(v) : likePattern(v);
      if (v.includes('=')) {
        params.push(exact ? v : p);
        return exact ? `${col} = ?` : `${col} ${LIKE}`;
      }
      params.push(exact ? v : p, `${p}=%`);
      return `(${col} ${exact ? '= ?' : LIKE} OR ${col} ${LIKE})`;
    }
    default:
      params.push(exact ? v : likePattern(v));
      return exact ? `${col} = ?` : `${col} ${LIKE}`;
  }
}

function filterSql(q: Query, f: Filter, params: unknown[], opts: SearchOptions): string {
  const attr = matchingKey(f.tag)!;
  const m = f.match;
  if (opts.modalityViaStudies && m.type === 'any' && viaStudyModalities(q, attr)) {
    // SQLite would read every series of a common modality from series_modality (hundreds of thousands
    // after a few years) and sort them all by study date for one page. Instead: the studies in date order
    // from studies_date, those whose ModalitiesInStudy names the modality (implied: it is computed from
    // their series on every write), then their series; `+` keeps SQLite from choosing series_modality.
    const own = matchSql(q, attr, m, `+${columnRef(q, attr)}`, params);
    const mis = matchingKey('00080061')!;
    const implied = m.terms.map((t) => termSql(mis, 'st.modalities', t, params));
    return `${own} AND (${implied.join(' OR ')})`;
  }
  const counted = opts.filterRows?.get(f.tag);
  // As common as COMMON_FILTER_ROWS: `+` keeps SQLite from reading (and sorting) all its rows from the
  // column's index; the study-date walk fills the page from the first ones (see filterRowsSql).
  const common = counted !== undefined && counted >= COMMON_FILTER_ROWS;
  return matchSql(q, attr, m, `${common ? '+' : ''}${columnRef(q, attr)}`, params);
}

function matchSql(
  q: Query,
  attr: LevelAttribute,
  m: Filter['match'],
  col: string,
  params: unknown[],
): string {
  switch (m.type) {
    case 'universal':
      return '1 = 1';
    case 'any': {
      const exacts = m.terms.filter((t): t is { exact: string } => 'exact' in t);
      if (
        exacts.length > 1 &&
        exacts.length === m.terms.length &&
        attr.match !== 'multi' &&
        attr.match !== 'pn'
      ) {
        params.push(...exacts.map((t) => (attr.match === 'integer' ? Number(t.exact) : t.exact)));
        return `${col} IN (${exacts.map(() => '?').join(', ')})`;
      }
      const parts = m.terms.map((t) => termSql(attr, col, t, params));
      return parts.length === 1 ? parts[0] : `(${parts.join(' OR ')})`;
    }
    case 'range': {
      if (attr.match === 'date' && m.from !== undefined && m.from === m.to) {
        params.push(m.from);
        return `${col} = ?`;
      }
      const parts: string[] = [];
      if (m.from !== undefined) {
        parts.push(`${col} >= ?`);
        params.push(m.from);
      }
      if (m.to !== undefined) {
        parts.push(`${col} <= ?`);
        params.push(m.to);
      }
      return parts.join(' AND ');
    }
    case 'fuzzy':
      params.push(fuzzyPattern(m.words));
      return `${col}_fold ${LIKE}`;
    case 'datetime': {
      const timeCol = columnRef(q, matchingKey(m.timeTag)!);
      const dt = `(${col} || COALESCE(${timeCol}, ''))`;
      const parts: string[] = [];
      // The date bounds alone let the date index narrow the scan.
      if (m.from !== undefined) {
        parts.push(`${col} >= ?`, `${dt} >= ?`);
        params.push(m.from.slice(0, 8), m.from);
      }
      if (m.to !== undefined) {
        parts.push(`${col} <= ?`, `${dt} <= ?`);
        params.push(m.to.slice(0, 8), m.to);
      }
      return parts.join(' AND ');
    }
  }
}

/** The LIKE pattern of fuzzy matching on a `<col>_fold` column: each word starts a word, in order. */
const fuzzyPattern = (words: string[]) => `%${words.map((w) => ` ${likePattern(w)}`).join('%')}%`;

/** A series Modality filter across studies (no StudyInstanceUID), at series or instance level. */
function viaStudyModalities(q: Query, attr: LevelAttribute): boolean {
  return (
    attr.level === 'series' &&
    attr.column === 'modality' &&
    q.level !== 'study' &&
    q.StudyInstanceUID === undefined
  );
}

/** Series of one modality beyond which SQLite reads studies in date order rather than series_modality. */
export const COMMON_MODALITY_SERIES = 2000;

/**
 * For a search that filters series by Modality across studies: a count of the matching series, up to
 * COMMON_MODALITY_SERIES (read from series_modality: at most that many index entries). SQLite's backend
 * asks it first, then searchSql with modalityViaStudies when the modality is that common: a rare one
 * (a few NM series, none at all) is still found from series_modality, where walking every study by date
 * would read the whole studies table for one page.
 */
export function modalityCountSql(q: Query): { sql: string; params: unknown[] } | undefined {
  const f = q.filters.find((f) => f.match.type === 'any' && viaStudyModalities(q, matchingKey(f.tag)!));
  if (!f) return undefined;
  const params: unknown[] = [];
  const where = matchSql(q, matchingKey(f.tag)!, f.match, 'se.modality', params);
  params.push(COMMON_MODALITY_SERIES);
  return { sql: `SELECT COUNT(*) AS n FROM (SELECT 1 FROM series se WHERE ${where} LIMIT ?)`, params };
}

/**
 * The SQLite indexes of the filters whose selectivity decides the plan of a search across studies: a
 * value or a prefix of one of these columns may match a handful of studies or a third of them (a
 * family name), and SQLite's statistics cannot tell which (SQLITE_STATISTICS has no per-value
 * samples). Keyed by table.column.
 */
const COUNTED_FILTERS: Record<string, string> = {
  'studies.patient_name': 'studies_patient_name',
  'studies.referring_physician_name': 'studies_referring',
  'studies.patient_id': 'studies_patient_id',
  'studies.accession_number': 'studies_accession',
  'instances.sop_class_uid': 'instances_sop_class',
};

/** Rows of a filter (filterRowsSql) from which SQLite walks the studies in date order instead. */
export const COMMON_FILTER_ROWS = 2000;

/** A filter of COUNTED_FILTERS whose terms an index can search: exact values or literal prefixes. */
function countedFilter(
  q: Query,
  f: Filter,
): { table: string; index: string; attr: LevelAttribute } | undefined {
  // within a study or a series, its own rows are few: their index is the way
  if (q.StudyInstanceUID !== undefined || q.SeriesInstanceUID !== undefined) return undefined;
  if (f.match.type !== 'any') return undefined;
  const attr = matchingKey(f.tag)!;
  if (attr.level === 'instance' && q.level !== 'instance') return undefined;
  const table = { study: 'studies', series: 'series', instance: 'instances' }[attr.level];
  const index = COUNTED_FILTERS[`${table}.${attr.column}`];
  if (!index) return undefined;
  const prefixed = f.match.terms.every((t) => 'exact' in t || !/^[%_]/.test(likePattern(t.pattern)));
  return prefixed ? { table, index, attr } : undefined;
}

/**
 * For a search across studies (SQLite): for each filter of COUNTED_FILTERS, a count of its rows up to
 * COMMON_FILTER_ROWS, read from the column's index (at most that many index entries). SqliteIndex.search
 * asks them first and passes the counts to searchSql (filterRows): a filter that common is written
 * `+column`, and the search walks the studies in date order, where the page fills early (PatientName=
 * Nguyễn*: 0.8 ms at 300,000 studies, against 180–670 ms to read and sort every Nguyễn); otherwise the
 * least common such filter names its index (INDEXED BY): at most that many rows read and sorted, where a
 * date walk would read every study for a rare name. Either way SQLite has one plan to choose, whatever
 * its statistics.
 */
export function filterRowsSql(q: Query): { tag: string; sql: string; params: unknown[] }[] {
  const out: { tag: string; sql: string; params: unknown[] }[] = [];
  for (const f of q.filters) {
    const c = countedFilter(q, f);
    if (!c) continue;
    const params: unknown[] = [];
    const where = matchSql(q, c.attr, f.match, `${ALIAS[c.attr.level]}.${c.attr.column}`, params);
    params.push(COMMON_FILTER_ROWS);
    out.push({
      tag: f.tag,
      sql: `SELECT COUNT(*) AS n FROM (SELECT 1 FROM ${c.table} ${ALIAS[c.attr.level]} INDEXED BY ${c.index} WHERE ${where} LIMIT ?)`,
      params,
    });
  }
  return out;
}

/** Study, series and instance UIDs: a list of them names its rows (a referring physician's studies). */
const UNIQUE_KEYS = new Set(['0020000D', '0020000E', '00080018']);

/**
 * The index a search reads its rows from (INDEXED BY), by table alias: the least common counted filter's.
 * None when a filter lists UIDs: their unique indexes give that many rows, which SQLite's estimate knows.
 */
function indexedBy(q: Query, opts: SearchOptions): Partial<Record<QueryLevel, string>> {
  if (q.filters.some((f) => UNIQUE_KEYS.has(f.tag) && f.match.type === 'any')) return {};
  let best: { level: QueryLevel; index: string; n: number } | undefined;
  for (const f of q.filters) {
    const n = opts.filterRows?.get(f.tag);
    const c = countedFilter(q, f);
    if (n === undefined || !c || n >= COMMON_FILTER_ROWS || (best && best.n <= n)) continue;
    best = { level: c.attr.level, index: c.index, n };
  }
  return best ? { [best.level]: ` INDEXED BY ${best.index}` } : {};
}

/** Candidates from NAME_FTS up to which SQLite reads a name search's studies from it, not by date. */
export const COMMON_NAME_STUDIES = 1000;

/**
 * The study-level name filter NAME_FTS can answer (SQLite): fuzzy matching, or one wildcard pattern that
 * does not start with a literal (a fixed prefix is read from the column's own index), with a run of at
 * least 3 literal characters (a trigram). `pattern` is a LIKE pattern for NAME_FTS's `column` that every
 * name the filter matches also matches (a superset: the filter itself is still applied to the studies).
 */
function nameTrigramTerm(q: Query): { column: string; pattern: string } | undefined {
  if (q.level !== 'study') return undefined;
  for (const f of q.filters) {
    const attr = matchingKey(f.tag)!;
    if (attr.level !== 'study' || attr.match !== 'pn') continue;
    const m = f.match;
    let column: string;
    let like: string;
    if (m.type === 'fuzzy') {
      column = `${attr.column}_fold`;
      like = fuzzyPattern(m.words);
    } else if (m.type === 'any' && m.terms.length === 1 && 'pattern' in m.terms[0]) {
      column = attr.column!;
      like = likePattern(m.terms[0].pattern);
      if (!/^[%_]/.test(like)) continue;
    } else continue;
    // FTS5 answers a LIKE without ESCAPE only: an escaped % or _ becomes _ (any one character), and a
    // trailing % also matches the "value=ideographic=phonetic" names that termSql's second LIKE accepts.
    const loose = like.replace(/!(.)/gsu, (_, c: string) => (c === ESCAPE ? ESCAPE : '_'));
    if (!loose.split(/[%_]/).some((run) => [...run].length >= 3)) continue;
    return { column, pattern: loose.endsWith('%') ? loose : `${loose}%` };
  }
  return undefined;
}

/**
 * For a study search by a fuzzy or infix name (nameTrigramTerm): the keys (NAME_KEY) of its candidate
 * studies from NAME_FTS, up to COMMON_NAME_STUDIES. SQLite's backend asks it first; when there are fewer,
 * it passes them to searchSql (nameKeys), which reads those studies only: a rare or absent name is then
 * read from the trigram index, where walking the studies in date order would read every one of them. A
 * common name (as many candidates as the limit) still fills its page early that way.
 */
export function nameCandidatesSql(q: Query): { sql: string; params: unknown[] } | undefined {
  const t = nameTrigramTerm(q);
  if (!t) return undefined;
  return {
    sql: `SELECT rowid FROM ${NAME_FTS} WHERE ${t.column} LIKE ? LIMIT ?`,
    params: [t.pattern, COMMON_NAME_STUDIES],
  };
}

export interface SearchOptions {
  /** SQLite: a series Modality filter across studies read through studies in date order (see filterSql). */
  modalityViaStudies?: boolean;
  /** SQLite: the NAME_KEY of the only studies that may match (a name's candidates, see nameCandidatesSql). */
  nameKeys?: number[];
  /** SQLite: the rows of the filters of filterRowsSql, by tag, up to COMMON_FILTER_ROWS. */
  filterRows?: Map<string, number>;
}

/** Levels whose attribute JSON a search must read: those of any tag it returns. */
function levelsRead(q: Query): Set<QueryLevel> {
  const out = new Set<QueryLevel>(q.returnLevels);
  for (const a of ATTRIBUTES) {
    if (
      (a.kept || a.computed) &&
      q.returnTags.includes(a.tag) &&
      levelOrder(a.level) <= levelOrder(q.level)
    ) {
      out.add(a.level);
    }
  }
  return out;
}
const levelOrder = (l: QueryLevel) => ['study', 'series', 'instance'].indexOf(l);

/** Tags the instance-level attribute JSON cannot answer: then the full metadata is read. */
function needsMetadata(q: Query): boolean {
  if (q.level !== 'instance') return false;
  const known = new Set(ATTRIBUTES.filter((a) => a.kept || a.computed || a.match).map((a) => a.tag));
  known.add(SPECIFIC_CHARACTER_SET.tag);
  return q.returnTags.some((t) => !known.has(t));
}

/** SELECT … WHERE … ORDER BY … LIMIT limit+1 (the extra row tells whether there are more). */
export function searchSql(
  q: Query,
  d: Dialect,
  opts: SearchOptions = {},
): { sql: string; params: unknown[] } {
  const read = levelsRead(q);
  const cols = ['st.study_uid'];
  if (read.has('study'))
    cols.push('st.attrs AS st_attrs', 'st.num_series', 'st.num_instances', 'st.modalities');
  if (q.level !== 'study') cols.push('se.series_uid');
  if (read.has('series')) cols.push('se.attrs AS se_attrs', 'se.num_instances AS se_num_instances');
  if (q.level === 'instance') cols.push('i.sop_uid', 'i.attrs AS i_attrs', 'i.transfer_syntax_uid');
  if (needsMetadata(q)) cols.push('i.metadata');

  const by = indexedBy(q, opts);
  const st = `studies st${by.study ?? ''}`;
  let from = st;
  if (q.level === 'series') from = `series se JOIN ${st} ON st.study_uid = se.study_uid`;
  if (q.level === 'instance') {
    from = `instances i${by.instance ?? ''} JOIN series se ON se.series_uid = i.series_uid JOIN ${st} ON st.study_uid = i.study_uid`;
  }

  const where: string[] = [];
  const params: unknown[] = [];
  if (q.StudyInstanceUID !== undefined) {
    where.push(`${ALIAS[q.level]}.study_uid = ?`);
    params.push(q.StudyInstanceUID);
  }
  if (q.SeriesInstanceUID !== undefined && q.level !== 'study') {
    where.push(`${ALIAS[q.level]}.series_uid = ?`);
    params.push(q.SeriesInstanceUID);
  }
  for (const f of q.filters) if (f.match.type !== 'universal') where.push(filterSql(q, f, params, opts));
  if (opts.nameKeys) {
    // the filters above still decide: these are candidates (one JSON array: one statement for any number)
    where.push(`st.${NAME_KEY} IN (SELECT value FROM json_each(?))`);
    params.push(JSON.stringify(opts.nameKeys));
  }

  const order: string[] = [];
  if (q.level === 'study' || q.StudyInstanceUID === undefined) {
    order.push('st.study_date DESC NULLS LAST', 'st.study_time DESC NULLS LAST', 'st.study_uid DESC');
  }
  if (q.level !== 'study' && (q.level === 'series' || q.SeriesInstanceUID === undefined)) {
    order.push('se.series_number NULLS LAST', 'se.series_uid');
  }
  if (q.level === 'instance') order.push('i.instance_number NULLS LAST', 'i.sop_uid');

  const page = d.limitOffset(q.limit === undefined ? undefined : q.limit + 1, q.offset);
  params.push(...page.params);
  const sql = `SELECT ${cols.join(', ')} FROM ${from}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order.join(', ')} ${page.sql}`;
  return { sql: d.sql(sql), params };
}

/** Turns the rows of searchSql into DICOM JSON results limited to the query's return attributes. */
export function searchResults(q: Query, rows: Record<string, unknown>[]): { matches: Json[]; more: boolean } {
  const more = q.limit !== undefined && rows.length > q.limit;
  const page = more ? rows.slice(0, q.limit) : rows;
  const studyCache = new Map<string, Json>();
  const seriesCache = new Map<string, Json>();
  const optional = optionalTags(q);
  const vrOf = new Map(q.returnTags.map((t) => [t, lookupAttribute(t)?.vr ?? 'UN']));
  const matches = page.map((r) => {
    const sources: Json[] = [];
    if (r.i_attrs !== undefined) sources.push(JSON.parse(r.i_attrs as string));
    if (r.metadata !== undefined) sources.push(JSON.parse(r.metadata as string));
    if (r.se_attrs !== undefined)
      sources.push(cached(seriesCache, r.series_uid as string, r.se_attrs as string));
    if (r.st_attrs !== undefined)
      sources.push(cached(studyCache, r.study_uid as string, r.st_attrs as string));
    const computed: Json = {
      [SPECIFIC_CHARACTER_SET.tag]: { vr: 'CS', Value: [SPECIFIC_CHARACTER_SET.value] },
      '0020000D': { vr: 'UI', Value: [r.study_uid] },
    };
    if (r.series_uid !== undefined) computed['0020000E'] = { vr: 'UI', Value: [r.series_uid] };
    if (r.sop_uid !== undefined) computed['00080018'] = { vr: 'UI', Value: [r.sop_uid] };
    if (r.st_attrs !== undefined) {
      const mods = ((r.modalities as string | null) ?? '').split('\\').filter((m) => m !== '');
      computed['00080061'] = mods.length ? { vr: 'CS', Value: mods } : { vr: 'CS' };
      computed['00201206'] = { vr: 'IS', Value: [Number(r.num_series)] };
      computed['00201208'] = { vr: 'IS', Value: [Number(r.num_instances)] };
    }
    if (r.se_attrs !== undefined) computed['00201209'] = { vr: 'IS', Value: [Number(r.se_num_instances)] };
    computed['00080056'] = { vr: 'CS', Value: ['ONLINE'] };
    if (r.transfer_syntax_uid !== undefined) {
      computed['00083002'] = { vr: 'UI', Value: [r.transfer_syntax_uid] };
    }
    const ds: Json = {};
    for (const tag of q.returnTags) {
      let v = computed[tag];
      for (let k = 0; v === undefined && k < sources.length; k++) v = sources[k][tag];
      if (v !== undefined) ds[tag] = v;
      else if (!optional.has(tag)) ds[tag] = { vr: vrOf.get(tag)! };
    }
    return ds;
  });
  return { matches, more };
}

function cached(cache: Map<string, Json>, key: string, text: string): Json {
  let v = cache.get(key);
  if (!v) {
    v = JSON.parse(text) as Json;
    cache.set(key, v);
  }
  return v;
}

/** Tags returned only when present (the extra attributes of includefield=all). */
function optionalTags(q: Query): Set<string> {
  if (!q.includeAll) return new Set();
  const required = new Set<string>([...q.includeFields, ...q.filters.map((f) => f.tag.split('.')[0])]);
  for (const a of ATTRIBUTES) if (a.byDefault && q.returnLevels.includes(a.level)) required.add(a.tag);
  return new Set(q.returnTags.filter((t) => !required.has(t)));
}

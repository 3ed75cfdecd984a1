/**
 * Index: the database that answers QIDO-RS and locates objects in the blob store.
 * Implementations: sqlite-index.ts (default, embedded), pg-index.ts (PostgreSQL, for scale).
 * Both translate the pure Query model of dicomweb/qido.ts through storage/sql.ts.
 */
import type { Query } from '../dicomweb/qido';
import type { Dialect } from './sql';

/** [offset, length] of a run of bytes inside a blob. */
export type Span = [offset: number, length: number];

/** Everything ingest computed about one instance (work done at write time). */
export interface InstanceRecord {
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  SOPInstanceUID: string;
  SOPClassUID: string;
  TransferSyntaxUID: string;
  blobKey: string;
  size: number;
  sha256: string;
  numberOfFrames: number;
  /**
   * For each frame (0-based), the spans of the blob holding its bytes: one span for native pixel data,
   * one or more fragments for encapsulated pixel data. null when frames are not addressable in the
   * stored bytes (Deflated transfer syntax): they are then served by decoding the object.
   */
  frames: Span[][] | null;
  /** Bulk data path ("7FE00010", "00420011", "00540016/0/00181078") → span in the blob. */
  bulk: Record<string, Span>;
  /** The instance's DICOM JSON (PS3.18 F.2), UTF-8, bulk values as BulkDataURI starting with BULKDATA_BASE. */
  metadata: Record<string, unknown>;
}

/** What retrieval needs about one stored instance: no metadata, no parsing. */
export interface StoredInstance {
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  SOPInstanceUID: string;
  SOPClassUID: string;
  TransferSyntaxUID: string;
  blobKey: string;
  size: number;
  sha256: string;
  numberOfFrames: number;
  frames: Span[][] | null;
  bulk: Record<string, Span>;
}

export type PutOutcome =
  /** new instance */
  | { outcome: 'stored' }
  /** same SOP Instance UID and the same bytes already stored: nothing changed */
  | { outcome: 'identical' }
  /** same SOP Instance UID, different bytes, overwrite allowed: the old blob must now be deleted */
  | { outcome: 'replaced'; previousBlobKey: string }
  /** same SOP Instance UID, different bytes, overwrite refused: nothing changed */
  | { outcome: 'conflict'; existing: StoredInstance };

/** An indexed instance and the blob holding it. */
export interface IndexedBlob {
  blobKey: string;
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  SOPInstanceUID: string;
}

export interface Scope {
  StudyInstanceUID: string;
  SeriesInstanceUID?: string;
  SOPInstanceUID?: string;
}

/** The scope naming exactly one stored instance. */
export function instanceScope(inst: StoredInstance): Required<Scope> {
  return {
    StudyInstanceUID: inst.StudyInstanceUID,
    SeriesInstanceUID: inst.SeriesInstanceUID,
    SOPInstanceUID: inst.SOPInstanceUID,
  };
}

export interface SearchResult {
  /** DICOM JSON datasets, already limited to the requested/included attributes. */
  matches: Record<string, unknown>[];
  /** true when more matches exist beyond limit/offset (the caller adds a Warning header). */
  more: boolean;
}

/** One instance a storage commitment request names (PS3.4 J.3.2, Referenced SOP Sequence item). */
export interface CommitmentReference {
  ReferencedSOPClassUID: string;
  ReferencedSOPInstanceUID: string;
}

/**
 * A Storage Commitment Push Model request whose N-EVENT-REPORT the requester has not answered yet
 * (server/dimse/commitment.ts), kept from its N-ACTION until the report is delivered or given up, in
 * the index's database: every server process sees it, and it outlives a restart. Times in ms since the
 * epoch.
 */
export interface PendingCommitment {
  TransactionUID: string;
  /** The requester (the calling AE title of the N-ACTION's association), where the report goes. */
  callingAETitle: string;
  /** The archive's AE title the requester called. */
  calledAETitle: string;
  /** The Referenced SOP Sequence, in order. */
  references: CommitmentReference[];
  /**
   * received: answered, its report about to go on the requester's association; delivering: an attempt
   * on a new association is under way; waiting: to be tried again at nextAttempt.
   */
  state: 'received' | 'delivering' | 'waiting';
  receivedAt: number;
  /** Attempts at the report that failed. */
  attempts: number;
  /**
   * When it may next be tried: while received or delivering, the end of the lease of the process
   * reporting it (another process takes it over only after that).
   */
  nextAttempt: number;
  /** Why the last attempt failed. */
  lastError: string | null;
}

/** How much the index holds (GET /api/statistics). */
export interface IndexStatistics {
  studies: number;
  series: number;
  instances: number;
  /** Sum of the stored objects' sizes (InstanceRecord.size), in bytes. */
  storedBytes: number;
}

export interface Index {
  /** One transaction: study, series and instance rows, counts and ModalitiesInStudy brought up to date. */
  putInstance(rec: InstanceRecord, opts: { overwrite: boolean }): Promise<PutOutcome>;
  /** Locates one instance; the series and study in key must match too. */
  getInstance(key: Required<Scope>): Promise<StoredInstance | undefined>;
  /** Every instance in scope, ordered by series then InstanceNumber. */
  listInstances(scope: Scope): Promise<StoredInstance[]>;
  /** The stored DICOM JSON (as serialized strings, no re-parse) of every instance in scope, same order. */
  metadata(scope: Scope): Promise<string[]>;
  search(query: Query): Promise<SearchResult>;
  /** Every indexed instance and its blob key (for fsck: blobs nobody references, rows whose blob is gone). */
  indexedBlobs(): Promise<IndexedBlob[]>;
  /** Counts of studies, series and instances, and their bytes: read from indexes, cheap at any size. */
  statistics(): Promise<IndexStatistics>;
  /** Removes the instances in scope (and emptied series/studies); returns their blob keys. */
  deleteInstances(scope: Scope): Promise<string[]>;
  /** Removes every study, series and instance at once (reindex starts from an empty index). */
  clear(): Promise<void>;
  /**
   * Records a storage commitment request; false (nothing changed) when one with its Transaction UID is
   * pending already (a duplicate, PS3.4 J.3.3.1.2), whichever process recorded it. Durable once resolved.
   */
  addCommitment(c: PendingCommitment): Promise<boolean>;
  /** The pending commitments whose nextAttempt is at or before now, earliest first, at most limit. */
  dueCommitments(now: number, limit: number): Promise<PendingCommitment[]>;
  /**
   * Takes a due commitment for one attempt: its state becomes delivering and its nextAttempt leaseUntil,
   * if its nextAttempt is still at or before now. Of processes claiming it at once, one gets it; the
   * others (and any claim of one not due or gone) get undefined.
   */
  claimCommitment(uid: string, now: number, leaseUntil: number): Promise<PendingCommitment | undefined>;
  /** After an attempt that failed (or none was made): waiting until nextAttempt, with its attempts and error. */
  deferCommitment(
    uid: string,
    next: { nextAttempt: number; attempts: number; error: string | null },
  ): Promise<void>;
  /** Removes a commitment (its report delivered, or given up); false when it was not there. */
  removeCommitment(uid: string): Promise<boolean>;
  /**
   * Makes every commitment a process holds (received, delivering) due at now, its lease ended: for a
   * server starting when no other can hold one (its holder died without closing). How many.
   */
  releaseCommitments(now: number): Promise<number>;
  /** The index's database, for the tables kept beside the index (users, shares, audit: storage/access.ts). */
  sql(): SqlRunner;
  close(): Promise<void>;
}

/** Runs statements written with `?` placeholders in the index's database (storage/access.ts). */
export interface SqlRunner {
  readonly dialect: Dialect;
  /** Rows of a query (BIGINT values as numbers). */
  all<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Runs a statement; returns the number of rows changed. */
  run(sql: string, params?: unknown[]): Promise<number>;
  /** Runs fn's statements in one transaction. */
  transaction<T>(fn: (tx: Omit<SqlRunner, 'transaction'>) => Promise<T>): Promise<T>;
}

/** Placeholder prefix of BulkDataURI values in stored metadata; replaced by the public DICOMweb root when served. */
export const BULKDATA_BASE = '{{DICOMWEB_ROOT}}';

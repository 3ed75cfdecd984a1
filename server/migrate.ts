/**
 * Moving an installation to other storage (`npm run migrate-storage`): every indexed instance of the
 * source (for example the embedded folder + SQLite) is copied to the target (for example S3 +
 * PostgreSQL) under the same blob key, checked against the SHA-256 recorded at ingest, and indexed in
 * the target by the same write-time work as STOW. Blobs are read and written as streams.
 *
 * HTJ2K copies (PACS_INGEST_HTJ2K) travel with their instance when the blobs move. When the index moves,
 * the security state goes with it (storage/access.ts copyAccessState): users, API tokens, share links,
 * settings (the share-link key) and the audit trail; sessions do not (people sign in again).
 *
 * Safe to interrupt and to run again: an instance already indexed in the target with the same bytes is
 * skipped, so a second run copies only what the first did not finish. The source is never modified.
 * Run it with the servers stopped (or with the source read-only), then point the servers at the target.
 */
import { createHash } from 'node:crypto';
import { Part10Scanner } from '../dicomweb/part10';
import { parseQuery } from '../dicomweb/qido';
import { type AccessCopyReport, copyAccessState } from '../storage/access';
import { BlobNotFoundError, type BlobStore } from '../storage/blob';
import type { StoredInstance } from '../storage/index';
import { blobFolder, openStorage, sqliteIndexFile, type Storage } from '../storage/open';
import { type Config, storageOptions } from './config';
import { describeInstance } from './ingest';
import { deleteStoredBlob, htj2kCopyKey } from './transcode/copies';

export interface MigrationReport {
  /** Instances indexed in the source. */
  instances: number;
  /** Copied and indexed in the target by this run. */
  copied: number;
  /** Already in the target with the same bytes (an earlier run). */
  skipped: number;
  /** Bytes copied by this run. */
  bytes: number;
  /** Instances that could not be moved, with the reason (the source keeps them). */
  failed: { sopInstanceUID: string; reason: string }[];
  /** HTJ2K copies moved with their instance (when the blobs move). */
  htj2kCopies: number;
  /** Security state moved with the index (undefined when only the blobs move). */
  access?: AccessCopyReport;
}

/** Instances copied at once: hides the latency of an object store. */
const PARALLEL = 8;

export async function migrateStorage(
  from: Config,
  to: Config,
  onProgress?: (r: MigrationReport) => void,
): Promise<MigrationReport> {
  const sameBlobs = blobLocation(from) === blobLocation(to);
  const sameIndex = indexLocation(from) === indexLocation(to);
  if (sameBlobs && sameIndex) throw new Error('the source and the target are the same storage');
  // Keys do not change, so moving only the blobs leaves the index valid as it is, and moving only the
  // index reads the blobs where they are.
  const mode: Mode = sameBlobs ? 'index' : sameIndex ? 'blobs' : 'both';
  const source = await openStorage(storageOptions(from));
  let target: Storage | undefined;
  const report: MigrationReport = {
    instances: 0,
    copied: 0,
    skipped: 0,
    bytes: 0,
    failed: [],
    htj2kCopies: 0,
  };
  try {
    target = await openStorage(storageOptions(to));
    const tgt = target;
    for (const study of await allStudies(source)) {
      const instances = await source.index.listInstances({ StudyInstanceUID: study });
      report.instances += instances.length;
      let next = 0;
      const worker = async () => {
        while (next < instances.length) {
          const inst = instances[next++];
          try {
            await moveOne(source.blobs, tgt, inst, mode, to.defaultCharset, report);
          } catch (err) {
            report.failed.push({ sopInstanceUID: inst.SOPInstanceUID, reason: (err as Error).message });
          }
          onProgress?.(report);
        }
      };
      await Promise.all(Array.from({ length: PARALLEL }, worker));
    }
    if (mode !== 'blobs') {
      // Named by a digest: the source's URL may hold a password, and the name is kept in the target.
      const sourceName = createHash('sha256').update(indexLocation(from)).digest('hex').slice(0, 16);
      report.access = await copyAccessState(source.index.sql(), tgt.index.sql(), sourceName);
    }
  } finally {
    await target?.close();
    await source.close();
  }
  return report;
}

type Mode = 'both' | 'blobs' | 'index';

async function moveOne(
  from: BlobStore,
  to: Storage,
  inst: StoredInstance,
  mode: Mode,
  defaultCharset: string,
  report: MigrationReport,
): Promise<void> {
  if (mode !== 'blobs') {
    const existing = await to.index.getInstance(inst);
    if (existing?.sha256 === inst.sha256) {
      report.skipped++;
      return;
    }
    if (existing) throw new Error('the target already holds this SOP Instance UID with different bytes');
  }
  // Read once (and copy under the same key), hashing and scanning on the way: what lands in the target
  // is what was acknowledged, and it is indexed by the same write-time work as STOW.
  const hash = createHash('sha256');
  const scanner = new Part10Scanner();
  let size = 0;
  async function* watched(): AsyncGenerator<Uint8Array> {
    for await (const chunk of await from.get(inst.blobKey)) {
      const bytes = chunk as Uint8Array;
      hash.update(bytes);
      if (mode !== 'blobs') scanner.push(bytes);
      size += bytes.length;
      yield bytes;
    }
  }
  const copying = mode !== 'index';
  if (copying) await to.blobs.put(inst.blobKey, watched());
  else for await (const _ of watched());
  let keep = !copying; // never delete a blob the source still uses
  try {
    const digest = hash.digest('hex');
    if (digest !== inst.sha256 || size !== inst.size)
      throw new Error(`the source blob ${inst.blobKey} does not match its recorded SHA-256 and size`);
    if (copying) await copyHtj2k(from, to.blobs, inst.blobKey, report);
    if (mode === 'blobs') {
      keep = true;
      report.copied++;
      report.bytes += size;
      return;
    }
    const described = describeInstance(scanner.end(), {
      blobKey: inst.blobKey,
      size,
      sha256: digest,
      defaultCharset,
    });
    if (!described.ok) throw new Error(described.failed.message);
    const put = await to.index.putInstance(described.record, { overwrite: false });
    if (put.outcome === 'conflict')
      throw new Error('the target already holds this SOP Instance UID with different bytes');
    if (put.outcome === 'identical') {
      // Indexed meanwhile (another run): keep the blob only if that row refers to this very key.
      keep ||= (await to.index.getInstance(inst))?.blobKey === inst.blobKey;
      report.skipped++;
    } else {
      keep = true;
      report.copied++;
      if (copying) report.bytes += size;
    }
  } finally {
    // A copied blob the target index does not refer to is removed again (fsck would find it otherwise).
    if (!keep) await deleteStoredBlob(to.blobs, inst.blobKey).catch(() => {});
  }
}

/** The HTJ2K copy of an object, if it has one, under the same key (a copy is checked when it is made). */
async function copyHtj2k(from: BlobStore, to: BlobStore, blobKey: string, report: MigrationReport) {
  const key = htj2kCopyKey(blobKey);
  let body: AsyncIterable<Uint8Array>;
  try {
    body = await from.get(key);
  } catch (err) {
    if (err instanceof BlobNotFoundError) return;
    throw err;
  }
  await to.put(key, body);
  report.htj2kCopies++;
}

/** Every StudyInstanceUID of the source, by paging a study-level search. */
async function allStudies(storage: Storage): Promise<string[]> {
  const out: string[] = [];
  const page = 1000;
  for (let offset = 0; ; offset += page) {
    const params = new URLSearchParams({ limit: String(page), offset: String(offset) });
    const q = parseQuery('study', params, {}, { maxLimit: page });
    const res = await storage.index.search(q);
    for (const m of res.matches) out.push((m['0020000D'] as { Value: string[] }).Value[0]);
    if (!res.more) return out;
  }
}

const blobLocation = (c: Config) => c.blobStore || `file:${blobFolder(storageOptions(c))}`;
const indexLocation = (c: Config) => c.databaseUrl || `sqlite:${sqliteIndexFile(storageOptions(c))}`;

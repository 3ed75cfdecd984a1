/**
 * Maintenance of the archive, run with the server stopped:
 * - reindex: rebuilds the whole index from the blob store alone (the blobs are the truth);
 * - fsck: finds blobs no index row refers to (a crash between writing a blob and indexing it) and
 *   index rows whose blob is gone; with repair, indexes the orphans that are valid instances and
 *   deletes the others.
 * Copies derived from a stored object (the HTJ2K copies of PACS_INGEST_HTJ2K, server/transcode/copies.ts)
 * are never indexed: they belong to their original, and are orphans when it is not indexed.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Part10Error, Part10Scanner } from '../dicomweb/part10';
import type { BlobStore } from '../storage/blob';
import type { Index, InstanceRecord } from '../storage/index';
import { openStorage } from '../storage/open';
import { registerProcess, runningProcesses } from './run-registry';
import { type Config, storageOptions } from './config';
import { describeInstance, describePart10Error } from './ingest';
import { originalOfDerivedKey } from './transcode/copies';

export type BlobCheck = { ok: true; record: InstanceRecord } | { ok: false; reason: string };

/** Reads one blob through the same scanner and write-time work as STOW (streamed, memory flat). */
export async function examineBlob(blobs: BlobStore, key: string, defaultCharset: string): Promise<BlobCheck> {
  const scanner = new Part10Scanner();
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of await blobs.get(key)) {
      const bytes = chunk as Uint8Array;
      size += bytes.length;
      hash.update(bytes);
      scanner.push(bytes);
    }
    const scan = scanner.end();
    const described = describeInstance(scan, {
      blobKey: key,
      size,
      sha256: hash.digest('hex'),
      defaultCharset,
    });
    return described.ok ? described : { ok: false, reason: described.failed.message };
  } catch (err) {
    if (err instanceof Part10Error) return { ok: false, reason: describePart10Error(err) };
    throw err;
  }
}

export interface MaintenanceReport {
  blobs: number;
  indexed: number;
  /** key and why it was not indexed */
  skipped: { key: string; reason: string }[];
  /** fsck: index rows whose blob is missing */
  missing: string[];
  /** fsck: blobs no row refers to */
  orphans: string[];
  /** fsck --repair: orphans deleted (not valid instances, or duplicates of indexed ones) */
  deleted: string[];
  /** fsck --repair: index rows removed because their blob is missing (SOP Instance UID and study) */
  removedRows: string[];
  /** fsck: index rows read */
  rows?: number;
  /** reindex on SQLite: the copy of the database taken before */
  copy?: string;
}

const emptyReport = (): MaintenanceReport => ({
  blobs: 0,
  indexed: 0,
  skipped: [],
  missing: [],
  orphans: [],
  deleted: [],
  removedRows: [],
});

async function indexBlob(
  index: Index,
  blobs: BlobStore,
  key: string,
  config: Config,
  report: MaintenanceReport,
) {
  const check = await examineBlob(blobs, key, config.defaultCharset);
  if (!check.ok) {
    report.skipped.push({ key, reason: check.reason });
    return false;
  }
  const put = await index.putInstance(check.record, { overwrite: false });
  if (put.outcome === 'stored') {
    report.indexed++;
    return true;
  }
  report.skipped.push({
    key,
    reason:
      put.outcome === 'identical'
        ? `a second copy of SOP Instance ${check.record.SOPInstanceUID}`
        : `SOP Instance ${check.record.SOPInstanceUID} is already indexed from another blob with different bytes`,
  });
  return false;
}

const REINDEX_PARALLEL = 8;

/** Maintenance that changes the index while a server of this host runs on the same data folder. */
export class ServerRunningError extends Error {}

/**
 * Refuses while a server of this host runs on the folder; else registers this maintenance run (servers
 * then refuse to start until it ends) and returns the function that ends its registration.
 */
async function refuseUnderRunningServer(config: Config, what: string): Promise<() => void> {
  const unregister = await registerProcess(config.dataDir, 'maintenance', { what });
  const pids = await runningProcesses(config.dataDir, 'server');
  if (pids.length === 0) return unregister;
  unregister();
  throw new ServerRunningError(
    `${what}: an archive server is running on ${config.dataDir} (process ${pids.join(', ')}); stop it first` +
      (config.databaseUrl ? ', and every server of other hosts on the same database' : ''),
  );
}

/**
 * Rebuilds the index from the blobs. Only the index tables (studies, series, instances) are emptied and
 * filled again: accounts, API tokens, share links (and the key that signs them), sessions and the audit
 * trail live in the same database and are kept. SQLite: a complete copy of the database is written first
 * (index.sqlite.before-reindex-<time>, VACUUM INTO), so nothing is lost if the result is not what was
 * expected. PostgreSQL (DATABASE_URL): a copy is up to the operator (pg_dump) beforehand. Every server
 * on that index must be stopped.
 */
export async function reindex(
  config: Config,
  onProgress?: (done: number) => void,
): Promise<MaintenanceReport> {
  const unregister = await refuseUnderRunningServer(config, 'reindex');
  try {
    return await rebuild(config, onProgress);
  } finally {
    unregister();
  }
}

async function rebuild(config: Config, onProgress?: (done: number) => void): Promise<MaintenanceReport> {
  const storage = await openStorage(storageOptions(config));
  const report = emptyReport();
  try {
    if (!config.databaseUrl) {
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const copy = path.join(config.dataDir, `index.sqlite.before-reindex-${stamp}`);
      await storage.index.sql().run('VACUUM INTO ?', [copy]);
      report.copy = copy;
    }
    await storage.index.clear();
    // Several blobs at once: reading from an object store is latency-bound, one at a time would crawl.
    const inFlight = new Set<Promise<unknown>>();
    let done = 0;
    try {
      for await (const key of storage.blobs.list()) {
        if (originalOfDerivedKey(key) !== undefined) continue; // a copy, kept with its original's key
        report.blobs++;
        const p = indexBlob(storage.index, storage.blobs, key, config, report).then(() =>
          onProgress?.(++done),
        );
        inFlight.add(p);
        p.finally(() => inFlight.delete(p)).catch(() => {});
        if (inFlight.size >= REINDEX_PARALLEL) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    } catch (err) {
      await Promise.allSettled(inFlight); // nothing still writing when the storage closes
      throw err;
    }
  } finally {
    await storage.close();
  }
  return report;
}

/**
 * Checks that blobs and index agree. With repair: indexes the orphan blobs that are valid instances,
 * deletes the other orphans, and removes the index rows whose blob is missing. Run it with the servers
 * stopped: a blob being stored right now has no index row yet.
 */
export async function fsck(config: Config, opts: { repair: boolean }): Promise<MaintenanceReport> {
  if (!opts.repair) return check(config, opts);
  const unregister = await refuseUnderRunningServer(config, 'fsck --repair');
  try {
    return await check(config, opts);
  } finally {
    unregister();
  }
}

async function check(config: Config, opts: { repair: boolean }): Promise<MaintenanceReport> {
  const storage = await openStorage(storageOptions(config));
  const report = emptyReport();
  try {
    const rows = await storage.index.indexedBlobs();
    report.rows = rows.length;
    const referenced = new Set(rows.map((r) => r.blobKey));
    const seen = new Set<string>();
    const derived: string[] = [];
    for await (const key of storage.blobs.list()) {
      report.blobs++;
      seen.add(key);
      if (originalOfDerivedKey(key) !== undefined) {
        derived.push(key); // judged once every original is known
        continue;
      }
      if (referenced.has(key)) continue;
      report.orphans.push(key);
      if (!opts.repair) continue;
      if (await indexBlob(storage.index, storage.blobs, key, config, report)) referenced.add(key);
      else {
        await storage.blobs.delete(key);
        report.deleted.push(key);
      }
    }
    // Rows whose blob is gone: the instance cannot be served; with repair its row goes too, so queries
    // stop listing what cannot be retrieved (the report names them, for resending from the modality).
    for (const row of rows) {
      if (seen.has(row.blobKey)) continue;
      report.missing.push(row.blobKey);
      if (!opts.repair) continue;
      const { blobKey: _, ...scope } = row;
      await storage.index.deleteInstances(scope);
      referenced.delete(row.blobKey);
      report.removedRows.push(`${row.SOPInstanceUID} (study ${row.StudyInstanceUID})`);
    }
    // A copy is an orphan when its original is not an indexed blob.
    for (const key of derived) {
      const original = originalOfDerivedKey(key) as string;
      if (referenced.has(original) && seen.has(original)) continue;
      report.orphans.push(key);
      if (!opts.repair) continue;
      await storage.blobs.delete(key);
      report.deleted.push(key);
    }
  } finally {
    await storage.close();
  }
  return report;
}

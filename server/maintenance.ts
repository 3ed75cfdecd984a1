/**
 * Maintenance of the archive, run with the server stopped:
 * - reindex: rebuilds the whole index from the blob store alone (the blobs are the truth);
 * - fsck: finds blobs no index row refers to (a crash between writing a blob and indexing it) and
 *   index rows whose blob is gone; with repair, indexes the orphans that are valid instances and
 *   deletes the others.
 */
import { createHash } from 'node:crypto';
import { rename } from 'node:fs/promises';
import path from 'node:path';
import { Part10Error, Part10Scanner } from '../dicomweb/part10';
import type { BlobStore } from '../storage/blob';
import type { Index, InstanceRecord } from '../storage/index';
import { openStorage } from '../storage/open';
import { type Config, storageOptions } from './config';
import { describeInstance, describePart10Error } from './ingest';

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
}

const emptyReport = (): MaintenanceReport => ({
  blobs: 0,
  indexed: 0,
  skipped: [],
  missing: [],
  orphans: [],
  deleted: [],
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

/**
 * Rebuilds the index from the blobs. The old index file is kept beside the new one
 * (index.sqlite.before-reindex-<time>), so nothing is lost if the result is not what was expected.
 */
export async function reindex(
  config: Config,
  onProgress?: (done: number) => void,
): Promise<MaintenanceReport> {
  const file = path.join(config.dataDir, 'index.sqlite');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const suffix of ['', '-wal', '-shm']) {
    await rename(`${file}${suffix}`, `${file}.before-reindex-${stamp}${suffix}`).catch((err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    });
  }
  const storage = await openStorage(storageOptions(config));
  const report = emptyReport();
  try {
    for await (const key of storage.blobs.list()) {
      report.blobs++;
      await indexBlob(storage.index, storage.blobs, key, config, report);
      onProgress?.(report.blobs);
    }
  } finally {
    await storage.close();
  }
  return report;
}

/** Checks that blobs and index agree; with repair, indexes valid orphans and deletes the rest. */
export async function fsck(config: Config, opts: { repair: boolean }): Promise<MaintenanceReport> {
  const storage = await openStorage(storageOptions(config));
  const report = emptyReport();
  try {
    const referenced = new Set(await storage.index.blobKeys());
    const seen = new Set<string>();
    for await (const key of storage.blobs.list()) {
      report.blobs++;
      seen.add(key);
      if (referenced.has(key)) continue;
      report.orphans.push(key);
      if (!opts.repair) continue;
      if (!(await indexBlob(storage.index, storage.blobs, key, config, report))) {
        await storage.blobs.delete(key);
        report.deleted.push(key);
      }
    }
    report.missing = [...referenced].filter((k) => !seen.has(k));
  } finally {
    await storage.close();
  }
  return report;
}

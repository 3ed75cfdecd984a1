/**
 * Storing one instance (the STOW-RS flow of one part), in the order that makes a crash safe:
 *   1. stream the part to a new blob while the Part 10 scanner, the SHA-256 and the size limit watch
 *      the same chunks (no whole-object buffer);
 *   2. once the blob is durable, validate (UIDs, study of the URL) and do the write-time work: DICOM
 *      JSON metadata with BulkDataURIs, frame byte ranges;
 *   3. index the instance in one transaction (for STOW, once the whole request has been received).
 * Any failure after step 1 deletes the new blob, so a refused instance leaves no trace. The index never
 * points at a missing blob; a blob without an index row (crash between 1 and 3) is unreferenced.
 */
import { createHash, randomUUID } from 'node:crypto';
import { type DicomJsonDataset, toDicomJson } from '../dicomweb/dicom-json';
import { frameSpans, numberOfFrames } from '../dicomweb/frames';
import { Part10Error, Part10Scanner, type ScanResult, type ScannedElement } from '../dicomweb/part10';
import {
  DicomwebError,
  type FailedInstanceRef,
  FailureReason,
  type StoredInstanceRef,
} from '../dicomweb/status';
import { isAcceptableUID } from '../dicomweb/uids';
import type { BlobStore } from '../storage/blob';
import { BULKDATA_BASE, type Index, type InstanceRecord } from '../storage/index';
import type { Config } from './config';
import { readFileMeta } from './dimse/part10';
import type { Logger } from './log';
import { storageFault } from './storage-faults';
import { scheduleHtj2kCopy } from './transcode/copies';

export interface IngestContext {
  blobs: BlobStore;
  index: Index;
  config: Config;
  log: Logger;
}

export type IngestResult =
  | {
      ok: true;
      ref: StoredInstanceRef;
      outcome: 'stored' | 'identical' | 'replaced';
      StudyInstanceUID: string;
      SeriesInstanceUID: string;
      /** Blob to delete once the request has finished (the replaced object's bytes). */
      obsoleteBlobKey?: string;
    }
  | { ok: false; failed: FailedInstanceRef };

class InstanceTooLarge extends Error {}

/** A fresh blob key: random, so nothing in a file (UIDs, names) ever becomes a path. */
export function newBlobKey(): string {
  const id = randomUUID();
  // 256 folders: a million instances is about 4,000 entries per folder, which ext4 and XFS index well,
  // and the folders are all created (and their creation made durable) within the first thousand puts.
  return `${id.slice(0, 2)}/${id}.dcm`;
}

/** The value of a top-level UI element, read directly from the scanned bytes (ASCII, padded with NUL). */
function uidOf(scan: ScanResult, tag: string): string | undefined {
  const el: ScannedElement | undefined = scan.dataset.find((e: ScannedElement) => e.tag === tag);
  if (!el?.value) return undefined;
  let s = '';
  for (const b of el.value) s += String.fromCharCode(b);
  return s.replace(/[\0 ]+$/, '').trim();
}

export function instanceURL(root: string, study: string, series: string, sop: string): string {
  return `${root}/studies/${study}/series/${series}/instances/${sop}`;
}

const fail = (
  failureReason: number,
  message: string,
  uids?: { sopClassUID?: string; sopInstanceUID?: string },
) => ({ ok: false, failed: { failureReason, message, ...uids } }) as const;

/**
 * The write-time work on a scanned object: validates its UIDs (and the study of the URL), builds its DICOM
 * JSON and frame spans. Shared by STOW and by `npm run reindex`, which rebuilds the index from the blobs.
 */
export function describeInstance(
  scan: ScanResult,
  opts: {
    blobKey: string;
    size: number;
    sha256: string;
    defaultCharset: string;
    expectedStudyInstanceUID?: string;
    /** DIMSE C-STORE: the Affected SOP Class and Instance UIDs of the command must be the data set's. */
    expectedSOPClassUID?: string;
    expectedSOPInstanceUID?: string;
  },
): { ok: true; record: InstanceRecord } | { ok: false; failed: FailedInstanceRef } {
  const sopClassUID = uidOf(scan, '00080016');
  const sopInstanceUID = uidOf(scan, '00080018');
  const study = uidOf(scan, '0020000D');
  const series = uidOf(scan, '0020000E');
  const uids = { sopClassUID, sopInstanceUID };
  for (const [name, v] of [
    ['SOPClassUID (0008,0016)', sopClassUID],
    ['SOPInstanceUID (0008,0018)', sopInstanceUID],
    ['StudyInstanceUID (0020,000D)', study],
    ['SeriesInstanceUID (0020,000E)', series],
  ] as const) {
    if (!v) return fail(FailureReason.CannotUnderstand, `${name} is missing`, uids);
    if (!isAcceptableUID(v)) {
      return fail(FailureReason.CannotUnderstand, `${name} "${String(v).slice(0, 80)}" is not a valid UID`, {
        sopClassUID: isAcceptableUID(sopClassUID) ? sopClassUID : undefined,
        sopInstanceUID: isAcceptableUID(sopInstanceUID) ? sopInstanceUID : undefined,
      });
    }
  }
  if (!sopClassUID || !sopInstanceUID || !study || !series) throw new Error('unreachable');
  if (opts.expectedStudyInstanceUID && study !== opts.expectedStudyInstanceUID) {
    return fail(
      FailureReason.StudyInstanceUIDMismatch,
      `StudyInstanceUID ${study} does not match the study ${opts.expectedStudyInstanceUID} in the request URL`,
      uids,
    );
  }
  if (opts.expectedSOPClassUID && sopClassUID !== opts.expectedSOPClassUID) {
    return fail(
      FailureReason.DataSetDoesNotMatchSOPClass,
      `SOPClassUID ${sopClassUID} does not match the Affected SOP Class UID ${opts.expectedSOPClassUID}`,
      uids,
    );
  }
  if (opts.expectedSOPInstanceUID && sopInstanceUID !== opts.expectedSOPInstanceUID) {
    return fail(
      FailureReason.CannotUnderstand,
      `SOPInstanceUID ${sopInstanceUID} does not match the Affected SOP Instance UID ${opts.expectedSOPInstanceUID}`,
      uids,
    );
  }
  const base = instanceURL(BULKDATA_BASE, study, series, sopInstanceUID);
  let json: DicomJsonDataset;
  let bulk: Record<string, [number, number]>;
  try {
    ({ json, bulk } = toDicomJson(scan, undefined, {
      defaultCharset: opts.defaultCharset,
      bulkDataUri: (p: string) => `${base}/bulkdata/${p}`,
    }));
  } catch (err) {
    return fail(FailureReason.CannotUnderstand, `cannot read the data set: ${(err as Error).message}`, uids);
  }
  return {
    ok: true,
    record: {
      StudyInstanceUID: study,
      SeriesInstanceUID: series,
      SOPInstanceUID: sopInstanceUID,
      SOPClassUID: sopClassUID,
      TransferSyntaxUID: scan.transferSyntaxUID,
      blobKey: opts.blobKey,
      size: opts.size,
      sha256: opts.sha256,
      numberOfFrames: numberOfFrames(json),
      frames: frameSpans(scan, json),
      bulk,
      metadata: json,
    },
  };
}

export interface IngestOptions {
  expectedStudyInstanceUID?: string;
  expectedSOPClassUID?: string;
  expectedSOPInstanceUID?: string;
  publicRoot: string;
  /**
   * Awaited once the blob is durable and described, before the instance is indexed (STOW: until the
   * request's body has been read to its end, so that nothing of a broken request is ever seen or
   * acknowledged). When it rejects, the instance is not indexed, its new blob is deleted, and the result
   * rejects with that error.
   */
  beforeIndex?: () => Promise<void>;
}

/**
 * Starts storing one instance. `consumed` resolves as soon as the body has been read to its end (or
 * abandoned), so the caller can go on reading the next part of the request while this instance is made
 * durable and indexed; `result` resolves when it is.
 */
export function startIngest(
  ctx: IngestContext,
  body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: IngestOptions,
): { consumed: Promise<void>; result: Promise<IngestResult> } {
  let markConsumed!: () => void;
  const consumed = new Promise<void>((resolve) => {
    markConsumed = resolve;
  });
  // Released once read: an instance waiting for beforeIndex must not keep the request's buffers alive.
  let source: typeof body | undefined = body;
  async function* watched(): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of source as typeof body) yield chunk;
    } finally {
      source = undefined;
      markConsumed();
    }
  }
  const result = ingestInstance(ctx, watched(), opts);
  result.then(markConsumed, markConsumed);
  return { consumed, result };
}

export async function ingestInstance(
  ctx: IngestContext,
  body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: IngestOptions,
): Promise<IngestResult> {
  const received = await receiveInstance(ctx, body, opts);
  if (!received.ok) return received;
  // Only the record waits for beforeIndex (a STOW request's end): not the part's reader, its scanner
  // or the request's buffers, which a request of thousands of instances would otherwise keep alive.
  return indexInstance(ctx, received.record, opts);
}

/** Steps 1 and 2: the blob written and made durable, the instance described; a failure leaves no blob. */
async function receiveInstance(
  ctx: IngestContext,
  body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: IngestOptions,
): Promise<{ ok: true; record: InstanceRecord } | { ok: false; failed: FailedInstanceRef }> {
  const { blobs, config, log } = ctx;
  const scanner = new Part10Scanner();
  const hash = createHash('sha256');
  let scanError: Part10Error | undefined;
  let size = 0;

  // Errors of the request body itself (truncated, wrong boundary, client gone) fail the whole request;
  // any other error of put() is the blob store's (full, unreachable) and fails only this instance.
  let bodyError: unknown;
  async function* read(): AsyncGenerator<Uint8Array> {
    try {
      yield* body;
    } catch (err) {
      bodyError = err;
      throw err;
    }
  }
  async function* watched(): AsyncGenerator<Uint8Array> {
    for await (const chunk of read()) {
      size += chunk.length;
      if (size > config.maxInstanceBytes) throw new InstanceTooLarge();
      hash.update(chunk);
      if (!scanError) {
        try {
          scanner.push(chunk);
        } catch (err) {
          if (!(err instanceof Part10Error)) throw err;
          // Not DICOM (or broken beyond reading): stop writing; the rest of the part is discarded.
          scanError = err;
          throw err;
        }
      }
      yield chunk;
    }
  }

  const blobKey = newBlobKey();
  const source = watched();
  try {
    await blobs.put(blobKey, source);
  } catch (err) {
    // A store that gave up may still be reading (the S3 upload reads ahead): wait until the part's body
    // is released, so the request's next part is never read by two readers at once.
    await source.return(undefined).catch(() => {});
    if (err instanceof Part10Error)
      return fail(part10Failure(err), describePart10Error(err), uidsRead(scanner));
    if (err instanceof InstanceTooLarge) {
      return fail(
        FailureReason.OutOfResources,
        `instance is larger than the limit of ${config.maxInstanceBytes} bytes (PACS_MAX_INSTANCE_BYTES)`,
        uidsRead(scanner),
      );
    }
    // The request body itself failed (truncated, wrong boundary): the whole request fails.
    if (bodyError !== undefined) throw bodyError;
    return storeFailure(log, err, blobKey, uidsRead(scanner));
  }

  let described: ReturnType<typeof describeInstance> | undefined;
  try {
    let scan: ScanResult;
    try {
      scan = scanner.end();
    } catch (err) {
      if (err instanceof Part10Error)
        return fail(part10Failure(err), describePart10Error(err), uidsRead(scanner));
      throw err;
    }
    described = describeInstance(scan, {
      blobKey,
      size,
      sha256: hash.digest('hex'),
      defaultCharset: config.defaultCharset,
      expectedStudyInstanceUID: opts.expectedStudyInstanceUID,
      expectedSOPClassUID: opts.expectedSOPClassUID,
      expectedSOPInstanceUID: opts.expectedSOPInstanceUID,
    });
    return described;
  } catch (err) {
    return storeFailure(log, err, blobKey, uidsRead(scanner));
  } finally {
    if (!described?.ok)
      await blobs.delete(blobKey).catch((err) => log.error('cannot delete blob', { err, blobKey }));
  }
}

/** Step 3: the described instance indexed; when it is not (refused, or a duplicate), its blob is deleted. */
async function indexInstance(
  ctx: IngestContext,
  record: InstanceRecord,
  opts: IngestOptions,
): Promise<IngestResult> {
  const { blobs, index, config, log } = ctx;
  const { blobKey, size } = record;
  let stored = false;
  let abandoned = false;
  let named: { sopClassUID?: string; sopInstanceUID?: string } = {};
  try {
    const { SOPClassUID: sopClassUID, SOPInstanceUID: sopInstanceUID } = record;
    const { StudyInstanceUID: study, SeriesInstanceUID: series } = record;
    const uids = { sopClassUID, sopInstanceUID };
    named = uids;
    if (opts.beforeIndex) {
      // While it waits, the metadata is kept as its JSON text (about a quarter of the memory of the object), for
      // requests of thousands of instances.
      const metadata = JSON.stringify(record.metadata);
      record = { ...record, metadata: {} };
      try {
        await opts.beforeIndex();
      } catch (err) {
        abandoned = true;
        throw err;
      }
      record.metadata = JSON.parse(metadata);
    }
    const put = await index.putInstance(record, { overwrite: config.duplicatePolicy === 'overwrite' });
    const ref: StoredInstanceRef = {
      sopClassUID,
      sopInstanceUID,
      retrieveURL: instanceURL(opts.publicRoot, study, series, sopInstanceUID),
    };
    const done = { ok: true, ref, StudyInstanceUID: study, SeriesInstanceUID: series } as const;
    switch (put.outcome) {
      case 'stored':
        stored = true;
        log.info('instance stored', { sopInstanceUID, study, series, size, blobKey });
        if (config.ingestHtj2k) scheduleHtj2kCopy(ctx, record);
        return { ...done, outcome: 'stored' };
      case 'identical':
        log.info('instance already stored with the same bytes', { sopInstanceUID });
        return { ...done, outcome: 'identical' };
      case 'replaced':
        stored = true;
        log.warn('instance replaced by different bytes', { sopInstanceUID, blobKey });
        if (config.ingestHtj2k) scheduleHtj2kCopy(ctx, record);
        return { ...done, outcome: 'replaced', obsoleteBlobKey: put.previousBlobKey };
      case 'conflict':
        // The same data set behind another File Meta Information (a study imported from a CD, then sent
        // again by the modality through the DICOM gateway, which writes its own header): already stored.
        if (
          put.existing.TransferSyntaxUID === record.TransferSyntaxUID &&
          (await sameDataSet(blobs, put.existing.blobKey, blobKey))
        ) {
          log.info('instance already stored with the same data set', { sopInstanceUID });
          return { ...done, outcome: 'identical' };
        }
        return fail(
          FailureReason.DuplicateSOPInstance,
          `SOP Instance ${sopInstanceUID} is already stored with different content (PACS_DUPLICATE_POLICY=reject)`,
          uids,
        );
    }
    throw new Error('unexpected outcome of the index');
  } catch (err) {
    if (abandoned) throw err;
    if (err instanceof DicomwebError) {
      // The index refused it (a series already filed under another study): this instance fails.
      return fail(FailureReason.ProcessingFailure, err.message, named);
    }
    return storeFailure(log, err, blobKey, named);
  } finally {
    if (!stored)
      await blobs.delete(blobKey).catch((err) => log.error('cannot delete blob', { err, blobKey }));
  }
}

/** SHA-256 of a stored Part 10 object's data set, the File Meta Information left out. */
async function dataSetDigest(blobs: BlobStore, key: string): Promise<string | undefined> {
  const hash = createHash('sha256');
  let head: Buffer | undefined = Buffer.alloc(0);
  const stream = await blobs.get(key);
  try {
    for await (const chunk of stream) {
      if (head === undefined) {
        hash.update(chunk);
        continue;
      }
      head = Buffer.concat([head, chunk]);
      const meta = readFileMeta(head);
      if (meta === undefined) {
        if (head.length > 1024 * 1024) return undefined; // no readable File Meta Information
        continue;
      }
      hash.update(head.subarray(meta.datasetOffset));
      head = undefined;
    }
  } finally {
    stream.destroy();
  }
  return head === undefined ? hash.digest('hex') : undefined;
}

async function sameDataSet(blobs: BlobStore, a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([dataSetDigest(blobs, a), dataSetDigest(blobs, b)]);
  return x !== undefined && x === y;
}

/**
 * An instance the storage could not take: 0xA700 (Out of resources) when the store is full or cannot be
 * reached, which passes and is worth a retry by the sender; 0x0110 (Processing failure) for anything else.
 */
function storeFailure(
  log: Logger,
  err: unknown,
  blobKey: string,
  uids: { sopClassUID?: string; sopInstanceUID?: string },
) {
  const fault = storageFault(err);
  if (fault) {
    log.warn('instance not stored: storage fault', { err, blobKey, fault: fault.kind, ...uids });
    return fail(FailureReason.OutOfResources, `the instance was not stored: ${fault.message}`, uids);
  }
  log.error('ingest failed', { err, blobKey, ...uids });
  return fail(
    FailureReason.ProcessingFailure,
    `the archive could not store this instance: ${(err as Error).message}`,
    uids,
  );
}

/** The instance's UIDs when the scanner has read the whole part (so a failure can name the instance). */
function uidsRead(scanner: Part10Scanner): { sopClassUID?: string; sopInstanceUID?: string } {
  const { sopClassUID, sopInstanceUID } = scanner.uidsSeen();
  return {
    sopClassUID: isAcceptableUID(sopClassUID) ? sopClassUID : undefined,
    sopInstanceUID: isAcceptableUID(sopInstanceUID) ? sopInstanceUID : undefined,
  };
}

/** A size limit is a refusal for resources (0xA700), any other Part 10 error one of understanding. */
function part10Failure(err: Part10Error): number {
  return err.code === 'too-large' ? FailureReason.OutOfResources : FailureReason.CannotUnderstand;
}

export function describePart10Error(err: Part10Error): string {
  const what: Record<Part10Error['code'], string> = {
    'not-dicom': 'not a DICOM Part 10 file (no "DICM" prefix after the 128-byte preamble)',
    'no-meta': 'no File Meta Information (group 0002)',
    'no-transfer-syntax': 'the File Meta Information has no Transfer Syntax UID (0002,0010)',
    truncated: 'the file is truncated',
    malformed: 'the data set is malformed',
    unsupported: 'unsupported encoding',
    'too-large': 'too large',
  };
  return `${what[err.code]}: ${err.message}`;
}

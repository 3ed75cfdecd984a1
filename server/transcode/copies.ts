/**
 * HTJ2K copies of stored pixel data (PACS_INGEST_HTJ2K=true). After an instance is stored, its frames
 * are encoded into HTJ2K Lossless (1.2.840.10008.1.2.4.201) in the worker pool, each checked by decoding
 * it back, and kept in a second blob beside the original, whose bytes are never touched. Frame requests
 * that want HTJ2K (or any syntax, for an uncompressed instance) are then answered from the copy with two
 * small ranged reads and no codec. Nothing in the index changes: the copy's key is derived from the
 * original's blob key, and the copy carries its own frame table.
 *
 * Layout of a copy (`<blob key>.htj2k`), little endian:
 *   0   'PACSHTJ2'          magic (8 bytes)
 *   8   uint32 n            number of frames (the instance's NumberOfFrames)
 *   12  uint32 0            reserved
 *   16  n x (uint64 offset, uint64 length)   where each frame's codestream is, from the blob's start
 *   16 + 16n                the codestreams, frame after frame
 *
 * Copies are made one instance at a time, in the background (after the STOW response): a failure is
 * logged and only means that frames are transcoded on request, as without the policy. The copy is
 * deleted with its instance (deleteStoredBlob), and `npm run fsck` treats a copy whose original is not
 * indexed as an orphan.
 */
import { isNativeTransferSyntax, TransferSyntax } from '../../dicomweb/media-types';
import { describeSyntax, transcodeRefusal } from '../../dicomweb/transfer-syntax';
import { BlobNotFoundError, type BlobStore } from '../../storage/blob';
import type { Index, Span, StoredInstance } from '../../storage/index';
import type { Logger } from '../log';
import { storedFrameReader, storedImageInfo } from './frames';
import { transcoder } from './pool';

export const HTJ2K_LOSSLESS = '1.2.840.10008.1.2.4.201';
const SUFFIX = '.htj2k';
const MAGIC = Buffer.from('PACSHTJ2', 'latin1');
const HEADER = 16;
const ENTRY = 16;
/** Syntaxes already HTJ2K: no copy. */
const HTJ2K_FAMILY = new Set([HTJ2K_LOSSLESS, '1.2.840.10008.1.2.4.202', '1.2.840.10008.1.2.4.203']);
/** Largest pixel data (decoded) copied: the encoded frames are held in memory until the copy is written. */
export const MAX_COPY_PIXEL_BYTES = 256 * 1024 * 1024;
/** Instances waiting for their copy; more are not copied (logged), so a huge import cannot fill memory. */
const MAX_PENDING = 100_000;

/** The key of the HTJ2K copy of the object stored under `blobKey`. */
export function htj2kCopyKey(blobKey: string): string {
  return `${blobKey}${SUFFIX}`;
}

/** The original's key when `key` is a derived copy, else undefined (maintenance tells them apart). */
export function originalOfDerivedKey(key: string): string | undefined {
  return key.endsWith(SUFFIX) ? key.slice(0, -SUFFIX.length) : undefined;
}

/** Deletes a stored object's blob and the copies derived from it. */
export async function deleteStoredBlob(blobs: BlobStore, key: string): Promise<void> {
  await blobs.delete(key);
  await blobs.delete(htj2kCopyKey(key));
}

/**
 * The HTJ2K copy of an instance: where each frame is, or undefined when there is no (usable) copy.
 * One ranged read of the header and frame table.
 */
export async function openHtj2kCopy(
  blobs: BlobStore,
  inst: StoredInstance,
): Promise<{ key: string; frames: Span[] } | undefined> {
  if (inst.numberOfFrames <= 0) return undefined;
  const key = htj2kCopyKey(inst.blobKey);
  let head: Uint8Array;
  try {
    head = await blobs.read(key, { start: 0, end: HEADER + ENTRY * inst.numberOfFrames });
  } catch (err) {
    if (err instanceof BlobNotFoundError || err instanceof RangeError) return undefined;
    throw err;
  }
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (!b.subarray(0, 8).equals(MAGIC) || b.readUInt32LE(8) !== inst.numberOfFrames) return undefined;
  const frames: Span[] = [];
  for (let i = 0; i < inst.numberOfFrames; i++) {
    const at = HEADER + ENTRY * i;
    frames.push([Number(b.readBigUInt64LE(at)), Number(b.readBigUInt64LE(at + 8))]);
  }
  return { key, frames };
}

/** The header and frame table of a copy holding frames of these lengths. */
function copyHeader(lengths: number[]): Buffer {
  const head = Buffer.alloc(HEADER + ENTRY * lengths.length);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(lengths.length, 8);
  let offset = head.length;
  for (const [i, length] of lengths.entries()) {
    head.writeBigUInt64LE(BigInt(offset), HEADER + ENTRY * i);
    head.writeBigUInt64LE(BigInt(length), HEADER + ENTRY * i + 8);
    offset += length;
  }
  return head;
}

export interface CopyContext {
  blobs: BlobStore;
  index: Index;
  log: Logger;
}

type Scope = Pick<StoredInstance, 'StudyInstanceUID' | 'SeriesInstanceUID' | 'SOPInstanceUID'>;

export type CopyOutcome = { made: true; frames: number; bytes: number } | { made: false; reason: string };

/**
 * Makes the HTJ2K copy of the instance stored under `blobKey` (skipped, with the reason, when the
 * instance is gone, has no frames, is stored lossy or in HTJ2K, or cannot be encoded losslessly).
 */
export async function makeHtj2kCopy(ctx: CopyContext, scope: Scope, blobKey: string): Promise<CopyOutcome> {
  const inst = await ctx.index.getInstance(scope);
  if (!inst || inst.blobKey !== blobKey) return { made: false, reason: 'the instance is no longer stored' };
  if (inst.numberOfFrames === 0) return { made: false, reason: 'no pixel data' };
  if (HTJ2K_FAMILY.has(inst.TransferSyntaxUID)) return { made: false, reason: 'already stored in HTJ2K' };
  if (!inst.frames) return { made: false, reason: 'frames are not addressable in the stored bytes' };
  const image = await storedImageInfo(ctx.index, scope);
  const refusal = transcodeRefusal(inst.TransferSyntaxUID, HTJ2K_LOSSLESS, image);
  if (refusal || !image) return { made: false, reason: refusal ?? 'no image' };
  const pixelBytes =
    image.Rows *
    image.Columns *
    image.SamplesPerPixel *
    Math.ceil(image.BitsAllocated / 8) *
    inst.numberOfFrames;
  if (pixelBytes > MAX_COPY_PIXEL_BYTES)
    return { made: false, reason: `pixel data larger than ${MAX_COPY_PIXEL_BYTES >> 20} MB` };

  const from = isNativeTransferSyntax(inst.TransferSyntaxUID)
    ? TransferSyntax.ExplicitVRLittleEndian
    : inst.TransferSyntaxUID;
  const read = storedFrameReader(ctx.blobs, inst, image);
  const encoded: Uint8Array[] = [];
  for (let f = 1; f <= inst.numberOfFrames; f++) {
    const frame = await read(f);
    // Behind every request that waits for a worker: copies use the pool's idle time.
    encoded.push(
      await transcoder().run(
        { op: 'lossless', from, to: HTJ2K_LOSSLESS, image, frame },
        { background: true },
      ),
    );
  }
  const key = htj2kCopyKey(blobKey);
  const header = copyHeader(encoded.map((e) => e.length));
  const { size } = await ctx.blobs.put(
    key,
    (async function* () {
      yield header;
      yield* encoded;
    })(),
  );
  // Deleted or replaced while the copy was made: the deletion may have missed the copy.
  const now = await ctx.index.getInstance(scope).catch(() => undefined);
  if (!now || now.blobKey !== blobKey) {
    await ctx.blobs.delete(key).catch(() => {});
    return { made: false, reason: 'the instance was deleted while its copy was made' };
  }
  return { made: true, frames: encoded.length, bytes: size };
}

interface CopyRequest {
  ctx: CopyContext;
  scope: Scope;
  blobKey: string;
  TransferSyntaxUID: string;
}

const pending: CopyRequest[] = [];
let draining: Promise<void> | undefined;

/** Queues the HTJ2K copy of an instance just stored; it is made after the ones queued before. */
export function scheduleHtj2kCopy(
  ctx: CopyContext,
  rec: Scope & { blobKey: string; TransferSyntaxUID: string },
): void {
  const { StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, blobKey, TransferSyntaxUID } = rec;
  if (pending.length >= MAX_PENDING) {
    ctx.log.warn('HTJ2K copy not made: too many instances waiting for theirs', {
      sopInstanceUID: SOPInstanceUID,
    });
    return;
  }
  pending.push({
    ctx,
    scope: { StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID },
    blobKey,
    TransferSyntaxUID,
  });
  kick();
}

function kick(): void {
  if (draining) return;
  draining = drain().finally(() => {
    draining = undefined;
    if (pending.length > 0) kick(); // queued after the loop's last look
  });
}

async function drain(): Promise<void> {
  for (let r = pending.shift(); r; r = pending.shift()) {
    const t0 = performance.now();
    const sopInstanceUID = r.scope.SOPInstanceUID;
    try {
      const out = await makeHtj2kCopy(r.ctx, r.scope, r.blobKey);
      if (out.made)
        r.ctx.log.debug('HTJ2K copy made', {
          sopInstanceUID,
          frames: out.frames,
          bytes: out.bytes,
          ms: Math.round(performance.now() - t0),
        });
      else
        r.ctx.log.debug('no HTJ2K copy', {
          sopInstanceUID,
          storedIn: describeSyntax(r.TransferSyntaxUID),
          reason: out.reason,
        });
    } catch (err) {
      // The STOW has long been answered: the instance is stored; its frames are transcoded on request.
      r.ctx.log.warn('HTJ2K copy failed', { sopInstanceUID, blobKey: r.blobKey, err });
    }
  }
}

/** Resolves once every queued copy has been made (or has failed): for tests and the benchmark. */
export async function htj2kCopiesDone(): Promise<void> {
  while (draining) await draining;
}

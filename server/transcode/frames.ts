/**
 * Transcoding of stored frames for WADO-RS (frames, rendered, thumbnail): the image attributes from
 * the stored DICOM JSON, and one call to the worker pool per frame, with a clear error for a frame
 * that cannot be decoded.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Response } from 'express';
import { isNativeTransferSyntax, TransferSyntax } from '../../dicomweb/media-types';
import { newBoundary, type OutgoingPart, writeMultipart } from '../../dicomweb/multipart';
import { DicomwebError, notAcceptable } from '../../dicomweb/status';
import {
  describeSyntax,
  type ImageInfo,
  imageInfo,
  SYNTAXES,
  transcodeRefusal,
} from '../../dicomweb/transfer-syntax';
import { readObjectInMemory, swapToLittleEndian } from '../../dicomweb/frames';
import type { BlobStore } from '../../storage/blob';
import { type Index, instanceScope, type StoredInstance } from '../../storage/index';
import type { Palette, RenderParams } from './render';
import { TranscodeError, transcoder } from './pool';

type Scope = { StudyInstanceUID: string; SeriesInstanceUID?: string; SOPInstanceUID?: string };

/** The image attributes of one instance (undefined when it has no image). */
export async function storedImageInfo(index: Index, scope: Scope): Promise<ImageInfo | undefined> {
  const doc = (await index.metadata(scope))[0];
  return doc ? imageInfo(JSON.parse(doc)) : undefined;
}

/** The syntax the worker decodes from: frames of native objects are served little endian already. */
const sourceSyntax = (stored: string) =>
  isNativeTransferSyntax(stored) ? TransferSyntax.ExplicitVRLittleEndian : stored;

function failed(err: unknown, what: string): never {
  if (err instanceof TranscodeError) throw new DicomwebError(500, `${what}: ${err.message}`);
  throw err;
}

/** One frame (as served from the stored object) transcoded from `stored` into `target`. */
export async function transcodeFrame(
  stored: string,
  target: string,
  image: ImageInfo,
  frame: Uint8Array,
  where: string,
): Promise<Uint8Array> {
  const from = sourceSyntax(stored);
  try {
    return await transcoder().run({ op: 'transcode', from, to: target, image, frame });
  } catch (err) {
    failed(err, `${where} cannot be transcoded from ${describeSyntax(stored)} to ${describeSyntax(target)}`);
  }
}

/** One frame rendered as PNG or JPEG. */
export async function renderFrame(
  stored: string,
  image: ImageInfo,
  frame: Uint8Array,
  render: RenderParams,
  where: string,
): Promise<Uint8Array> {
  try {
    return await transcoder().run({ op: 'render', from: sourceSyntax(stored), image, frame, render });
  } catch (err) {
    failed(err, `${where} cannot be rendered from ${describeSyntax(stored)}`);
  }
}

/** A function giving frame f (1-based) of a stored instance as served by WADO-RS (native little endian, or as stored). */
export function storedFrameReader(
  blobs: BlobStore,
  inst: StoredInstance,
  image: ImageInfo,
): (f: number) => Promise<Uint8Array> {
  const spans = inst.frames;
  if (spans) {
    const swap = inst.TransferSyntaxUID === TransferSyntax.ExplicitVRBigEndian;
    return async (f) => {
      const parts = await Promise.all(
        spans[f - 1].map(([offset, length]) =>
          blobs.read(inst.blobKey, { start: offset, end: offset + length }),
        ),
      );
      const buf = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      return swap ? swapToLittleEndian(buf, image.BitsAllocated, image.BitsAllocated > 8 ? 'OW' : 'OB') : buf;
    };
  }
  // Deflated or bit-packed: decode the object once.
  let all: Promise<Uint8Array[]> | undefined;
  return async (f) => {
    all ??= (async () => {
      const chunks: Buffer[] = [];
      for await (const c of await blobs.get(inst.blobKey)) chunks.push(Buffer.from(c));
      return readObjectInMemory(Buffer.concat(chunks)).frames();
    })();
    return (await all)[f - 1];
  };
}

/**
 * WADO-RS retrieve of instances in another transfer syntax than the stored one: each object is read,
 * transcoded in the worker pool, and sent (as one application/dicom, or as parts of a multipart/related).
 * Refused (406) before anything is sent when one of the instances cannot be given in `ts`.
 */
export async function sendTranscodedInstances(
  ctx: { blobs: BlobStore; index: Index },
  res: Response,
  list: StoredInstance[],
  ts: string,
  multipart: boolean,
  root: string,
): Promise<void> {
  const images = new Map<string, ImageInfo | undefined>();
  for (const inst of list) {
    if (inst.TransferSyntaxUID === ts) continue;
    const scope = instanceScope(inst);
    const image = inst.numberOfFrames > 0 ? await storedImageInfo(ctx.index, scope) : undefined;
    images.set(inst.SOPInstanceUID, image);
    const refusal =
      !image && isNativeTransferSyntax(ts) && SYNTAXES[ts]?.encode
        ? undefined
        : transcodeRefusal(inst.TransferSyntaxUID, ts, image);
    if (refusal) throw notAcceptable(`instance ${inst.SOPInstanceUID}: ${refusal}`);
  }
  const objectOf = async (inst: StoredInstance): Promise<Uint8Array> => {
    const chunks: Buffer[] = [];
    for await (const c of await ctx.blobs.get(inst.blobKey)) chunks.push(Buffer.from(c));
    const stored = Buffer.concat(chunks);
    if (inst.TransferSyntaxUID === ts) return stored;
    try {
      const image = images.get(inst.SOPInstanceUID);
      return await transcoder().run({ op: 'instance', to: ts, object: stored, image });
    } catch (err) {
      failed(
        err,
        `instance ${inst.SOPInstanceUID} cannot be transcoded from ${describeSyntax(inst.TransferSyntaxUID)} to ${describeSyntax(ts)}`,
      );
    }
  };
  if (!multipart) {
    const data = await objectOf(list[0]);
    res.status(200).type('application/dicom').setHeader('Content-Length', String(data.length));
    res.end(data);
    return;
  }
  // Objects are transcoded one after the other, and each is sent once ready.
  const first = await objectOf(list[0]);
  const boundary = newBoundary();
  res
    .status(200)
    .setHeader('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`);
  async function* parts(): AsyncGenerator<OutgoingPart> {
    for (const [i, inst] of list.entries()) {
      const body = i === 0 ? first : await objectOf(inst);
      yield {
        contentType: `application/dicom; transfer-syntax=${ts}`,
        headers: {
          'Content-Location': `${root}/studies/${inst.StudyInstanceUID}/series/${inst.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}`,
          'Content-Length': String(body.length),
        },
        body,
      };
    }
  }
  await pipeline(Readable.from(writeMultipart(parts(), boundary), { objectMode: false }), res);
}

/**
 * The lookup tables of a PALETTE COLOR instance, from its DICOM JSON (descriptors, InlineBinary) and
 * its bulk data spans. Undefined for segmented palettes or when the tables cannot be found.
 */
export async function readPalette(
  blobs: BlobStore,
  index: Index,
  inst: StoredInstance,
): Promise<Palette | undefined> {
  const scope = instanceScope(inst);
  const doc = (await index.metadata(scope))[0];
  if (!doc) return undefined;
  const ds = JSON.parse(doc) as Record<string, { Value?: number[]; InlineBinary?: string }>;
  const descriptor = ds['00281101']?.Value;
  if (!descriptor || descriptor.length < 3) return undefined;
  let object: ReturnType<typeof readObjectInMemory> | undefined;
  const table = async (tag: string): Promise<Uint8Array | undefined> => {
    const inline = ds[tag]?.InlineBinary;
    if (inline) return Buffer.from(inline, 'base64');
    const span =
      inst.TransferSyntaxUID === TransferSyntax.DeflatedExplicitVRLittleEndian ? undefined : inst.bulk[tag];
    if (span) return blobs.read(inst.blobKey, { start: span[0], end: span[0] + span[1] });
    if (!object) {
      const chunks: Buffer[] = [];
      for await (const c of await blobs.get(inst.blobKey)) chunks.push(Buffer.from(c));
      object = readObjectInMemory(Buffer.concat(chunks));
    }
    return object.bulk(tag);
  };
  const [red, green, blue] = await Promise.all(['00281201', '00281202', '00281203'].map(table));
  if (!red || !green || !blue) return undefined;
  const first = descriptor[1] < 0 ? descriptor[1] + 65536 : descriptor[1];
  return { first, bits: descriptor[2], red, green, blue };
}

/** The table of a Modality LUT Sequence (first item), from the DICOM JSON or the bulk data. */
export async function readModalityLut(
  blobs: BlobStore,
  index: Index,
  inst: StoredInstance,
): Promise<{ first: number; values: Uint16Array } | undefined> {
  const scope = instanceScope(inst);
  const doc = (await index.metadata(scope))[0];
  type Attr = { Value?: unknown[]; InlineBinary?: string; BulkDataURI?: string };
  const item = (doc ? (JSON.parse(doc) as Record<string, Attr>)['00283000']?.Value?.[0] : undefined) as
    | Record<string, Attr>
    | undefined;
  const descriptor = item?.['00283002']?.Value as number[] | undefined;
  const data = item?.['00283006'];
  if (!descriptor || descriptor.length < 3 || !data) return undefined;
  const fromBytes = (b: Uint8Array) => {
    const copy = new Uint8Array(b);
    return new Uint16Array(copy.buffer, 0, copy.length >> 1);
  };
  let values: Uint16Array | undefined;
  if (data.Value) values = Uint16Array.from(data.Value as number[]);
  else if (data.InlineBinary) values = fromBytes(Buffer.from(data.InlineBinary, 'base64'));
  else {
    const span = inst.bulk['00283000/0/00283006'];
    if (span && inst.TransferSyntaxUID !== TransferSyntax.DeflatedExplicitVRLittleEndian)
      values = fromBytes(await blobs.read(inst.blobKey, { start: span[0], end: span[0] + span[1] }));
  }
  if (!values || values.length === 0) return undefined;
  return { first: descriptor[1], values };
}

/**
 * WADO-RS (PS3.18 10.4): instances as stored (byte for byte), metadata from the index (no object is
 * read), frames and bulk data by byte range (only the requested bytes are read).
 */
import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';
import { readObjectInMemory, swapToLittleEndian } from '../../dicomweb/frames';
import {
  isNativeTransferSyntax,
  type MediaType,
  negotiateFrames,
  negotiateInstances,
  negotiateMetadata,
  TransferSyntax,
} from '../../dicomweb/media-types';
import { newBoundary, type OutgoingPart, writeMultipart } from '../../dicomweb/multipart';
import { badRequest, DicomwebError, notAcceptable, notFound } from '../../dicomweb/status';
import type { BlobStore } from '../../storage/blob';
import {
  BULKDATA_BASE,
  type Index,
  instanceScope,
  type Span,
  type StoredInstance,
} from '../../storage/index';
import { type FrameTranscoding, negotiateFrameSyntax } from '../../dicomweb/transfer-syntax';
import type { Config } from '../config';
import { HTJ2K_LOSSLESS, openHtj2kCopy } from '../transcode/copies';
import { sendTranscodedInstances, storedImageInfo, transcodeFrame } from '../transcode/frames';
import {
  acceptedTypes,
  describeScope,
  instancesInScope,
  parseFrameList,
  publicRoot,
  scopeOf,
  send,
} from './common';

export interface WadoContext {
  blobs: BlobStore;
  index: Index;
  /** PACS_INGEST_HTJ2K: transfer-syntax=* prefers the HTJ2K copy of an uncompressed instance. */
  config?: Pick<Config, 'ingestHtj2k'>;
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/** GET /studies/{s}, /studies/{s}/series/{se}, /studies/{s}/series/{se}/instances/{i} */
export function retrieveInstances(ctx: WadoContext) {
  return async (req: Request, res: Response) => {
    const single = req.params.instance !== undefined;
    const renderings = negotiateInstances(acceptedTypes(req), single);
    const list = await instancesInScope(ctx.index, req);
    for (const [k, rendering] of renderings.entries()) {
      try {
        await sendInstances(ctx, req, res, list, rendering);
        return;
      } catch (err) {
        // A transfer syntax it cannot be transcoded to (406, before anything is sent): the next one.
        const next = k < renderings.length - 1 && !res.headersSent;
        if (!(next && err instanceof DicomwebError && err.status === 406)) throw err;
      }
    }
  };
}

async function sendInstances(
  ctx: WadoContext,
  req: Request,
  res: Response,
  list: StoredInstance[],
  rendering: { multipart: boolean; syntax?: string },
): Promise<void> {
  const ts = rendering.syntax;
  const root = publicRoot(req);
  if (ts && ts !== '*' && list.some((i) => i.TransferSyntaxUID !== ts)) {
    // Transcoded in the worker pool (server/transcode), or 406 with the reason.
    await sendTranscodedInstances(ctx, res, list, ts, rendering.multipart, root);
    return;
  }
  if (!rendering.multipart) {
    res.status(200).type('application/dicom').setHeader('Content-Length', String(list[0].size));
    await send(res, await ctx.blobs.get(list[0].blobKey));
    return;
  }
  // The first object is opened before the answer starts, so a store that cannot be read gets a
  // status (503) rather than a connection cut after 200.
  const firstBody = await ctx.blobs.get(list[0].blobKey);
  const boundary = newBoundary();
  res.status(200).setHeader('Content-Type', multipartType('application/dicom', boundary));
  async function* parts(): AsyncGenerator<OutgoingPart> {
    let body = firstBody;
    try {
      for (const [i, inst] of list.entries()) {
        if (i > 0) body = await ctx.blobs.get(inst.blobKey);
        yield {
          contentType: `application/dicom; transfer-syntax=${inst.TransferSyntaxUID}`,
          headers: {
            'Content-Location': `${root}/studies/${inst.StudyInstanceUID}/series/${inst.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}`,
            'Content-Length': String(inst.size),
          },
          body,
        };
      }
    } finally {
      // A client that disconnects between a part's headers and its body: close the opened object.
      body.destroy();
    }
  }
  try {
    await send(res, writeMultipart(parts(), boundary));
  } finally {
    firstBody.destroy(); // when the answer failed before reaching it
  }
}

/** GET .../metadata at study, series or instance level: stored DICOM JSON strings, concatenated. */
export function retrieveMetadata(ctx: WadoContext) {
  return async (req: Request, res: Response) => {
    const type = negotiateMetadata(acceptedTypes(req));
    const scope = scopeOf(req);
    const docs = await ctx.index.metadata(scope);
    if (docs.length === 0) throw notFound(`${describeScope(scope)} is not in the archive`);
    const root = publicRoot(req);
    const body = `[${docs.join(',')}]`.replaceAll(BULKDATA_BASE, root);
    res.status(200).type(`${type}; charset=utf-8`).send(body);
  };
}

async function readSpans(blobs: BlobStore, key: string, spans: Span[]): Promise<Uint8Array> {
  const parts = await Promise.all(
    spans.map(([offset, length]) => blobs.read(key, { start: offset, end: offset + length })),
  );
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

/**
 * Content-Type of a multipart/related answer whose parts are of partType (PS3.18 8.7.3.5): the parts'
 * media type without its parameters, and the transfer syntax when it is not the default one.
 */
function multipartType(partType: string, boundary: string, transferSyntax?: string): string {
  const type = `multipart/related; type="${partType.split(';')[0]}"; boundary=${boundary}`;
  return transferSyntax ? `${type}; transfer-syntax=${transferSyntax}` : type;
}

/** A small multipart body (frames, bulk data) written at once, with a Content-Length, without copying the data. */
async function sendParts(res: Response, parts: OutgoingPart[], boundary: string): Promise<void> {
  const chunks: Uint8Array[] = [];
  for await (const c of writeMultipart(parts, boundary)) chunks.push(c);
  res.setHeader('Content-Length', String(chunks.reduce((n, c) => n + c.length, 0)));
  res.cork();
  for (const c of chunks) res.write(c);
  res.uncork();
  res.end();
}

/** BitsAllocated and the VR of PixelData: what byte-swapping a big-endian frame needs. */
function pixelEncoding(metadataDoc: string | undefined): { bits: number; vr: string } {
  if (!metadataDoc) return { bits: 16, vr: 'OW' };
  const ds = JSON.parse(metadataDoc) as Record<string, { vr?: string; Value?: number[] }>;
  return { bits: ds['00280100']?.Value?.[0] ?? 16, vr: ds['7FE00010']?.vr ?? 'OW' };
}

/**
 * The frames of an instance in the transfer syntax negotiated from `accept` (PS3.18 8.7.3): as stored,
 * from its HTJ2K copy (PACS_INGEST_HTJ2K) when HTJ2K is chosen and the copy exists, or transcoded in
 * the worker pool. 406 with the reasons when no accepted form can be given. Frames and pixel bulk data.
 */
async function negotiatedFrames(
  ctx: WadoContext,
  req: Request,
  inst: StoredInstance,
  accept: MediaType[],
  opts: { preferCopy?: boolean } = {},
): Promise<{ rendering: FrameTranscoding; bytesOf: (frame: number) => Promise<Uint8Array> }> {
  const stored = inst.TransferSyntaxUID;
  // transfer-syntax=* of an uncompressed instance: its HTJ2K copy (a fifth to a half of the bytes), if any.
  const preferred =
    opts.preferCopy !== false && ctx.config?.ingestHtj2k && isNativeTransferSyntax(stored)
      ? HTJ2K_LOSSLESS
      : undefined;
  let rendering = negotiateFrameSyntax(accept, stored, null, { preferred });
  if (rendering.transcode && rendering.syntax === HTJ2K_LOSSLESS) {
    const copy = await openHtj2kCopy(ctx.blobs, inst);
    if (copy) {
      const spans = copy.frames;
      return { rendering, bytesOf: (f) => readSpans(ctx.blobs, copy.key, [spans[f - 1]]) };
    }
  }
  if (rendering.preferred) rendering = negotiateFrameSyntax(accept, stored, null);
  const image = rendering.needsImage ? await storedImageInfo(ctx.index, scopeOf(req)) : undefined;
  if (rendering.needsImage) rendering = negotiateFrameSyntax(accept, stored, image);
  const asStored = await storedFrames(ctx, req, inst);
  if (!(rendering.transcode && image)) return { rendering, bytesOf: asStored };
  // Decoded / re-encoded in the worker pool (server/transcode), frame by frame.
  const target = rendering.syntax;
  const where = `frame %d of instance ${inst.SOPInstanceUID}`;
  return {
    rendering,
    bytesOf: async (f) =>
      transcodeFrame(stored, target, image, await asStored(f), where.replace('%d', String(f))),
  };
}

/** Frame f (1-based) as stored: native pixels little endian, compressed ones as their fragments. */
async function storedFrames(
  ctx: WadoContext,
  req: Request,
  inst: StoredInstance,
): Promise<(frame: number) => Promise<Uint8Array>> {
  if (inst.frames) {
    const spans = inst.frames;
    const swap = inst.TransferSyntaxUID === TransferSyntax.ExplicitVRBigEndian;
    const enc = swap ? pixelEncoding((await ctx.index.metadata(scopeOf(req)))[0]) : undefined;
    return async (f) => {
      const buf = await readSpans(ctx.blobs, inst.blobKey, spans[f - 1]);
      return enc ? swapToLittleEndian(buf, enc.bits, enc.vr) : buf;
    };
  }
  // Frames not addressable in the stored bytes (deflated, bit-packed): decode the object once.
  let all: Promise<Uint8Array[]> | undefined;
  return async (f) => {
    all ??= (async () => readObjectInMemory(await readAll(await ctx.blobs.get(inst.blobKey))).frames())();
    const frames = await all;
    const frame = frames[f - 1];
    // Attributes that disagree with the pixel data (NumberOfFrames, Rows, BitsAllocated): stored as sent.
    if (frame === undefined)
      throw notFound(
        `frame ${f} is not in the pixel data of instance ${inst.SOPInstanceUID}: its attributes say ${inst.numberOfFrames} frames, its pixel data holds ${frames.length}`,
      );
    return frame;
  };
}

/**
 * A single-part body with its length: the client sees the size up front and reads no chunked framing
 * (the compression middleware's pass-through would otherwise send it chunked).
 */
function sendSinglePart(res: Response, contentType: string, data: Uint8Array): void {
  res.status(200).setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', String(data.length));
  res.end(data);
}

/** GET .../instances/{i}/frames/{list} */
export function retrieveFrames(ctx: WadoContext) {
  return async (req: Request, res: Response) => {
    const [inst] = await instancesInScope(ctx.index, req);
    const accept = acceptedTypes(req);
    const { rendering, bytesOf } = await negotiatedFrames(ctx, req, inst, accept);
    if (inst.numberOfFrames === 0) throw notFound(`instance ${inst.SOPInstanceUID} has no pixel data`);
    const frames = parseFrameList(req.params.frames as string, inst.numberOfFrames);
    if (!rendering.multipart && frames.length > 1) {
      throw notAcceptable('several frames can only be sent as multipart/related');
    }
    // Re-opening a study on a slow link: the browser revalidates and gets 304 instead of the pixels.
    // The tag follows the stored bytes (an overwritten instance gets a new one), so nothing stale is shown.
    const etag = `"${inst.sha256.slice(0, 32)}-${createHash('sha1')
      .update(`${frames.join(',')};${rendering.multipart};${rendering.partType}`)
      .digest('hex')
      .slice(0, 12)}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'private, no-cache');
    if (req.headers['if-none-match'] === etag) {
      res.status(304).end();
      return;
    }

    if (!rendering.multipart) {
      sendSinglePart(res, rendering.partType, await bytesOf(frames[0]));
      return;
    }
    const boundary = newBoundary();
    res
      .status(200)
      .setHeader(
        'Content-Type',
        multipartType(
          rendering.partType,
          boundary,
          rendering.syntax === TransferSyntax.ExplicitVRLittleEndian ? undefined : rendering.syntax,
        ),
      );
    const base = `${publicRoot(req)}/studies/${inst.StudyInstanceUID}/series/${inst.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}`;
    const part = (f: number, body: Uint8Array): OutgoingPart => ({
      contentType: rendering.partType,
      headers: { 'Content-Location': `${base}/frames/${f}`, 'Content-Length': String(body.length) },
      body,
    });
    // Frame 1 is read (or transcoded) before the answer starts, so a failure gets a status.
    const first = part(frames[0], await bytesOf(frames[0]));
    if (frames.length === 1) {
      await sendParts(res, [first], boundary);
      return;
    }
    // Several frames: one at a time, each read when the client has taken the one before (a list of
    // every frame of a large multi-frame instance never sits in memory; a client that leaves stops it).
    async function* parts(): AsyncGenerator<OutgoingPart> {
      yield first;
      for (const f of frames.slice(1)) yield part(f, await bytesOf(f));
    }
    await send(res, writeMultipart(parts(), boundary));
  };
}

/**
 * The value of a bulk data element of an instance ("7FE00010", "00540016/0/00181078"), little endian;
 * undefined when the instance has none there. Only its bytes are read, unless the object is deflated.
 */
export async function readBulk(
  ctx: Pick<WadoContext, 'blobs' | 'index'>,
  inst: StoredInstance,
  path: string,
): Promise<Uint8Array | undefined> {
  // Offsets of a deflated object refer to the inflated data set, not to the stored bytes.
  const deflated = inst.TransferSyntaxUID === TransferSyntax.DeflatedExplicitVRLittleEndian;
  const span = deflated ? undefined : inst.bulk[path];
  if (span) {
    const data = await readSpans(ctx.blobs, inst.blobKey, [span]);
    if (inst.TransferSyntaxUID !== TransferSyntax.ExplicitVRBigEndian) return data;
    const doc = (await ctx.index.metadata(instanceScope(inst)))[0];
    const vr = (JSON.parse(doc) as Record<string, { vr?: string }>)[path.split('/').pop() as string]?.vr;
    const bits = vr === 'OL' || vr === 'OF' ? 32 : vr === 'OD' || vr === 'OV' ? 64 : vr === 'OW' ? 16 : 8;
    return bits > 8 ? swapToLittleEndian(data, bits, vr) : data;
  }
  if (deflated || !inst.frames)
    return readObjectInMemory(await readAll(await ctx.blobs.get(inst.blobKey))).bulk(path);
  return undefined;
}

/** GET .../instances/{i}/bulkdata/{path}: a BulkDataURI from the metadata. */
export function retrieveBulkdata(ctx: WadoContext) {
  return async (req: Request, res: Response) => {
    const [inst] = await instancesInScope(ctx.index, req);
    const raw = req.params.path as unknown;
    const path = (Array.isArray(raw) ? raw.join('/') : String(raw)).toUpperCase();
    if (!/^[0-9A-F]{8}(\/[0-9]+\/[0-9A-F]{8})*$/.test(path))
      throw badRequest(`"${path}" is not a bulk data path`);
    const accept = acceptedTypes(req);
    let rendering: { multipart: boolean; partType: string };
    if (path === '7FE00010' && inst.numberOfFrames > 0) {
      // Pixel data: the same negotiation (transcoding, HTJ2K copy) as frames.
      let pixels = await negotiatedFrames(ctx, req, inst, accept);
      // '*' in one single part: the stored value (a compressed copy of several frames needs several parts).
      if (pixels.rendering.preferred && !pixels.rendering.multipart && inst.numberOfFrames > 1)
        pixels = await negotiatedFrames(ctx, req, inst, accept, { preferCopy: false });
      if (pixels.rendering.transcode) {
        await sendTranscodedPixelData(res, inst, pixels.rendering, pixels.bytesOf);
        return;
      }
      rendering = pixels.rendering; // as stored: the stored value, read below
    } else {
      rendering = negotiateFrames(
        accept,
        path === '7FE00010' ? inst.TransferSyntaxUID : TransferSyntax.ExplicitVRLittleEndian,
      );
    }
    const data = await readBulk(ctx, inst, path);
    if (!data) throw notFound(`instance ${inst.SOPInstanceUID} has no bulk data at ${path}`);
    if (!rendering.multipart) {
      sendSinglePart(res, rendering.partType, data);
      return;
    }
    const boundary = newBoundary();
    res.status(200).setHeader('Content-Type', multipartType(rendering.partType, boundary));
    const location = `${publicRoot(req)}/studies/${inst.StudyInstanceUID}/series/${inst.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}/bulkdata/${path}`;
    const headers = { 'Content-Location': location, 'Content-Length': String(data.length) };
    await sendParts(res, [{ contentType: rendering.partType, headers, body: data }], boundary);
  };
}

/**
 * Pixel Data bulk data in another transfer syntax than the stored one: decoded, the frames one after
 * the other (the value of native Pixel Data); compressed, one part per frame (as for frames), so a
 * multi-frame image needs a multipart/related Accept. Frame 1 is transcoded before the answer starts
 * (a frame that cannot be decoded gets a status), the others while it is sent, one at a time.
 */
async function sendTranscodedPixelData(
  res: Response,
  inst: StoredInstance,
  rendering: FrameTranscoding,
  bytesOf: (frame: number) => Promise<Uint8Array>,
): Promise<void> {
  const count = inst.numberOfFrames;
  const native = isNativeTransferSyntax(rendering.syntax);
  if (!native && !rendering.multipart && count > 1)
    throw notAcceptable(
      `the pixel data of this instance (${count} frames) in ${rendering.syntax} can only be sent as multipart/related, one frame per part`,
    );
  const first = await bytesOf(1);
  async function* frames(): AsyncGenerator<Uint8Array> {
    yield first;
    for (let f = 2; f <= count; f++) yield await bytesOf(f);
  }
  if (!rendering.multipart) {
    res.status(200).setHeader('Content-Type', rendering.partType);
    await send(res, frames());
    return;
  }
  const boundary = newBoundary();
  res
    .status(200)
    .setHeader(
      'Content-Type',
      multipartType(rendering.partType, boundary, native ? undefined : rendering.syntax),
    );
  async function* parts(): AsyncGenerator<OutgoingPart> {
    if (native) {
      yield { contentType: rendering.partType, body: frames() };
      return;
    }
    for await (const body of frames()) yield { contentType: rendering.partType, body };
  }
  await send(res, writeMultipart(parts(), boundary));
}

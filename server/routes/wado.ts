/**
 * WADO-RS (PS3.18 10.4): instances as stored (byte for byte), metadata from the index (no object is
 * read), frames and bulk data by byte range (only the requested bytes are read).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import { readObjectInMemory, swapToLittleEndian } from '../../dicomweb/frames';
import {
  negotiateFrames,
  negotiateInstances,
  negotiateMetadata,
  parseAccept,
  TransferSyntax,
} from '../../dicomweb/media-types';
import { newBoundary, type OutgoingPart, writeMultipart } from '../../dicomweb/multipart';
import { badRequest, notAcceptable, notFound } from '../../dicomweb/status';
import type { BlobStore } from '../../storage/blob';
import { BULKDATA_BASE, type Index, type Span } from '../../storage/index';
import { negotiateFrameSyntax } from '../../dicomweb/transfer-syntax';
import { sendTranscodedInstances, storedImageInfo, transcodeFrame } from '../transcode/frames';
import { describeScope, instancesInScope, publicRoot, scopeOf } from './common';

export interface WadoContext {
  blobs: BlobStore;
  index: Index;
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function send(res: Response, body: AsyncIterable<Uint8Array>): Promise<void> {
  await pipeline(Readable.from(body, { objectMode: false }), res);
}

/** GET /studies/{s}, /studies/{s}/series/{se}, /studies/{s}/series/{se}/instances/{i} */
export function retrieveInstances(ctx: WadoContext) {
  return async (req: Request, res: Response) => {
    const single = req.params.instance !== undefined;
    const rendering = negotiateInstances(parseAccept(req.headers.accept), single);
    const list = await instancesInScope(ctx.index, req);
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
    res
      .status(200)
      .setHeader('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`);
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
  };
}

/** GET .../metadata at study, series or instance level: stored DICOM JSON strings, concatenated. */
export function retrieveMetadata(ctx: WadoContext) {
  return async (req: Request, res: Response) => {
    const type = negotiateMetadata(parseAccept(req.headers.accept));
    const scope = scopeOf(req);
    const docs = await ctx.index.metadata(scope);
    if (docs.length === 0) throw notFound(`${describeScope(scope)} is not in the archive`);
    const root = publicRoot(req);
    const body = `[${docs.join(',')}]`.replaceAll(BULKDATA_BASE, root);
    res.status(200).type(`${type}; charset=utf-8`).send(body);
  };
}

function parseFrameList(text: string, count: number): number[] {
  const frames = text.split(',').map((s) => {
    if (!/^[1-9][0-9]{0,8}$/.test(s.trim()))
      throw badRequest(`"${s}" is not a frame number (frames are numbered from 1)`);
    return Number(s);
  });
  for (const f of frames) {
    if (f > count)
      throw notFound(`frame ${f} does not exist: the instance has ${count} frame${count === 1 ? '' : 's'}`);
  }
  return frames;
}

async function readSpans(blobs: BlobStore, key: string, spans: Span[]): Promise<Uint8Array> {
  const parts = await Promise.all(
    spans.map(([offset, length]) => blobs.read(key, { start: offset, end: offset + length })),
  );
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
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

/** GET .../instances/{i}/frames/{list} */
export function retrieveFrames(ctx: WadoContext) {
  return async (req: Request, res: Response) => {
    const [inst] = await instancesInScope(ctx.index, req);
    const accept = parseAccept(req.headers.accept);
    let rendering = negotiateFrameSyntax(accept, inst.TransferSyntaxUID, null);
    const image = rendering.needsImage ? await storedImageInfo(ctx.index, scopeOf(req)) : undefined;
    if (rendering.needsImage) rendering = negotiateFrameSyntax(accept, inst.TransferSyntaxUID, image);
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

    let bytesOf: (frame: number) => Promise<Uint8Array>;
    if (inst.frames) {
      const spans = inst.frames;
      const swap = inst.TransferSyntaxUID === TransferSyntax.ExplicitVRBigEndian;
      const enc = swap ? pixelEncoding((await ctx.index.metadata(scopeOf(req)))[0]) : undefined;
      bytesOf = async (f) => {
        const buf = await readSpans(ctx.blobs, inst.blobKey, spans[f - 1]);
        return enc ? swapToLittleEndian(buf, enc.bits, enc.vr) : buf;
      };
    } else {
      // Frames not addressable in the stored bytes (deflated, bit-packed): decode the object once.
      const object = readObjectInMemory(await readAll(await ctx.blobs.get(inst.blobKey)));
      const all = object.frames();
      bytesOf = async (f) => all[f - 1];
    }

    if (rendering.transcode && image) {
      // Decoded / re-encoded in the worker pool (server/transcode), frame by frame.
      const asStored = bytesOf;
      const where = `frame %d of instance ${inst.SOPInstanceUID}`;
      bytesOf = async (f) =>
        transcodeFrame(
          inst.TransferSyntaxUID,
          rendering.syntax,
          image,
          await asStored(f),
          where.replace('%d', String(f)),
        );
    }

    if (!rendering.multipart) {
      const data = await bytesOf(frames[0]);
      res.status(200).setHeader('Content-Type', rendering.partType);
      res.end(data);
      return;
    }
    const boundary = newBoundary();
    const partBase = rendering.partType.split(';')[0];
    res
      .status(200)
      .setHeader(
        'Content-Type',
        `multipart/related; type="${partBase}"; boundary=${boundary}` +
          (rendering.syntax === TransferSyntax.ExplicitVRLittleEndian
            ? ''
            : `; transfer-syntax=${rendering.syntax}`),
      );
    const base = `${publicRoot(req)}/studies/${inst.StudyInstanceUID}/series/${inst.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}`;
    const parts = await Promise.all(
      frames.map(async (f) => ({
        contentType: rendering.partType,
        headers: { 'Content-Location': `${base}/frames/${f}` },
        body: await bytesOf(f),
      })),
    );
    await sendParts(res, parts, boundary);
  };
}

/** GET .../instances/{i}/bulkdata/{path}: a BulkDataURI from the metadata. */
export function retrieveBulkdata(ctx: WadoContext) {
  return async (req: Request, res: Response) => {
    const [inst] = await instancesInScope(ctx.index, req);
    const raw = req.params.path as unknown;
    const path = (Array.isArray(raw) ? raw.join('/') : String(raw)).toUpperCase();
    if (!/^[0-9A-F]{8}(\/[0-9]+\/[0-9A-F]{8})*$/.test(path))
      throw badRequest(`"${path}" is not a bulk data path`);
    const isPixels = path === '7FE00010';
    const stored = isPixels ? inst.TransferSyntaxUID : TransferSyntax.ExplicitVRLittleEndian;
    const rendering = negotiateFrames(parseAccept(req.headers.accept), stored);
    let data: Uint8Array | undefined;
    // Offsets of a deflated object refer to the inflated data set, not to the stored bytes.
    const deflated = inst.TransferSyntaxUID === TransferSyntax.DeflatedExplicitVRLittleEndian;
    const span = deflated ? undefined : inst.bulk[path];
    if (span) {
      data = await readSpans(ctx.blobs, inst.blobKey, [span]);
      if (inst.TransferSyntaxUID === TransferSyntax.ExplicitVRBigEndian) {
        const doc = (await ctx.index.metadata(scopeOf(req)))[0];
        const vr = (JSON.parse(doc) as Record<string, { vr?: string }>)[path.split('/').pop() as string]?.vr;
        const bits = vr === 'OL' || vr === 'OF' ? 32 : vr === 'OD' || vr === 'OV' ? 64 : vr === 'OW' ? 16 : 8;
        if (bits > 8) data = swapToLittleEndian(data, bits, vr);
      }
    } else if (deflated || !inst.frames) {
      data = readObjectInMemory(await readAll(await ctx.blobs.get(inst.blobKey))).bulk(path);
    }
    if (!data) throw notFound(`instance ${inst.SOPInstanceUID} has no bulk data at ${path}`);
    if (!rendering.multipart) {
      res.status(200).setHeader('Content-Type', rendering.partType);
      res.end(data);
      return;
    }
    const boundary = newBoundary();
    res
      .status(200)
      .setHeader(
        'Content-Type',
        `multipart/related; type="${rendering.partType.split(';')[0]}"; boundary=${boundary}`,
      );
    await sendParts(res, [{ contentType: rendering.partType, body: data }], boundary);
  };
}

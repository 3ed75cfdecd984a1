/**
 * WADO-RS rendered resources (PS3.18 10.4.1.1.3) and thumbnails (10.4.1.1.4): study, series, instance
 * and frames as image/jpeg or image/png, with the query parameters window, viewport and quality
 * (PS3.18 8.3.5.1). Decoding and rendering run in the worker pool (server/transcode).
 */
import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';
import type { MediaType } from '../../dicomweb/media-types';
import { newBoundary, type OutgoingPart, writeMultipart } from '../../dicomweb/multipart';
import { badRequest, DicomwebError, notAcceptable, notFound } from '../../dicomweb/status';
import type { ImageInfo } from '../../dicomweb/transfer-syntax';
import type { BlobStore } from '../../storage/blob';
import { type Index, instanceScope, type StoredInstance } from '../../storage/index';
import { readBulk } from './wado';
import {
  readModalityLut,
  readPalette,
  renderFrame,
  storedFrameReader,
  storedImageInfo,
} from '../transcode/frames';
import type { RenderParams } from '../transcode/render';
import {
  acceptedTypes,
  describeScope,
  instancesInScope,
  parseFrameList,
  publicRoot,
  queryParams,
  scopeOf,
  send,
} from './common';

export interface RenderedContext {
  blobs: BlobStore;
  index: Index;
}

/** Encapsulated PDF Storage (PS3.4 B.5). */
const ENCAPSULATED_PDF = '1.2.840.10008.5.1.4.1.1.104.1';

/**
 * The PDF of an Encapsulated PDF instance, when the client accepts application/pdf (or anything): the
 * Encapsulated Document (0042,0011) without its padding byte (Encapsulated Document Length, 0042,0015).
 */
async function renderedDocument(
  ctx: RenderedContext,
  inst: StoredInstance,
  accept: MediaType[],
): Promise<Uint8Array | undefined> {
  if (inst.SOPClassUID !== ENCAPSULATED_PDF) return undefined;
  if (!accept.some((m) => ['application/pdf', 'application/*', '*/*'].includes(m.type))) return undefined;
  const [doc] = await ctx.index.metadata(instanceScope(inst));
  const json = JSON.parse(doc) as Record<string, { Value?: unknown[]; InlineBinary?: string }>;
  // A small document is in the metadata itself (InlineBinary); a larger one is read from the object.
  const inline = json['00420011']?.InlineBinary;
  const data = inline !== undefined ? Buffer.from(inline, 'base64') : await readBulk(ctx, inst, '00420011');
  if (!data) throw notFound(`instance ${inst.SOPInstanceUID} holds no document`);
  const length = Number(json['00420015']?.Value?.[0]);
  return Number.isInteger(length) && length > 0 && length <= data.length ? data.subarray(0, length) : data;
}

/** Size of a thumbnail when the request has no viewport. */
const THUMBNAIL_SIZE = 128;

type Format = RenderParams['format'];

function negotiateRendered(accept: MediaType[]): { format: Format; multipart: boolean } {
  for (const m of accept) {
    let type = m.type;
    let multipart = false;
    if (type === 'multipart/related') {
      multipart = true;
      type = (m.params.type ?? 'image/jpeg').toLowerCase();
    }
    if (type === 'image/png') return { format: 'image/png', multipart };
    if (type === 'image/jpeg' || type === 'image/*' || type === '*/*')
      return { format: 'image/jpeg', multipart };
  }
  throw notAcceptable('rendered images are available as image/jpeg or image/png');
}

const NUMBER = /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/;

/** The PS3.18 8.3.5.1 query parameters of a rendered request. */
export function renderParams(query: URLSearchParams, format: Format, thumbnail: boolean): RenderParams {
  const params: RenderParams = { format, quality: 90 };
  const quality = query.get('quality');
  if (quality !== null) {
    if (!/^[0-9]{1,3}$/.test(quality) || Number(quality) < 1 || Number(quality) > 100)
      throw badRequest(`quality "${quality}" is not an integer from 1 to 100`);
    params.quality = Number(quality);
  }
  const window = query.get('window');
  if (window !== null && !thumbnail) {
    const [c, w, fn = 'linear', ...rest] = window.split(',');
    const f = fn.toLowerCase();
    if (!NUMBER.test(c ?? '') || !NUMBER.test(w ?? '') || Number(w) <= 0 || rest.length > 0)
      throw badRequest(`window "${window}" is not center,width[,function] with a positive width`);
    if (f !== 'linear' && f !== 'linear-exact' && f !== 'sigmoid')
      throw badRequest(`window function "${fn}" is not linear, linear-exact or sigmoid`);
    params.window = { center: Number(c), width: Number(w), fn: f };
  }
  const viewport = query.get('viewport');
  if (viewport !== null) {
    const v = viewport.split(',');
    const ok =
      (v.length === 2 || v.length === 6) &&
      v.every((x, i) => (i < 2 ? /^[1-9][0-9]{0,4}$/.test(x) : x === '' || /^[0-9]{1,5}$/.test(x)));
    if (!ok) throw badRequest(`viewport "${viewport}" is not vw,vh or vw,vh,sx,sy,sw,sh (positive integers)`);
    const n = v.map((x) => (x === '' ? undefined : Number(x)));
    if ((n[0] as number) > 8192 || (n[1] as number) > 8192) throw badRequest('viewport is at most 8192x8192');
    params.viewport = { vw: n[0] as number, vh: n[1] as number, sx: n[2], sy: n[3], sw: n[4], sh: n[5] };
  } else if (thumbnail) {
    params.viewport = { vw: THUMBNAIL_SIZE, vh: THUMBNAIL_SIZE };
  }
  return params;
}

async function renderOne(
  ctx: RenderedContext,
  inst: StoredInstance,
  frame: number,
  params: RenderParams,
): Promise<Uint8Array> {
  const scope = instanceScope(inst);
  const image: ImageInfo | undefined =
    inst.numberOfFrames > 0 ? await storedImageInfo(ctx.index, scope) : undefined;
  if (!image) throw notAcceptable(`instance ${inst.SOPInstanceUID} has no image to render`);
  if (frame > inst.numberOfFrames)
    throw notFound(`frame ${frame} does not exist: the instance has ${inst.numberOfFrames} frame(s)`);
  const bytes = await storedFrameReader(ctx.blobs, inst, image)(frame);
  if (image.modalityLutSequence && image.SamplesPerPixel === 1) {
    const lut = await readModalityLut(ctx.blobs, ctx.index, inst);
    // A descriptor read as US for signed pixels: its first value is a signed one (PS3.3 C.11.1.1).
    if (lut && image.PixelRepresentation === 1 && lut.first >= 32768) lut.first -= 65536;
    params = { ...params, modalityLut: lut };
  }
  if (image.PhotometricInterpretation === 'PALETTE COLOR') {
    params = { ...params, palette: await readPalette(ctx.blobs, ctx.index, inst) };
  }
  return renderFrame(
    inst.TransferSyntaxUID,
    image,
    bytes,
    params,
    `frame ${frame} of instance ${inst.SOPInstanceUID}`,
  );
}

function sendImage(res: Response, format: Format, data: Uint8Array) {
  res.status(200).setHeader('Content-Type', format);
  res.setHeader('Content-Length', String(data.length));
  res.end(data);
}

/**
 * A multipart/related of rendered images, one part per image: the first is rendered before the answer
 * starts (a failure gets a status), the others one at a time as the client takes them, so a study of
 * hundreds of images never sits in memory and a client that leaves stops the rendering.
 */
async function sendMultipart(
  res: Response,
  format: Format,
  images: { render: () => Promise<Uint8Array>; location: string }[],
) {
  const boundary = newBoundary();
  const part = async (i: (typeof images)[number]): Promise<OutgoingPart> => {
    const body = await i.render();
    return {
      contentType: format,
      headers: { 'Content-Location': i.location, 'Content-Length': String(body.length) },
      body,
    };
  };
  const first = await part(images[0]);
  async function* parts(): AsyncGenerator<OutgoingPart> {
    yield first;
    for (const i of images.slice(1)) yield part(i);
  }
  res.status(200).setHeader('Content-Type', `multipart/related; type="${format}"; boundary=${boundary}`);
  await send(res, writeMultipart(parts(), boundary));
}

/**
 * GET .../rendered for a study, series, instance or frames. A study or series is a multipart/related of
 * the first frame of each of its images; one instance is its first frame; frames are one image each.
 */
export function retrieveRendered(ctx: RenderedContext) {
  return async (req: Request, res: Response) => {
    const query = queryParams(req);
    const accept = acceptedTypes(req, query);
    const list = await instancesInScope(ctx.index, req);
    // An Encapsulated PDF (a scanned request form, a report) is rendered as itself (PS3.18 10.4.1.1.3).
    if (req.params.instance !== undefined && req.params.frames === undefined) {
      const pdf = await renderedDocument(ctx, list[0], accept);
      if (pdf) {
        res.status(200).type('application/pdf').setHeader('Content-Length', String(pdf.length));
        res.setHeader('Content-Disposition', `inline; filename="${list[0].SOPInstanceUID}.pdf"`);
        res.end(pdf);
        return;
      }
    }
    const { format, multipart } = negotiateRendered(accept);
    const params = renderParams(query, format, false);
    const root = publicRoot(req);
    const at = (inst: StoredInstance) =>
      `${root}/studies/${inst.StudyInstanceUID}/series/${inst.SeriesInstanceUID}/instances/${inst.SOPInstanceUID}`;
    if (req.params.frames !== undefined) {
      const inst = list[0];
      if (inst.numberOfFrames === 0)
        throw notAcceptable(`instance ${inst.SOPInstanceUID} has no image to render`);
      const frames = parseFrameList(req.params.frames as string, inst.numberOfFrames);
      if (frames.length > 1 || multipart) {
        await sendMultipart(
          res,
          format,
          frames.map((f) => ({
            render: () => renderOne(ctx, inst, f, params),
            location: `${at(inst)}/frames/${f}/rendered`,
          })),
        );
        return;
      }
      sendImage(res, format, await renderOne(ctx, inst, frames[0], params));
      return;
    }
    if (req.params.instance !== undefined && !multipart) {
      sendImage(res, format, await renderOne(ctx, list[0], 1, params));
      return;
    }
    const images = list.filter((i) => i.numberOfFrames > 0);
    if (images.length === 0) throw notAcceptable(`${describeScope(scopeOf(req))} has no image to render`);
    await sendMultipart(
      res,
      format,
      images.map((inst) => ({
        render: () => renderOne(ctx, inst, 1, params),
        location: `${at(inst)}/rendered`,
      })),
    );
  };
}

/** Images a study or series thumbnail may be made from before its request fails. */
const THUMBNAIL_TRIES = 4;

/**
 * The images a study or series thumbnail is made from, best first: the middle image (in the index's
 * order) of the first series with images, then that series' other images nearest to its middle, then
 * the middle image of each other series; at most THUMBNAIL_TRIES.
 */
export function thumbnailCandidates(images: StoredInstance[]): StoredInstance[] {
  const bySeries = new Map<string, StoredInstance[]>();
  for (const i of images) {
    const list = bySeries.get(i.SeriesInstanceUID);
    if (list) list.push(i);
    else bySeries.set(i.SeriesInstanceUID, [i]);
  }
  const [first, ...others] = [...bySeries.values()];
  if (!first) return [];
  const mid = Math.floor((first.length - 1) / 2);
  const near = first
    .map((inst, i) => ({ inst, d: Math.abs(i - mid) + (i < mid ? 0.5 : 0) }))
    .sort((a, b) => a.d - b.d)
    .map((x) => x.inst);
  const rest = others.map((s) => s[Math.floor((s.length - 1) / 2)]);
  return [...near.slice(0, THUMBNAIL_TRIES - Math.min(rest.length, 1)), ...rest].slice(0, THUMBNAIL_TRIES);
}

/** Changed when the thumbnails made from the same image and parameters change (their ETag with it). */
const THUMBNAIL_RENDERING = 1;

/**
 * GET .../thumbnail: one small image. A study or series is shown by a representative image
 * (thumbnailCandidates): when that one cannot be decoded (a corrupt frame, a syntax without a
 * decoder), the next candidate is tried, so one broken image does not leave the study without a
 * thumbnail. An instance or frame thumbnail is of that image only.
 */
export function retrieveThumbnail(ctx: RenderedContext) {
  return async (req: Request, res: Response) => {
    const query = queryParams(req);
    const { format } = negotiateRendered(acceptedTypes(req, query));
    const params = renderParams(query, format, true);
    const list = (await instancesInScope(ctx.index, req)).filter((i) => i.numberOfFrames > 0);
    if (list.length === 0) throw notAcceptable(`${describeScope(scopeOf(req))} has no image for a thumbnail`);
    let frame = 1;
    let candidates = [list[0]];
    if (req.params.frames !== undefined)
      frame = parseFrameList(req.params.frames as string, list[0].numberOfFrames)[0];
    else if (req.params.instance === undefined) candidates = thumbnailCandidates(list);
    // Revalidated on every use (no-cache), answered 304 without rendering when nothing changed: cheap on
    // a slow link, and a revoked link or ended session is refused at once instead of shown from cache.
    // The tag follows the stored bytes of every candidate, the frame and the rendering parameters.
    const etag = `"t${THUMBNAIL_RENDERING}-${createHash('sha1')
      .update(JSON.stringify([candidates.map((i) => i.sha256), frame, params]))
      .digest('hex')
      .slice(0, 32)}"`;
    const cacheHeaders = () => {
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', 'private, no-cache');
    };
    if (req.headers['if-none-match'] === etag) {
      cacheHeaders();
      res.status(304).end();
      return;
    }
    let firstError: unknown;
    for (const inst of candidates) {
      let image: Uint8Array;
      try {
        image = await renderOne(ctx, inst, frame, params);
      } catch (err) {
        // A frame that cannot be decoded or rendered (500, 406): the next candidate. Anything else
        // (the store unreachable, a bad request) fails the request at once.
        if (!(err instanceof DicomwebError) || (err.status !== 500 && err.status !== 406)) throw err;
        firstError ??= err;
        continue;
      }
      cacheHeaders();
      sendImage(res, format, image);
      return;
    }
    throw firstError;
  };
}

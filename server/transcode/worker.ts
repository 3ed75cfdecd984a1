/**
 * A transcoding worker thread: decodes, encodes and renders frames on request from pool.ts, so the
 * event loop of the server never runs a codec.
 */
import { parentPort } from 'node:worker_threads';
import type { ImageInfo } from '../../dicomweb/transfer-syntax';
import { decodeFrame, encodeFrame, initCodecs, type Pixels } from './codecs';
import { encodeJpegExtended12, needsDcmtk, transcodeInstanceJpegExtended12 } from './dcmtk';
import { transcodeInstance } from './instance';
import { applyViewport, encodePng, type RenderParams, toRaster } from './render';

export type Job =
  | { op: 'transcode'; from: string; to: string; image: ImageInfo; frame: Uint8Array; quality?: number }
  /** Re-encoded into a lossless syntax, then decoded back and compared: refused unless bit for bit. */
  | { op: 'lossless'; from: string; to: string; image: ImageInfo; frame: Uint8Array }
  | { op: 'render'; from: string; image: ImageInfo; frame: Uint8Array; render: RenderParams }
  /** `image`: the instance's image attributes, when it has pixel data (some encoders depend on them). */
  | { op: 'instance'; to: string; object: Uint8Array; image?: ImageInfo };

export type JobResult =
  | { id: number; ok: true; data: Uint8Array }
  | { id: number; ok: false; message: string };

const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';

async function run(job: Job): Promise<Uint8Array> {
  await initCodecs();
  if (job.op === 'instance')
    return needsDcmtk(job.to, job.image)
      ? transcodeInstanceJpegExtended12(job.object)
      : transcodeInstance(job.object, job.to);
  const px = decodeFrame(job.from, job.image, job.frame);
  if (job.op === 'transcode')
    return needsDcmtk(job.to, job.image)
      ? encodeJpegExtended12(job.image, px, job.quality)
      : encodeFrame(job.to, job.image, px, { quality: job.quality });
  if (job.op === 'lossless') return verifiedLossless(job.to, job.image, px);
  const raster = applyViewport(toRaster(job.image, px, job.render), job.render.viewport);
  if (job.render.format === 'image/png') return encodePng(raster);
  const image: ImageInfo = {
    ...job.image,
    Rows: raster.height,
    Columns: raster.width,
    BitsAllocated: 8,
    BitsStored: 8,
    PixelRepresentation: 0,
    SamplesPerPixel: raster.channels,
    PlanarConfiguration: 0,
    PhotometricInterpretation: raster.channels === 1 ? 'MONOCHROME2' : 'RGB',
  };
  return encodeFrame(
    JPEG_BASELINE,
    image,
    { data: raster.data, photometric: image.PhotometricInterpretation, planar: 0 },
    { quality: job.render.quality },
  );
}

/** `px` encoded into the lossless syntax `to`, checked by decoding it back. */
function verifiedLossless(to: string, image: ImageInfo, px: Pixels): Uint8Array {
  const encoded = encodeFrame(to, image, px);
  const back = decodeFrame(to, { ...image, PhotometricInterpretation: px.photometric }, encoded);
  const n = back.data.length;
  const same =
    back.planar === px.planar &&
    px.data.length >= n &&
    Buffer.compare(
      Buffer.from(back.data.buffer, back.data.byteOffset, n),
      Buffer.from(px.data.buffer, px.data.byteOffset, n),
    ) === 0;
  if (!same) throw new Error(`the ${to} encoding of this frame does not decode to the same pixels`);
  return encoded;
}

parentPort?.on('message', async (msg: Job & { id: number }) => {
  let reply: JobResult;
  try {
    const data = await run(msg);
    // The codecs' buffers may be views into WebAssembly memory: copy before transferring.
    const copy = new Uint8Array(data);
    reply = { id: msg.id, ok: true, data: copy };
    parentPort?.postMessage(reply, [copy.buffer]);
  } catch (err) {
    reply = { id: msg.id, ok: false, message: err instanceof Error ? err.message : String(err) };
    parentPort?.postMessage(reply);
  }
});

/**
 * Cornerstone3D set-up in one place: init order, the wadors loader, request-pool limits, the memory
 * bound of the image cache, the tools, and the in-flight request registry used to cancel frames of
 * series that are no longer shown.
 */
import {
  cache,
  Enums as CoreEnums,
  getShouldUseCPURendering,
  imageLoadPoolManager,
  imageRetrievalPoolManager,
  init as coreInit,
  metaData,
  registerImageLoader,
  type Types,
  utilities as coreUtils,
} from '@cornerstonejs/core';
import { init as loaderInit, wadors } from '@cornerstonejs/dicom-image-loader';
import {
  AngleTool,
  addTool,
  EllipticalROITool,
  init as toolsInit,
  LengthTool,
  PanTool,
  RectangleROITool,
  StackScrollTool,
  WindowLevelTool,
  ZoomTool,
} from '@cornerstonejs/tools';
import { env } from '../config/env';
import { formatNumber, translate } from '../i18n';
import { ImageDecodeError } from './describe-error';
import { type DicomJson, num, str, validSpacing } from './dicom-json';
import { frameFromResponse } from './frame-bytes';
import { type DecodedFrameReply, fetchFrameOffThread, warmFrameFetcher } from './frame-fetcher';
import { imageFromDecoded, nativeFrameParams } from './native-image';
import { isNativeSyntax } from './transfer-policy';
import { acceptForFrame, frameCacheMode, noteStoredSyntax } from './transfer-settings';
import { jpegLsPlanar } from '../../../dicomweb/codestream';
import { expandYbrFull422, ybrFull422Length } from './frame-fixes';
import { slots } from './slots';
import { StackProbeTool } from './stack-probe-tool';

const inflight = new Map<XMLHttpRequest, string>();
let initialised = false;

// Loading knobs, overridable for measurements with ?tune=workers,retrieve,load,fetch|xhr,contexts
// (e.g. ?tune=2,4,12,xhr,7).
const tuning = (() => {
  const cores = navigator.hardwareConcurrency || 2;
  const t = { workers: Math.max(1, Math.min(4, cores - 1)), retrieve: 4, load: 8, fetch: true, contexts: 1 };
  const q = new URLSearchParams(window.location.search).get('tune');
  if (q) {
    const [w, r, l, f, c] = q.split(',');
    if (Number(w) > 0) t.workers = Number(w);
    if (Number(r) > 0) t.retrieve = Number(r);
    if (Number(l) > 0) t.load = Number(l);
    if (f) t.fetch = f === 'fetch';
    if (Number(c) > 0) t.contexts = Number(c);
  }
  return t;
})();

/** Frames fetched before Cornerstone was ready (the first slice of a study), handed to the wadors loader. */
const prefetchedFrames = new Map<string, { pixelData: Uint8Array; transferSyntaxUid: string }>();

function prefetchedFrameProvider(type: string, imageId: string): unknown {
  if (type !== 'compressedFrameData' || prefetchedFrames.size === 0) return undefined;
  const frame = prefetchedFrames.get(imageId);
  if (frame) prefetchedFrames.delete(imageId);
  return frame;
}

/** Frames the frame-fetch worker has decoded (native greyscale), for the next load of their image id. */
const decodedFrames = new Map<string, DecodedFrameReply & { fetched: number }>();

/**
 * The `wadors:` image loader: an image whose frame the worker has decoded is made from those pixels
 * (native-image.ts); anything else goes to dicom-image-loader's own loader, as before. An image with
 * no pixels is a failed load (see notEmpty).
 */
function loadWadors(imageId: string, options: Record<string, any> = {}) {
  const load = loadWadorsImage(imageId, options);
  return {
    promise: load.promise.then(notEmpty).catch((err: unknown) => {
      if (err !== null && (typeof err === 'object' || typeof err === 'function')) reportedLoadErrors.add(err);
      throw err;
    }),
    cancelFn: load.cancelFn,
  };
}

/**
 * Failures of our image loader. Each is reported by Cornerstone's IMAGE_LOAD_FAILED event, which the
 * viewport shows as its message; but Cornerstone's image cache also rethrows it from a promise no one
 * handles (`putImageLoadObject`, called without a catch by `loadAndCacheImage`), which the browser
 * would log as an uncaught error each time a broken slice is shown. Those, and only those, are marked
 * handled (see initImageLoader).
 */
const reportedLoadErrors = new WeakSet<object>();

/**
 * The image, or an ImageDecodeError when it has no pixels. The loader's codecs report a frame they
 * cannot read (a corrupt JPEG 2000 header, say) on the console and hand back a 0×0 image: shown, it
 * is black, and it leaves the viewport's camera and VOI unusable for the slices that follow.
 */
function notEmpty(image: Types.IImage): Types.IImage {
  const width = image?.width ?? 0;
  const height = image?.height ?? 0;
  const length = width > 0 && height > 0 ? (image.getPixelData?.()?.length ?? 0) : 0;
  if (length < width * height || length === 0) {
    throw new ImageDecodeError(
      `${image?.imageId ?? 'image'}: decoded to ${width}×${height}, ${length} values`,
    );
  }
  return image;
}

function loadWadorsImage(imageId: string, options: Record<string, any>) {
  const decoded = decodedFrames.get(imageId);
  if (decoded) {
    decodedFrames.delete(imageId);
    // The worker decoded with the loader's defaults: no target buffer, modality LUT applied.
    if (!options.targetBuffer && options.preScale?.enabled !== false) {
      try {
        const image = imageFromDecoded(
          imageId,
          decoded.decoded,
          decoded.transferSyntaxUid,
          performance.now() - decoded.fetched,
        );
        return { promise: Promise.resolve(image), cancelFn: undefined };
      } catch {
        /* metadata it did not expect: the loader requests and decodes the frame itself */
      }
    }
  }
  return wadors.loadImage(imageId, options as any) as {
    promise: Promise<Types.IImage>;
    cancelFn?: () => void;
  };
}

const inflightFetches = new Map<{ abort(): void }, string>();

/** Prefetching fetches frames itself (see fetchFrame) rather than through the loader's XHR. */
export const prefetchWithFetch = (): boolean => tuning.fetch;

/**
 * Fetches the frame of a `wadors:` image id in a worker and hands it to the loader, so that the next
 * loadAndCacheImage decodes it without a request of its own. Prefetching uses this: receiving a
 * body is a large part of the page's main-thread work per image, and the loader's XHR does it there.
 * Resolves false when the request was aborted (its series is no longer shown).
 */
export async function fetchFrame(imageId: string): Promise<boolean> {
  const url = imageId.replace(/^wadors:/, '');
  // At most `retrieve` frames on the wire, as the loader's retrieval pool would allow: HTTP/1.1 has six
  // connections per host, and the slice the user scrolls to must find one free.
  const aborted = await fetchSlots.take(url);
  if (aborted) return false;
  // Native greyscale frames are decoded in the worker too (native-frame.ts).
  const started = performance.now();
  const request = fetchFrameOffThread(url, acceptForFrame(url), {
    decode: nativeFrameParams(imageId),
    cache: frameCacheMode(),
  });
  inflightFetches.set(request, url);
  try {
    const frame = await request.promise;
    if ('decoded' in frame) decodedFrames.set(imageId, { ...frame, fetched: started });
    else providePrefetchedFrame(imageId, frame.pixelData, frame.transferSyntaxUid);
    return true;
  } catch (e) {
    // Aborted, or failed: the loader's own request will report the error.
    return !(e as { aborted?: boolean }).aborted;
  } finally {
    inflightFetches.delete(request);
    fetchSlots.give();
  }
}

/** At most `retrieve` frames on the wire (see fetchFrame). */
const fetchSlots = slots(tuning.retrieve);

/** Forgets bytes handed over for imageId that the loader did not use (it was loaded another way). */
export function dropPrefetchedFrame(imageId: string): void {
  prefetchedFrames.delete(imageId);
  decodedFrames.delete(imageId);
}

/** The loader will decode these bytes for imageId instead of requesting them (once). */
export function providePrefetchedFrame(
  imageId: string,
  pixelData: Uint8Array,
  transferSyntaxUid: string,
): void {
  prefetchedFrames.set(imageId, {
    pixelData: fixedFrame(imageId, pixelData, transferSyntaxUid),
    transferSyntaxUid,
  });
}

/** What the loader needs changed for the frames of an instance (see frame-fixes.ts). */
interface InstanceFixes {
  /** the metadata given to the loader (its attributes are changed in place: the loader shares them) */
  json: DicomJson;
  rows: number;
  columns: number;
  /** stored as native YBR_FULL_422: frames are expanded to YBR_FULL */
  ybr422: boolean;
  /** colour: JPEG-LS frames may come plane by plane */
  color: boolean;
  /** PlanarConfiguration of the instance */
  planar: number;
}
const fixes = new Map<string, InstanceFixes>();
const instanceUrl = (url: string) => url.replace(/^wadors:/, '').replace(/\/frames\/[^/]*$/, '');
const JPEG_LS = new Set(['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81']);

/** A frame as the loader can decode it right (see frame-fixes.ts); its metadata adjusted to it. */
function fixedFrame(url: string, pixelData: Uint8Array, transferSyntaxUid: string): Uint8Array {
  const f = fixes.get(instanceUrl(url));
  if (!f) return pixelData;
  if (f.ybr422 && isNativeSyntax(transferSyntaxUid)) {
    return pixelData.length === ybrFull422Length(f.rows, f.columns)
      ? expandYbrFull422(pixelData, f.rows, f.columns)
      : pixelData;
  }
  if (f.color) {
    const planar = JPEG_LS.has(transferSyntaxUid) ? jpegLsPlanar(pixelData) : undefined;
    (f.json['00280006'].Value as number[])[0] = planar === undefined ? f.planar : planar ? 1 : 0;
  }
  return pixelData;
}

/** A frame response of the loader's own request, its frame fixed for the loader (see fixedFrame). */
function fixedResponse(xhr: XMLHttpRequest): ArrayBuffer {
  const body = xhr.response as ArrayBuffer;
  const url = inflight.get(xhr) ?? xhr.responseURL;
  if (!fixes.has(instanceUrl(url))) return body;
  const bytes = new Uint8Array(body);
  const frame = frameFromResponse(xhr.getResponseHeader('Content-Type') ?? '', bytes);
  if (!frame) return body;
  const fixed = fixedFrame(url, frame.pixelData, frame.transferSyntaxUid);
  if (fixed === frame.pixelData) return body;
  // The same response with the frame's bytes replaced (a multipart body keeps its part headers and boundary).
  const start = frame.pixelData.byteOffset;
  const end = start + frame.pixelData.length;
  const out = new Uint8Array(bytes.length - frame.pixelData.length + fixed.length);
  out.set(bytes.subarray(0, start));
  out.set(fixed, start);
  out.set(bytes.subarray(end), start + fixed.length);
  return out.buffer;
}

function round(n: number, digits = 1): string {
  return formatNumber(n, digits);
}

// Measurement labels go through the translation layer and use the locale's decimal separator.
function lengthLines(data: any, targetId: string): string[] | undefined {
  const s = data.cachedStats?.[targetId];
  if (!s || s.length === undefined || Number.isNaN(s.length)) return undefined;
  return [
    s.unit === 'mm'
      ? translate('measure.length', { value: round(s.length, 1) })
      : `${round(s.length)} ${s.unit}`,
  ];
}

function angleLines(data: any, targetId: string): string[] | undefined {
  const s = data.cachedStats?.[targetId];
  if (!s || s.angle === undefined || Number.isNaN(s.angle)) return undefined;
  return [`${round(s.angle, 1)}°`];
}

function roiLines(data: any, targetId: string): string[] | undefined {
  const s = data.cachedStats?.[targetId];
  if (!s || s.area === undefined) return undefined;
  const unit = s.modalityUnit ?? '';
  const lines = [translate('measure.area', { value: round(s.area, 1) })];
  if (s.mean !== undefined && !Number.isNaN(s.mean)) {
    lines.push(translate('measure.mean', { value: round(s.mean, 1), unit }));
    lines.push(translate('measure.sd', { value: round(s.stdDev, 1), unit }));
  }
  return lines;
}

function probeLines(data: any, targetId: string): string[] | undefined {
  const s = data.cachedStats?.[targetId];
  if (!s || s.value === undefined || !s.index) return undefined;
  const value = Array.isArray(s.value)
    ? s.value.map((v: number) => round(v, 0)).join(', ')
    : round(s.value, 0);
  return [
    `(${s.index[0]}, ${s.index[1]})`,
    `${value} ${Array.isArray(s.modalityUnit) ? '' : (s.modalityUnit ?? '')}`,
  ];
}

let loaderInitialised = false;

/**
 * The image loader's part of the set-up: light (no WebGL, no worker started) and needed before any
 * instance metadata is given to the loader (its init empties the loader's metadata). Run when the
 * first metadata arrives, which may be before the rest of Cornerstone starts (see initCornerstone).
 */
export function initImageLoader(): void {
  if (loaderInitialised) return;
  loaderInitialised = true;
  metaData.addProvider(prefetchedFrameProvider, 10_000);
  loaderInit({
    maxWebWorkers: tuning.workers,
    open(xhr, url) {
      xhr.open('get', url, true);
      inflight.set(xhr, url);
      xhr.addEventListener('loadend', () => inflight.delete(xhr));
    },
    // The transfer syntax the transfer policy chooses for this frame (transfer-settings.ts), as one
    // single-part body when the server offers it: the loader then has no multipart body to scan for
    // its closing boundary on the main thread (a 512 KB scan per CT slice). The loader decodes the
    // syntax named by the response's (or its part's) Content-Type.
    beforeSend: async (_xhr, imageId) => ({ Accept: acceptForFrame(imageId) }),
    beforeProcessing: async (xhr) => fixedResponse(xhr),
  });
  registerImageLoader('wadors', loadWadors as any);
  cache.setMaxCacheSize(env.cacheBytes);
  window.addEventListener('unhandledrejection', (e) => {
    if (e.reason !== null && typeof e.reason === 'object' && reportedLoadErrors.has(e.reason))
      e.preventDefault();
  });
}

/**
 * The rest: rendering (a WebGL context to probe the GPU), the tools, the decode and frame-fetch
 * workers, the request pools. About half a second of the main thread on a PC without a GPU.
 */
export function initCornerstone(): void {
  if (initialised) return;
  initialised = true;
  // One WebGL context for all viewports (at most four): Cornerstone's default pool of seven costs
  // about 90 ms of start-up on a PC without a GPU (software WebGL) and memory for each.
  coreInit({ rendering: { webGlContextCount: tuning.contexts } } as Parameters<typeof coreInit>[0]);
  initImageLoader();
  toolsInit();
  if (tuning.fetch) warmFrameFetcher();
  // HTTP/1.1 gives six connections per host: prefetching keeps some free for the slice in view and
  // metadata. The load pool (retrieve + decode) admits more than the retrieval pool so that decoding
  // one batch overlaps the transfer of the next.
  imageRetrievalPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Interaction, 6);
  imageRetrievalPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Prefetch, tuning.retrieve);
  imageRetrievalPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Thumbnail, 2);
  imageLoadPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Prefetch, tuning.load);
  imageLoadPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Thumbnail, 2);

  addTool(WindowLevelTool);
  addTool(PanTool);
  addTool(ZoomTool);
  addTool(StackScrollTool);
  addTool(LengthTool);
  addTool(AngleTool);
  addTool(RectangleROITool);
  addTool(EllipticalROITool);
  // Under Cornerstone's name 'Probe': it reads the image shown (stack-probe-tool.ts).
  addTool(StackProbeTool);
}

export const toolConfigurations: Record<string, Record<string, unknown>> = {
  [LengthTool.toolName]: { getTextLines: lengthLines },
  [AngleTool.toolName]: { getTextLines: angleLines },
  [RectangleROITool.toolName]: { getTextLines: roiLines },
  [EllipticalROITool.toolName]: { getTextLines: roiLines },
  [StackProbeTool.toolName]: { getTextLines: probeLines },
};

/** PixelSpacing and ImagerPixelSpacing: each a row and a column spacing in mm. */
const SPACING_TAGS = ['00280030', '00181164'];

/**
 * Makes cornerstone's metadata providers answer for a `wadors:` image id from DICOM JSON, and notes
 * the instance's stored transfer syntax for the transfer policy.
 */
export function addInstanceMetadata(imageId: string, instance: DicomJson): void {
  initImageLoader();
  noteStoredSyntax(imageId, instance);
  const json: DicomJson = { ...instance };
  const stored = str(instance, '00083002');
  const photometric = str(instance, '00280004');
  const ybr422 =
    photometric === 'YBR_FULL_422' &&
    num(instance, '00280100') === 8 &&
    Boolean(stored) &&
    isNativeSyntax(stored);
  // Its frames reach the loader expanded to YBR_FULL (see frame-fixes.ts).
  if (ybr422) json['00280004'] = { vr: 'CS', Value: ['YBR_FULL'] };
  const color = (num(instance, '00280002') ?? 1) > 1;
  const planar = num(instance, '00280006') ?? 0;
  if (color) json['00280006'] = { vr: 'US', Value: [planar] };
  if (ybr422 || color) {
    fixes.set(instanceUrl(imageId), {
      json,
      rows: num(instance, '00280010') ?? 0,
      columns: num(instance, '00280011') ?? 0,
      ybr422,
      color,
      planar,
    });
  }
  // A pixel spacing that is zero, negative or not a number (RG1 of NEMA WG04 has PixelSpacing 0\\0)
  // collapses the image's world extent, and with it the camera: the image is drawn black and its zoom
  // is not a number. It is treated as absent: one unit per pixel, and lengths are given in pixels.
  for (const tag of SPACING_TAGS) {
    if (json[tag] && !validSpacing(json[tag].Value)) delete json[tag];
  }
  // dicom-image-loader 5.14 fails on an image with neither Modality nor ImageOrientationPatient (it
  // calls Modality.includes): an empty Modality lets it place the image.
  if (!instance['00080060']?.Value?.length) json['00080060'] = { vr: 'CS', Value: [''] };
  wadors.metaDataManager.add(imageId, json as any);
}

/** Drops queued loads that match and aborts in-flight frame requests whose URL contains urlPart. */
export function cancelRequests(match: (details: Record<string, unknown>) => boolean, urlPart: string): void {
  // Only the outer (load) pool is filtered: a request dropped from the retrieval pool would leave its
  // image pending in the cache for ever. The load pool's concurrency keeps the retrieval queue short.
  const keep = (r: { additionalDetails: Record<string, unknown> }) => !match(r.additionalDetails ?? {});
  imageLoadPoolManager.filterRequests(keep as any);
  for (const [xhr, url] of inflight) {
    if (url.includes(urlPart)) xhr.abort();
  }
  for (const [controller, url] of inflightFetches) {
    if (url.includes(urlPart)) controller.abort();
  }
  fetchSlots.cancelWaiting((url) => url.includes(urlPart));
}

export function usesCpuRendering(): boolean {
  return getShouldUseCPURendering();
}

export { coreUtils };

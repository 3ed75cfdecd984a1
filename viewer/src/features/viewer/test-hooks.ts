/**
 * A small read-only window into the viewer for the browser tests and the benchmark
 * (`window.__pacs`): what is shown, where an image pixel lands on screen, the measurements.
 */
import { cache, Enums, getShouldUseCPURendering, type Types, utilities } from '@cornerstonejs/core';
import { annotation } from '@cornerstonejs/tools';
import { wadors } from '@cornerstonejs/dicom-image-loader';
import { workerTransfers } from '../../lib/frame-fetcher';
import { madeFromDecoded } from '../../lib/native-image';
import { getTransferState, type TransferState } from '../../lib/transfer-settings';
import { firstViewsDrawn, placement } from './first-view';
import { getStackViewport, MEASUREMENT_TOOLS } from './viewer-session';

export interface PacsTestHooks {
  cpuRendering(): boolean;
  viewport(id: string):
    | {
        imageIndex: number;
        count: number;
        imageId: string;
        voiRange?: { lower: number; upper: number };
        invert?: boolean;
        loaded: number;
        rendered: boolean;
        /** IMAGE_RENDERED events of this viewport so far: the canvas has been drawn at least once. */
        renders: number;
      }
    | undefined;
  /**
   * The first view of viewport id (first-view.ts): when it was drawn (performance.now()) and whether it
   * is still shown (Cornerstone has not drawn yet). Undefined when none was drawn.
   */
  firstView(id: string): { drawnAt: number; imageId: string; shown: boolean } | undefined;
  /** Displayed RGBA at image pixels (col,row) of viewport id's first view, while it is drawn. */
  sampleFirstView(id: string, points: [number, number][]): number[][] | undefined;
  /** Page (CSS) coordinates of the centre of image pixel (col,row) in viewport id. */
  imageToPage(id: string, col: number, row: number): [number, number] | undefined;
  /** Displayed RGBA at image pixels (col,row) of viewport id, read back from the canvas. */
  sample(id: string, points: [number, number][]): number[][] | undefined;
  /** Modality values (e.g. HU) at image pixels, from the decoded image. */
  modalityValues(id: string, points: [number, number][]): number[] | undefined;
  measurements(): { toolName: string; stats: Record<string, unknown> }[];
  /**
   * The decoded image shown in viewport id: the transfer syntax it arrived in, and its pixels in base64
   * (colour: 8-bit samples as decoded, `components` per pixel; grey: modality values as float32 LE).
   */
  image(id: string):
    | {
        imageId: string;
        transferSyntaxUID: string;
        width: number;
        height: number;
        color: boolean;
        components: number;
        data: string;
      }
    | undefined;
  /** The transfer setting, what auto measured, and what frames are asked for. */
  transfer(): TransferState;
  /**
   * Bytes received so far (Resource Timing's transferSize: headers and encoded body) and requests, by the
   * page (its document and every resource) and by the frame-fetch worker: the benchmark's byte count
   * where no DevTools client watches the network.
   */
  transferred(): { bytes: number; requests: number };
  /**
   * The cached image of imageId beside what dicom-image-loader's own loader makes of the same frame
   * (requested again, not cached), each summarised; undefined when imageId is not cached.
   */
  compareWithLoader(imageId: string): Promise<{ cached: ImageSummary; loader: ImageSummary } | undefined>;
}

export interface ImageSummary {
  /** made from pixels the frame-fetch worker decoded (native-image.ts), not by the loader */
  decodedInWorker: boolean;
  dataType: string;
  length: number;
  min: number;
  max: number;
  slope: number;
  intercept: number;
  windowCenter: unknown;
  windowWidth: unknown;
  invert: boolean;
  preScale: unknown;
  rows: number;
  columns: number;
  rowPixelSpacing: unknown;
  columnPixelSpacing: unknown;
  /** SHA-256 of the pixel array's bytes */
  pixels: string;
}

async function summary(image: Types.IImage): Promise<ImageSummary> {
  const px = image.voxelManager?.getScalarData() ?? image.getPixelData();
  const digest = await crypto.subtle.digest(
    'SHA-256',
    new Uint8Array(px.buffer as ArrayBuffer, px.byteOffset, px.byteLength).slice(),
  );
  return {
    decodedInWorker: madeFromDecoded.has(image),
    dataType: px.constructor.name,
    length: px.length,
    min: image.minPixelValue,
    max: image.maxPixelValue,
    slope: image.slope,
    intercept: image.intercept,
    windowCenter: image.windowCenter,
    windowWidth: image.windowWidth,
    invert: image.invert,
    preScale: JSON.parse(JSON.stringify(image.preScale ?? null)),
    rows: image.rows,
    columns: image.columns,
    rowPixelSpacing: image.rowPixelSpacing,
    columnPixelSpacing: image.columnPixelSpacing,
    pixels: Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join(''),
  };
}

function base64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const renders = new Map<string, number>();
let counting = false;

export function installTestHooks(): void {
  if (!counting) {
    counting = true;
    // Cornerstone's events do not bubble, but they do pass the document in the capture phase.
    document.addEventListener(
      Enums.Events.IMAGE_RENDERED,
      (e) => {
        const id = (e as CustomEvent).detail?.viewportId;
        if (id) renders.set(id, (renders.get(id) ?? 0) + 1);
      },
      true,
    );
  }
  const hooks: PacsTestHooks = {
    cpuRendering: () => getShouldUseCPURendering(),
    viewport(id) {
      const vp = getStackViewport(id);
      if (!vp) return undefined;
      const ids = vp.getImageIds();
      const props = vp.getProperties();
      return {
        imageIndex: vp.getCurrentImageIdIndex(),
        count: ids.length,
        imageId: vp.getCurrentImageId() ?? '',
        voiRange: props.voiRange ? { ...props.voiRange } : undefined,
        invert: props.invert,
        loaded: ids.filter((i) => cache.isLoaded(i)).length,
        rendered: Boolean(vp.getCurrentImageId() && vp.getImageData?.()),
        renders: renders.get(id) ?? 0,
      };
    },
    firstView(id) {
      const drawn = firstViewsDrawn.get(id);
      if (!drawn) return undefined;
      const canvas = document.querySelector<HTMLCanvasElement>(`[data-testid="first-view-${id}"]`);
      return {
        drawnAt: drawn.drawnAt,
        imageId: drawn.imageId,
        shown: canvas?.style.visibility === 'visible',
      };
    },
    sampleFirstView(id, points) {
      const drawn = firstViewsDrawn.get(id);
      const canvas = document.querySelector<HTMLCanvasElement>(`[data-testid="first-view-${id}"]`);
      const ctx = canvas?.getContext('2d');
      if (!drawn || !canvas || !ctx || canvas.width === 0) return undefined;
      const p = placement(canvas.width, canvas.height, drawn.image);
      return points.map(([col, row]) => {
        const x = Math.floor(p.left + (col + 0.5) * p.scale);
        const y = Math.floor(p.top + (row + 0.5) * p.scale * drawn.image.pixelAspect);
        return Array.from(ctx.getImageData(x, y, 1, 1).data);
      });
    },
    imageToPage(id, col, row) {
      const vp = getStackViewport(id);
      const imageId = vp?.getCurrentImageId();
      if (!vp || !imageId) return undefined;
      const world = utilities.imageToWorldCoords(imageId, [col + 0.5, row + 0.5]);
      if (!world) return undefined;
      const [cx, cy] = vp.worldToCanvas(world as Types.Point3);
      const rect = vp.canvas.getBoundingClientRect();
      return [rect.left + cx, rect.top + cy];
    },
    sample(id, points) {
      const vp = getStackViewport(id);
      const imageId = vp?.getCurrentImageId();
      if (!vp || !imageId) return undefined;
      const canvas = vp.canvas;
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      if (!ctx) return undefined;
      const ratio = canvas.width / canvas.clientWidth;
      return points.map(([col, row]) => {
        const world = utilities.imageToWorldCoords(imageId, [col + 0.5, row + 0.5]) as Types.Point3;
        const [cx, cy] = vp.worldToCanvas(world);
        return Array.from(ctx.getImageData(Math.floor(cx * ratio), Math.floor(cy * ratio), 1, 1).data);
      });
    },
    modalityValues(id, points) {
      const vp = getStackViewport(id);
      const image = vp?.getCurrentImageId()
        ? (cache.getImage(vp.getCurrentImageId()) as Types.IImage)
        : undefined;
      if (!image) return undefined;
      const px = image.getPixelData();
      const scaled = (image as any).preScale?.scaled;
      return points.map(([c, r]) => {
        const v = px[r * image.width + c];
        return scaled ? v : v * (image.slope ?? 1) + (image.intercept ?? 0);
      });
    },
    image(id) {
      const imageId = getStackViewport(id)?.getCurrentImageId();
      const image = imageId ? (cache.getImage(imageId) as Types.IImage | undefined) : undefined;
      if (!imageId || !image) return undefined;
      const px = image.getPixelData();
      const n = image.width * image.height;
      let bytes: Uint8Array;
      if (image.color) bytes = Uint8Array.from(px);
      else {
        const scaled = (image as any).preScale?.scaled;
        const values = new Float32Array(n);
        for (let i = 0; i < n; i++)
          values[i] = scaled ? px[i] : px[i] * (image.slope ?? 1) + (image.intercept ?? 0);
        bytes = new Uint8Array(values.buffer);
      }
      return {
        imageId,
        transferSyntaxUID: String((image as { transferSyntaxUID?: string }).transferSyntaxUID ?? ''),
        width: image.width,
        height: image.height,
        color: Boolean(image.color),
        components: px.length / n,
        data: base64(bytes),
      };
    },
    async compareWithLoader(imageId) {
      const cached = cache.getImage(imageId) as Types.IImage | undefined;
      if (!cached) return undefined;
      const fresh = (await wadors.loadImage(imageId, {}).promise) as unknown as Types.IImage;
      return { cached: await summary(cached), loader: await summary(fresh) };
    },
    transfer: () => getTransferState(),
    transferred: () => {
      const worker = workerTransfers();
      const entries = [
        ...performance.getEntriesByType('navigation'),
        ...performance.getEntriesByType('resource'),
      ] as PerformanceResourceTiming[];
      return {
        bytes: entries.reduce((sum, e) => sum + (e.transferSize ?? 0), worker.bytes),
        requests: entries.length + worker.requests,
      };
    },
    measurements() {
      const out: { toolName: string; stats: Record<string, unknown> }[] = [];
      for (const tool of MEASUREMENT_TOOLS) {
        for (const a of annotation.state.getAllAnnotations().filter((x) => x.metadata?.toolName === tool)) {
          const cached = (a.data as any).cachedStats ?? {};
          const first = Object.values(cached)[0] as Record<string, unknown> | undefined;
          out.push({ toolName: tool, stats: first ?? {} });
        }
      }
      return out;
    },
  };
  (window as unknown as { __pacs: PacsTestHooks }).__pacs = hooks;
}

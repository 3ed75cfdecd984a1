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
  ProbeTool,
  RectangleROITool,
  StackScrollTool,
  WindowLevelTool,
  ZoomTool,
} from '@cornerstonejs/tools';
import { env } from '../config/env';
import { formatNumber, translate } from '../i18n';
import type { DicomJson } from './dicom-json';

const inflight = new Map<XMLHttpRequest, string>();
let initialised = false;

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

export function initCornerstone(): void {
  if (initialised) return;
  initialised = true;
  coreInit();
  const cores = navigator.hardwareConcurrency || 2;
  loaderInit({
    maxWebWorkers: Math.max(1, Math.min(4, cores - 1)),
    open(xhr, url) {
      xhr.open('get', url, true);
      inflight.set(xhr, url);
      xhr.addEventListener('loadend', () => inflight.delete(xhr));
    },
  });
  toolsInit();
  cache.setMaxCacheSize(env.cacheBytes);
  // HTTP/1.1 gives six connections per host: keep two free for the slice in view and metadata.
  imageRetrievalPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Interaction, 6);
  imageRetrievalPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Prefetch, 4);
  imageRetrievalPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Thumbnail, 2);
  imageLoadPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Prefetch, 4);
  imageLoadPoolManager.setMaxSimultaneousRequests(CoreEnums.RequestType.Thumbnail, 2);

  addTool(WindowLevelTool);
  addTool(PanTool);
  addTool(ZoomTool);
  addTool(StackScrollTool);
  addTool(LengthTool);
  addTool(AngleTool);
  addTool(RectangleROITool);
  addTool(EllipticalROITool);
  addTool(ProbeTool);
}

export const toolConfigurations: Record<string, Record<string, unknown>> = {
  [LengthTool.toolName]: { getTextLines: lengthLines },
  [AngleTool.toolName]: { getTextLines: angleLines },
  [RectangleROITool.toolName]: { getTextLines: roiLines },
  [EllipticalROITool.toolName]: { getTextLines: roiLines },
  [ProbeTool.toolName]: { getTextLines: probeLines },
};

/** Makes cornerstone's metadata providers answer for a `wadors:` image id from DICOM JSON. */
export function addInstanceMetadata(imageId: string, instance: DicomJson): void {
  wadors.metaDataManager.add(imageId, instance as any);
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
}

export function usesCpuRendering(): boolean {
  return getShouldUseCPURendering();
}

export { coreUtils };

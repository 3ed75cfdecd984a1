/**
 * Loads the stacks shown in viewports: the slice in view first (cornerstone's Interaction requests),
 * then outward from it (Prefetch requests), within the memory bound of the cache. Requests of a
 * series that no viewport shows any more are dropped from the queues and aborted on the wire.
 */
import { cache, Enums, imageLoader, imageLoadPoolManager } from '@cornerstonejs/core';
import { env } from '../../config/env';
import {
  cancelRequests,
  dropPrefetchedFrame,
  fetchFrame,
  prefetchWithFetch,
  providePrefetchedFrame,
} from '../../lib/cornerstone';
import { takePrefetchedFrame } from './study-loader';

interface Shown {
  seriesUID: string;
  imageIds: string[];
  index: number;
  frameBytes: number;
}

const shown = new Map<string, Shown>();
let lastRequested = new Map<string, number>();

function outward(n: number, from: number): number[] {
  const order = [from];
  for (let d = 1; order.length < n; d++) {
    if (from + d < n) order.push(from + d);
    if (from - d >= 0) order.push(from - d);
  }
  return order;
}

function schedule(viewportId: string): void {
  const s = shown.get(viewportId);
  if (!s) return;
  // Re-order this viewport's queued work around the new position.
  imageLoadPoolManager.filterRequests(
    (r) => (r.additionalDetails as { viewportId?: string })?.viewportId !== viewportId,
  );
  const budget = Math.floor((env.cacheBytes * 0.8) / Math.max(1, shown.size) / s.frameBytes);
  const order = outward(s.imageIds.length, s.index).slice(0, Math.max(1, budget));
  for (const i of order) {
    const imageId = s.imageIds[i];
    if (cache.getImageLoadObject(imageId) || cache.isLoaded(imageId)) continue;
    const additionalDetails = { viewportId, seriesUID: s.seriesUID, imageId };
    imageLoadPoolManager.addRequest(
      async () => {
        if (cache.getImageLoadObject(imageId) || cache.isLoaded(imageId)) return;
        // Fetched ahead by the study loader while the viewer started?
        const ahead = await takePrefetchedFrame(imageId.replace(/^wadors:/, ''));
        if (ahead) providePrefetchedFrame(imageId, ahead.pixelData, ahead.transferSyntaxUid);
        else if (prefetchWithFetch() && !(await fetchFrame(imageId))) return;
        await imageLoader
          .loadAndCacheImage(imageId, {
            requestType: Enums.RequestType.Prefetch,
            priority: 0,
            additionalDetails,
          } as any)
          .then(
            () => undefined,
            () => undefined,
          );
        dropPrefetchedFrame(imageId);
      },
      Enums.RequestType.Prefetch,
      additionalDetails,
      0,
    );
  }
  lastRequested.set(viewportId, s.index);
}

/** A viewport shows `imageIds` at `index`: (re)start its loading around that slice. */
export function showStack(
  viewportId: string,
  seriesUID: string,
  imageIds: string[],
  index: number,
  frameBytes: number,
): void {
  const previous = shown.get(viewportId);
  shown.set(viewportId, { seriesUID, imageIds, index, frameBytes });
  if (previous && previous.seriesUID !== seriesUID) releaseSeries(previous.seriesUID);
  schedule(viewportId);
}

/** The viewport scrolled: re-prioritise when it moved far enough from where loading was ordered. */
export function moveStack(viewportId: string, index: number): void {
  const s = shown.get(viewportId);
  if (!s) return;
  s.index = index;
  const last = lastRequested.get(viewportId) ?? index;
  if (Math.abs(last - index) >= 5) schedule(viewportId);
}

export function hideStack(viewportId: string): void {
  const s = shown.get(viewportId);
  shown.delete(viewportId);
  lastRequested.delete(viewportId);
  if (s) releaseSeries(s.seriesUID);
}

function releaseSeries(seriesUID: string): void {
  for (const s of shown.values()) if (s.seriesUID === seriesUID) return;
  cancelRequests(
    (d) => d.seriesUID === seriesUID || String(d.imageId ?? '').includes(`/series/${seriesUID}/`),
    `/series/${seriesUID}/`,
  );
}

export function resetPrefetch(): void {
  for (const id of [...shown.keys()]) hideStack(id);
  lastRequested = new Map();
}

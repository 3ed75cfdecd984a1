/** Operations on one stack viewport, used by the toolbar and the keyboard shortcuts. */
import { metaData, type Types } from '@cornerstonejs/core';
import { annotation, utilities as toolUtils } from '@cornerstonejs/tools';
import { CT_PRESETS, toRange } from './presets';
import { getStackViewport, MEASUREMENT_TOOLS } from './viewer-session';

function withViewport(id: string, fn: (vp: Types.IStackViewport) => void): void {
  const vp = getStackViewport(id);
  if (!vp?.getCurrentImageId()) return;
  fn(vp);
  vp.render();
}

/** The windows stored in the file (Window Center/Width, possibly several). */
export function fileWindows(id: string): { window: number; level: number }[] {
  const vp = getStackViewport(id);
  const imageId = vp?.getCurrentImageId();
  if (!imageId) return [];
  const voi = metaData.get('voiLutModule', imageId) as
    | { windowCenter?: number | number[]; windowWidth?: number | number[] }
    | undefined;
  const c = ([] as (number | undefined)[]).concat(voi?.windowCenter ?? []);
  const w = ([] as (number | undefined)[]).concat(voi?.windowWidth ?? []);
  const out: { window: number; level: number }[] = [];
  for (let i = 0; i < Math.min(c.length, w.length); i++) {
    if (Number.isFinite(c[i]) && Number(w[i]) > 0) out.push({ window: Number(w[i]), level: Number(c[i]) });
  }
  return out;
}

export function setWindow(id: string, window: number, level: number): void {
  withViewport(id, (vp) =>
    vp.setProperties({ voiRange: toRange(window, level, vp.getProperties().VOILUTFunction) }),
  );
}

export function applyPreset(id: string, preset: string): void {
  const p = CT_PRESETS.find((x) => x.id === preset);
  if (p) {
    setWindow(id, p.window, p.level);
    return;
  }
  const m = /^file(\d+)$/.exec(preset);
  const windows = fileWindows(id);
  if (m && windows[Number(m[1])]) {
    const w = windows[Number(m[1])];
    setWindow(id, w.window, w.level);
    return;
  }
  // The image's own default VOI.
  withViewport(id, (vp) => {
    const invert = vp.getProperties().invert;
    vp.resetProperties();
    if (invert !== undefined) vp.setProperties({ invert });
  });
}

export function fit(id: string): void {
  withViewport(id, (vp) => {
    const { rotation, flipHorizontal, flipVertical } = vp.getViewPresentation();
    vp.resetCamera();
    vp.setViewPresentation({ rotation, flipHorizontal, flipVertical });
  });
}

export function rotate90(id: string): void {
  withViewport(id, (vp) => {
    const r = vp.getViewPresentation().rotation ?? 0;
    vp.setViewPresentation({ rotation: (r + 90) % 360 });
  });
}

export function flip(id: string, axis: 'h' | 'v'): void {
  withViewport(id, (vp) => {
    const cam = vp.getCamera();
    if (axis === 'h') vp.setCamera({ flipHorizontal: !cam.flipHorizontal });
    else vp.setCamera({ flipVertical: !cam.flipVertical });
  });
}

export function invert(id: string): void {
  withViewport(id, (vp) => vp.setProperties({ invert: !vp.getProperties().invert }));
}

export function reset(id: string): void {
  withViewport(id, (vp) => {
    vp.resetCamera();
    vp.setViewPresentation({ rotation: 0, flipHorizontal: false, flipVertical: false });
    vp.resetProperties();
  });
}

/**
 * Shows image `index` of a stack. An image that fails to load or decode is reported by the
 * IMAGE_LOAD_FAILED event, which the viewport turns into its message; the promise's rejection is
 * therefore handled here, not left to the page as an unhandled error.
 */
export function showImage(vp: Types.IStackViewport, index: number): void {
  vp.setImageIdIndex(index).catch(() => undefined);
}

export function scroll(id: string, delta: number): void {
  const vp = getStackViewport(id);
  if (!vp) return;
  const n = vp.getImageIds().length;
  const i = Math.max(0, Math.min(n - 1, vp.getCurrentImageIdIndex() + delta));
  if (i !== vp.getCurrentImageIdIndex()) showImage(vp, i);
}

export function scrollTo(id: string, where: 'first' | 'last'): void {
  const vp = getStackViewport(id);
  if (!vp) return;
  showImage(vp, where === 'first' ? 0 : vp.getImageIds().length - 1);
}

export function clearMeasurements(id: string): void {
  const vp = getStackViewport(id);
  if (!vp) return;
  for (const tool of MEASUREMENT_TOOLS) {
    for (const a of annotation.state.getAnnotations(tool, vp.element) ?? []) {
      if (a.annotationUID) annotation.state.removeAnnotation(a.annotationUID);
    }
  }
  vp.render();
}

export function playCine(id: string, fps: number): void {
  const vp = getStackViewport(id);
  if (!vp || vp.getImageIds().length < 2) return;
  toolUtils.cine.playClip(vp.element, { framesPerSecond: fps, loop: true });
}

export function stopCine(id: string): void {
  const vp = getStackViewport(id);
  if (vp) toolUtils.cine.stopClip(vp.element);
}

/** Scrolls the other viewports of the same frame of reference to the slice nearest the source's. */
export function syncSlices(sourceId: string, targetIds: string[]): void {
  const src = getStackViewport(sourceId);
  const srcId = src?.getCurrentImageId();
  if (!src || !srcId) return;
  const plane = metaData.get('imagePlaneModule', srcId) as any;
  if (!plane?.imagePositionPatient || !plane.frameOfReferenceUID) return;
  for (const tid of targetIds) {
    const tgt = getStackViewport(tid);
    if (!tgt) continue;
    const ids = tgt.getImageIds();
    const first = ids[0] && (metaData.get('imagePlaneModule', ids[0]) as any);
    if (!first || first.frameOfReferenceUID !== plane.frameOfReferenceUID || !first.rowCosines) continue;
    const n = cross(first.rowCosines, first.columnCosines);
    const srcN = cross(plane.rowCosines, plane.columnCosines);
    if (Math.abs(dot(n, srcN)) < 0.99) continue; // not parallel planes
    const target = dot(plane.imagePositionPatient, n);
    let best = -1;
    let bestD = Number.POSITIVE_INFINITY;
    ids.forEach((imageId, i) => {
      const p = metaData.get('imagePlaneModule', imageId) as any;
      if (!p?.imagePositionPatient) return;
      const d = Math.abs(dot(p.imagePositionPatient, n) - target);
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    });
    if (best >= 0 && best !== tgt.getCurrentImageIdIndex()) showImage(tgt, best);
  }
}

function cross(a: number[], b: number[]): number[] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}
function dot(a: number[], b: number[]): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

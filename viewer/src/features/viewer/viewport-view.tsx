import { cache, Enums, eventTarget, metaData, type Types } from '@cornerstonejs/core';
import { wadors } from '@cornerstonejs/dicom-image-loader';
import { useEffect, useMemo, useRef, useState } from 'react';
import { formatDicomDate, formatNumber, type MessageKey, useLanguage, useT } from '../../i18n';
import { describeError } from '../../lib/describe-error';
import { type DicomJson, Tag, values } from '../../lib/dicom-json';
import type { DisplaySet } from './display-sets';
import { type Markers, markersFrom, parsePatientOrientation, patientOrientationLetters } from './orientation';
import { providePrefetchedFrame } from '../../lib/cornerstone';
import { isLossySyntax } from '../../lib/transfer-policy';
import { storedSyntaxOf } from '../../lib/transfer-settings';
import { hideStack, moveStack, showStack } from './prefetch';
import { toWindowLevel } from './presets';
import {
  drawFirstView,
  firstViewImage,
  firstViewsDrawn,
  forgetFirstView,
  repaintFirstView,
  settleFirstView,
} from './first-view';
import { peekPrefetchedFrame, takePrefetchedFrame } from './study-loader';
import { trackGradient } from './scrollbar-track';
import { getSession, getStackViewport, TOOL_GROUP_ID } from './viewer-session';
import { showImage } from './viewport-actions';

export interface StudyInfo {
  patientName: string;
  patientId: string;
  birthDate: string;
  sex: string;
  studyDate: string;
  studyDescription: string;
  institution: string;
}

/**
 * How a viewport names its study when another study of the patient is in view: the study being read
 * (current), or one from before it (prior), after it (later), or of no known order (other).
 */
export type StudyMark = 'current' | 'prior' | 'later' | 'other';

const MARK_LABEL: Record<StudyMark, MessageKey> = {
  current: 'overlay.currentStudy',
  prior: 'overlay.priorStudy',
  later: 'overlay.laterStudy',
  other: 'overlay.otherStudy',
};

export type ViewportContent =
  /** noImages: the study has no series with images; documents: but it has PDF documents. */
  | { kind: 'empty'; noImages?: boolean; documents?: boolean }
  | { kind: 'loading' }
  | { kind: 'error'; message: string }
  | { kind: 'ready'; displaySet: DisplaySet };

interface OverlayState {
  index: number;
  count: number;
  location?: number;
  thickness?: number;
  window?: number;
  level?: number;
  zoom?: number;
  markers?: Markers | null;
  /** the pixels shown went through lossy compression (as stored, or marked so by the modality) */
  lossy?: boolean;
}

/**
 * The image's pixels went through lossy compression: LossyImageCompression 01, or it is stored (or
 * arrived) in a lossy transfer syntax.
 */
function isLossyImage(imageId: string): boolean {
  const general = metaData.get('generalImageModule', imageId) as
    | { lossyImageCompression?: string }
    | undefined;
  if (String(general?.lossyImageCompression ?? '').trim() === '01') return true;
  const image = cache.getImage(imageId) as { transferSyntaxUID?: string } | undefined;
  const syntax = storedSyntaxOf(imageId) ?? image?.transferSyntaxUID;
  return syntax ? isLossySyntax(syntax) : false;
}

interface Props {
  viewportId: string;
  /** Cornerstone's session exists: the viewport can be enabled (before, only the first view draws). */
  sessionReady: boolean;
  content: ViewportContent;
  study: StudyInfo | null;
  /** which study it is, when the viewports show more than one */
  mark?: StudyMark;
  active: boolean;
  onActivate(): void;
  onDropSeries(seriesUID: string): void;
  onImageChange(viewportId: string, imageId: string): void;
}

const DRAG_TYPE = 'application/x-pacs-series';
/** The longest prefetching waits for the first slice to be drawn. */
const PREFETCH_AFTER_MS = 400;
/**
 * How often the scroll bar's track and the count of arrived slices follow the arrivals. Each redraw of
 * the track costs the browser's compositor about 30 ms on a PC without a GPU (software WebGL), CPU the
 * arriving slices need: twice a second keeps the progress visible at a fifth of the cost of ten.
 */
const LOADED_UPDATE_MS = 500;
export { DRAG_TYPE };

export function ViewportView({
  viewportId,
  sessionReady,
  content,
  study,
  mark,
  active,
  onActivate,
  onDropSeries,
  onImageChange,
}: Props) {
  const t = useT();
  const lang = useLanguage();
  const elementRef = useRef<HTMLDivElement>(null);
  const firstViewRef = useRef<HTMLCanvasElement>(null);
  /** Cornerstone has drawn in this viewport: the first view is over. */
  const drawnRef = useRef(false);
  const [overlay, setOverlay] = useState<OverlayState | null>(null);
  const [imageError, setImageError] = useState<string>('');
  /**
   * The slice in view whose image could not be loaded (or ''): the canvas still holds the slice shown
   * before it, which is hidden, and the overlay gives no window, zoom or orientation for it.
   */
  const failedRef = useRef('');
  const [loaded, setLoaded] = useState<Uint8Array>(new Uint8Array(0));
  const [dragOver, setDragOver] = useState(false);
  const displaySet = content.kind === 'ready' ? content.displaySet : null;
  const onImageChangeRef = useRef(onImageChange);
  onImageChangeRef.current = onImageChange;

  // The first view: the first slice drawn from the prefetched bytes before Cornerstone has started
  // (first-view.ts). Declared before the stack's effect, so it reads the bytes before they are handed
  // to Cornerstone.
  useEffect(() => {
    const canvas = firstViewRef.current;
    const image = displaySet?.firstInstance && firstViewImage(displaySet.firstInstance);
    const prefetched =
      displaySet && image && peekPrefetchedFrame(displaySet.imageIds[0].replace(/^wadors:/, ''));
    if (!canvas || drawnRef.current || !image || !prefetched) {
      if (displaySet) settleFirstView();
      return;
    }
    let cancelled = false;
    // Until the image library draws, a resized viewport (window, layout, a tablet turned) gets the first
    // view drawn again at its new size rather than stretched.
    const resized = new ResizeObserver(() => {
      if (!drawnRef.current && canvas.style.visibility === 'visible') repaintFirstView(canvas);
    });
    prefetched
      .then((frame) => {
        if (cancelled || drawnRef.current || !frame) return;
        if (drawFirstView(canvas, image, frame.pixelData, frame.transferSyntaxUid)) {
          canvas.style.visibility = 'visible';
          firstViewsDrawn.set(viewportId, {
            drawnAt: performance.now(),
            imageId: displaySet.imageIds[0],
            image,
          });
          resized.observe(canvas);
        }
      })
      .finally(settleFirstView);
    return () => {
      cancelled = true;
      resized.disconnect();
    };
  }, [displaySet, viewportId]);

  // Cornerstone's first drawing of an image replaces the first view (not a drawing of the empty
  // viewport, which would leave it black meanwhile).
  useEffect(() => {
    const element = elementRef.current!;
    const onRendered = () => {
      if (drawnRef.current) return;
      const vp = getStackViewport(viewportId);
      if (!vp?.getCurrentImageId() || !vp.getImageData?.()) return;
      drawnRef.current = true;
      const canvas = firstViewRef.current;
      if (canvas) {
        canvas.style.visibility = 'hidden';
        canvas.width = canvas.height = 0;
        forgetFirstView(canvas);
      }
    };
    element.addEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
    return () => element.removeEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
  }, [viewportId]);

  // Enable the element once the session exists; disable on unmount.
  useEffect(() => {
    if (!sessionReady) return;
    const element = elementRef.current!;
    const { engine, toolGroup } = getSession();
    engine.enableElement({
      viewportId,
      type: Enums.ViewportType.STACK,
      element,
      defaultOptions: { background: [0, 0, 0] as Types.Point3 },
    });
    toolGroup.addViewport(viewportId, engine.id);
    const ro = new ResizeObserver(() => {
      if (element.clientWidth > 0 && element.clientHeight > 0) engine.resize(true, false);
    });
    ro.observe(element);
    return () => {
      ro.disconnect();
      hideStack(viewportId);
      try {
        toolGroup.removeViewports(engine.id, viewportId);
        engine.disableElement(viewportId);
      } catch {
        /* engine already destroyed */
      }
      void TOOL_GROUP_ID;
    };
  }, [viewportId, sessionReady]);

  // Show the stack; the first image is requested before any prefetching starts.
  // biome-ignore lint/correctness/useExhaustiveDependencies: t only formats messages; a new language must not reload the stack
  useEffect(() => {
    const element = elementRef.current!;
    if (!sessionReady) return;
    if (!displaySet || displaySet.imageIds.length === 0) {
      hideStack(viewportId);
      setOverlay(null);
      return;
    }
    const viewport = getStackViewport(viewportId);
    if (!viewport) return;
    const imageIds = displaySet.imageIds;
    const ids = new Set(imageIds);
    let cancelled = false;
    let frame = 0;
    failedRef.current = '';
    setImageError('');
    setLoaded(new Uint8Array(imageIds.length));

    const updateOverlay = () => {
      frame = 0;
      const vp = getStackViewport(viewportId);
      if (!vp || cancelled) return;
      const index = vp.getCurrentImageIdIndex();
      const imageId = vp.getCurrentImageId();
      const plane = imageId ? (metaData.get('imagePlaneModule', imageId) as any) : undefined;
      const failed = Boolean(imageId) && imageId === failedRef.current;
      const props = vp.getProperties();
      const wl = props.voiRange && !failed ? toWindowLevel(props.voiRange, props.VOILUTFunction) : undefined;
      // Where the image lies in the patient: from its ImageOrientationPatient, not from the default
      // Cornerstone places an image without one at (usingDefaultValues). A slice that failed to load has
      // no place, no window and no zoom: the picture of the slice before it is hidden.
      const json = imageId ? (wadors.metaDataManager.get(imageId) as DicomJson | undefined) : undefined;
      const oriented =
        !failed &&
        Boolean(plane?.rowCosines && plane?.columnCosines) &&
        (!plane.usingDefaultValues || values(json, Tag.ImageOrientationPatient).length === 6);
      // Else the patient directions of its rows and columns (projection radiographs), if it has them.
      const patientOrientation =
        oriented || failed ? null : parsePatientOrientation(values(json, Tag.PatientOrientation));
      let markers: Markers | null = null;
      let zoom: number | undefined;
      try {
        const canvas = vp.canvas;
        const toWorld = (p: [number, number]) => vp.canvasToWorld(p as Types.Point2);
        if (oriented) markers = markersFrom(toWorld, canvas.clientWidth, canvas.clientHeight);
        else if (patientOrientation) {
          const letters = patientOrientationLetters(
            patientOrientation,
            plane?.rowCosines ?? [1, 0, 0],
            plane?.columnCosines ?? [0, 1, 0],
          );
          markers = markersFrom(toWorld, canvas.clientWidth, canvas.clientHeight, letters);
        }
        zoom = failed ? undefined : vp.getZoom();
      } catch {
        markers = null;
      }
      const normal = oriented
        ? [
            plane.rowCosines[1] * plane.columnCosines[2] - plane.rowCosines[2] * plane.columnCosines[1],
            plane.rowCosines[2] * plane.columnCosines[0] - plane.rowCosines[0] * plane.columnCosines[2],
            plane.rowCosines[0] * plane.columnCosines[1] - plane.rowCosines[1] * plane.columnCosines[0],
          ]
        : null;
      const ipp = plane?.imagePositionPatient;
      // No slice location for an image that is not placed in the patient.
      const sliceLocation = oriented
        ? (plane?.sliceLocation ??
          (normal && ipp ? ipp[0] * normal[0] + ipp[1] * normal[1] + ipp[2] * normal[2] : undefined))
        : undefined;
      setOverlay({
        index,
        count: imageIds.length,
        location: sliceLocation,
        thickness: plane?.sliceThickness,
        window: wl?.window,
        level: wl?.level,
        zoom,
        markers,
        lossy: imageId && !failed ? isLossyImage(imageId) : false,
      });
    };
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(updateOverlay);
    };
    const onNewImage = (evt: Event) => {
      const { imageIdIndex, imageId } = (evt as CustomEvent).detail;
      moveStack(viewportId, imageIdIndex);
      failedRef.current = '';
      setImageError('');
      onImageChangeRef.current(viewportId, imageId);
      schedule();
    };
    const onFailed = (evt: Event) => {
      const { imageId, error } = (evt as CustomEvent).detail ?? {};
      if (!ids.has(imageId)) return;
      const vp = getStackViewport(viewportId);
      if (vp?.getCurrentImageId() !== imageId) return;
      failedRef.current = imageId;
      setImageError(t('error.imageLoad', { message: describeError(error, t) }));
      schedule();
    };
    let loadedDirty = 0;
    const markLoaded = (evt: Event) => {
      const imageId = (evt as CustomEvent).detail?.image?.imageId ?? (evt as CustomEvent).detail?.imageId;
      if (!ids.has(imageId)) return;
      if (!loadedDirty) {
        loadedDirty = window.setTimeout(() => {
          loadedDirty = 0;
          if (cancelled) return;
          setLoaded(Uint8Array.from(imageIds, (id) => (cache.isLoaded(id) ? 1 : 0)));
        }, LOADED_UPDATE_MS);
      }
    };
    element.addEventListener(Enums.Events.STACK_NEW_IMAGE, onNewImage);
    element.addEventListener(Enums.Events.IMAGE_RENDERED, schedule);
    element.addEventListener(Enums.Events.VOI_MODIFIED, schedule);
    element.addEventListener(Enums.Events.CAMERA_MODIFIED, schedule);
    eventTarget.addEventListener(Enums.Events.IMAGE_LOAD_FAILED, onFailed);
    eventTarget.addEventListener(Enums.Events.IMAGE_CACHE_IMAGE_ADDED, markLoaded);
    eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, markLoaded);

    const start = 0;
    // The study loader may already have fetched this slice (or be fetching it): decode those bytes.
    const prefetched = takePrefetchedFrame(imageIds[start].replace(/^wadors:/, ''));
    const ready = prefetched
      ? prefetched.then(
          (frame) => {
            if (frame) providePrefetchedFrame(imageIds[start], frame.pixelData, frame.transferSyntaxUid);
          },
          () => undefined,
        )
      : Promise.resolve();
    ready
      .then(() => (cancelled ? undefined : viewport.setStack(imageIds, start)))
      .then(
        () => {
          if (cancelled) return;
          viewport.render();
          schedule();
          setLoaded(Uint8Array.from(imageIds, (id) => (cache.isLoaded(id) ? 1 : 0)));
          // Prefetching starts once the first slice is on screen (or after a short while): its
          // arrivals and decodes would otherwise compete with that first render for the CPU.
          let started = false;
          const startPrefetch = () => {
            element.removeEventListener(Enums.Events.IMAGE_RENDERED, startPrefetch);
            if (started || cancelled) return;
            started = true;
            showStack(viewportId, displaySet.SeriesInstanceUID, imageIds, start, displaySet.frameBytes);
          };
          element.addEventListener(Enums.Events.IMAGE_RENDERED, startPrefetch);
          window.setTimeout(startPrefetch, PREFETCH_AFTER_MS);
        },
        (e) => {
          if (cancelled) return;
          failedRef.current = imageIds[start];
          setImageError(t('error.imageLoad', { message: describeError(e, t) }));
          schedule();
          showStack(viewportId, displaySet.SeriesInstanceUID, imageIds, start, displaySet.frameBytes);
        },
      );
    return () => {
      cancelled = true;
      if (frame) cancelAnimationFrame(frame);
      if (loadedDirty) clearTimeout(loadedDirty);
      element.removeEventListener(Enums.Events.STACK_NEW_IMAGE, onNewImage);
      element.removeEventListener(Enums.Events.IMAGE_RENDERED, schedule);
      element.removeEventListener(Enums.Events.VOI_MODIFIED, schedule);
      element.removeEventListener(Enums.Events.CAMERA_MODIFIED, schedule);
      eventTarget.removeEventListener(Enums.Events.IMAGE_LOAD_FAILED, onFailed);
      eventTarget.removeEventListener(Enums.Events.IMAGE_CACHE_IMAGE_ADDED, markLoaded);
      eventTarget.removeEventListener(Enums.Events.IMAGE_LOADED, markLoaded);
    };
  }, [displaySet, viewportId, sessionReady]);

  const fmt = (n: number | undefined, d: number) =>
    n === undefined || Number.isNaN(n) ? '' : formatNumber(n, d, lang);
  const sexKey = study && ['M', 'F', 'O'].includes(study.sex) ? (`sex.${study.sex}` as MessageKey) : null;
  const loadedCount = loaded.reduce((a, b) => a + b, 0);

  return (
    // biome-ignore lint/a11y/noStaticElementInteractions: a drop target and focus-on-click for the image canvas, driven by mouse and keyboard shortcuts
    <div
      className={`viewport${active ? ' active' : ''}${dragOver ? ' drag-over' : ''}${mark && mark !== 'current' ? ' other-study' : ''}`}
      data-viewport-id={viewportId}
      onMouseDownCapture={onActivate}
      onWheelCapture={active ? undefined : onActivate}
      onDragOver={(e) => {
        if (e.dataTransfer.types.includes(DRAG_TYPE)) {
          e.preventDefault();
          setDragOver(true);
        }
      }}
      onDragLeave={() => setDragOver(false)}
      onDrop={(e) => {
        setDragOver(false);
        const uid = e.dataTransfer.getData(DRAG_TYPE);
        if (uid) {
          e.preventDefault();
          onDropSeries(uid);
        }
      }}
    >
      {/* biome-ignore lint/a11y/noStaticElementInteractions: Cornerstone's canvas host; the context menu is suppressed for right-drag zoom */}
      <div
        ref={elementRef}
        className={`viewport-element${imageError ? ' failed' : ''}`}
        onContextMenu={(e) => e.preventDefault()}
        data-testid={`viewport-${viewportId}`}
      />
      <canvas ref={firstViewRef} className="first-view" data-testid={`first-view-${viewportId}`} />
      {content.kind === 'empty' && (
        <div className="viewport-message">
          {t(
            content.documents
              ? 'viewer.onlyDocuments'
              : content.noImages
                ? 'viewer.noImagesInStudy'
                : 'viewer.emptyViewport',
          )}
        </div>
      )}
      {content.kind === 'loading' && <div className="viewport-message">{t('viewer.loadingSeries')}</div>}
      {content.kind === 'error' && (
        <div className="viewport-message error" role="alert">
          {content.message}
        </div>
      )}
      {imageError && (
        <div className="viewport-message error" role="alert">
          {imageError}
        </div>
      )}
      {dragOver && <div className="viewport-message drop">{t('viewer.dropHint')}</div>}
      {displaySet && overlay && (
        <div className="overlay" aria-hidden="true">
          <div className="tl">
            {study && (
              <>
                <div className="strong" translate="no">
                  {study.patientName}
                </div>
                <div translate="no">{study.patientId}</div>
                <div>
                  {study.birthDate && formatDicomDate(study.birthDate, lang)}
                  {sexKey ? ` ${t(sexKey)}` : ''}
                </div>
              </>
            )}
          </div>
          <div className="tr">
            {study && (
              <>
                <div translate="no">{study.institution}</div>
                <div translate="no">{study.studyDescription}</div>
                {mark ? (
                  <div className={`study-mark ${mark}`} data-testid="overlay-study">
                    {t(MARK_LABEL[mark], {
                      date: study.studyDate
                        ? formatDicomDate(study.studyDate, lang)
                        : t('viewer.noStudyDate'),
                    })}
                  </div>
                ) : (
                  <div data-testid="overlay-study">
                    {study.studyDate && formatDicomDate(study.studyDate, lang)}
                  </div>
                )}
              </>
            )}
            <div>
              {displaySet.SeriesNumber !== undefined &&
                `${t('overlay.series', { number: displaySet.SeriesNumber })} `}
              <span translate="no">{displaySet.SeriesDescription}</span>
            </div>
          </div>
          <div className="bl">
            <div data-testid="overlay-image">
              {t('overlay.image', { index: overlay.index + 1, count: overlay.count })}
            </div>
            {overlay.location !== undefined && (
              <div>{t('overlay.location', { value: fmt(overlay.location, 1) })}</div>
            )}
            {overlay.thickness !== undefined && (
              <div>{t('overlay.thickness', { value: fmt(overlay.thickness, 1) })}</div>
            )}
            {loadedCount < overlay.count && (
              <div>{t('overlay.loaded', { loaded: loadedCount, count: overlay.count })}</div>
            )}
          </div>
          <div className="br">
            {overlay.window !== undefined && (
              <div data-testid="overlay-wl">
                {t('overlay.wl', { width: fmt(overlay.window, 0), center: fmt(overlay.level, 0) })}
              </div>
            )}
            {overlay.zoom !== undefined && <div>{t('overlay.zoom', { value: fmt(overlay.zoom, 2) })}</div>}
            {overlay.lossy && (
              <div className="lossy" data-testid="overlay-lossy">
                {t('overlay.lossy')}
              </div>
            )}
          </div>
          {overlay.markers && (
            <>
              <div className="marker top" translate="no">
                {overlay.markers.top}
              </div>
              <div className="marker bottom" translate="no">
                {overlay.markers.bottom}
              </div>
              <div className="marker left" translate="no">
                {overlay.markers.left}
              </div>
              <div className="marker right" translate="no">
                {overlay.markers.right}
              </div>
            </>
          )}
        </div>
      )}
      {displaySet && displaySet.imageIds.length > 1 && overlay && (
        <StackScrollbar viewportId={viewportId} index={overlay.index} loaded={loaded} />
      )}
    </div>
  );
}

/** Vertical scroll bar: the thumb is the slice in view; the track shows which slices have arrived. */
function StackScrollbar({
  viewportId,
  index,
  loaded,
}: {
  viewportId: string;
  index: number;
  loaded: Uint8Array;
}) {
  const count = loaded.length;
  // The track as a CSS gradient (one stop per run of arrived or missing slices), not a canvas: on a PC
  // without a GPU, every redraw of a canvas costs the browser's compositor tens of milliseconds, and the
  // track is redrawn several times a second while a series arrives.
  const track = useMemo(() => trackGradient(loaded), [loaded]);
  const t = useT();
  const go = (i: number) => {
    const vp = getStackViewport(viewportId);
    if (vp) showImage(vp, Math.max(0, Math.min(count - 1, i)));
  };
  const jump = (e: React.PointerEvent<HTMLDivElement>) => {
    const rect = e.currentTarget.getBoundingClientRect();
    go(Math.round(((e.clientY - rect.top) / rect.height) * (count - 1)));
  };
  // Down (and right) is the next image, as the wheel and the viewer's arrow keys; the thumb moves down.
  const steps: Record<string, number> = {
    ArrowDown: 1,
    ArrowRight: 1,
    ArrowUp: -1,
    ArrowLeft: -1,
    PageDown: 10,
    PageUp: -10,
  };
  return (
    <div
      className="scrollbar"
      role="slider"
      aria-label={t('viewer.sliceScrollbar')}
      aria-orientation="vertical"
      aria-valuemin={1}
      aria-valuemax={count}
      aria-valuenow={index + 1}
      aria-valuetext={t('viewer.sliceValue', { index: index + 1, count })}
      tabIndex={0}
      data-testid={`scrollbar-${viewportId}`}
      onKeyDown={(e) => {
        if (e.ctrlKey || e.metaKey || e.altKey) return;
        let to: number | undefined;
        // From the slice really shown: key repeat can outpace the overlay's state.
        const now = getStackViewport(viewportId)?.getCurrentImageIdIndex() ?? index;
        if (e.key in steps) to = now + steps[e.key];
        else if (e.key === 'Home') to = 0;
        else if (e.key === 'End') to = count - 1;
        if (to === undefined) return;
        // The slider owns these keys while it has focus: the viewer's shortcuts must not scroll again.
        e.preventDefault();
        e.stopPropagation();
        go(to);
      }}
      onPointerDown={(e) => {
        e.stopPropagation();
        e.currentTarget.setPointerCapture(e.pointerId);
        e.currentTarget.focus();
        jump(e);
      }}
      onPointerMove={(e) => {
        if (e.buttons & 1) jump(e);
      }}
    >
      <div className="scrollbar-track" style={{ backgroundImage: track }} />
      <div className="scrollbar-thumb" style={{ top: `${(index / Math.max(1, count - 1)) * 100}%` }} />
    </div>
  );
}

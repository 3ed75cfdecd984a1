import { type ReactNode, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { navigate } from '../../app/router';
import { type MessageKey, useT } from '../../i18n';
import { describeError } from '../../lib/describe-error';
import { type DicomJson, str, Tag, values } from '../../lib/dicom-json';
import { DicomwebError } from '../../lib/dicomweb-client';
import { buildDisplaySet, type DisplaySet, summarizeSeries } from './display-sets';
import { HelpPanel } from './help-panel';
import { findPriorStudies, priorDisplaySet, priorSeries, type StudySummary } from './priors';
import { resetPrefetch } from './prefetch';
import { CT_PRESETS } from './presets';
import { type PriorStudy, type PriorsState, type SeriesEntry, SeriesPanel } from './series-panel';
import { firstViewSettled, resetFirstView } from './first-view';
import { firstFrameArrived, loadStudy, viewerStarting } from './study-loader';
import { installTestHooks } from './test-hooks';
import { TransferSelect } from './transfer-select';
import * as actions from './viewport-actions';
import {
  defaultPrimaryTool,
  destroySession,
  getSession,
  type PrimaryTool,
  setPrimaryTool,
} from './viewer-session';
import { type StudyInfo, type StudyMark, ViewportView, type ViewportContent } from './viewport-view';

/** The longest Cornerstone's start waits for the first view. */
const FIRST_VIEW_WAIT_MS = 300;

/** Resolves once the browser has shown what was drawn until now (after its next frame). */
function afterNextPaint(): Promise<void> {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

type Layout = '1x1' | '1x2' | '2x2';
const LAYOUT_SLOTS: Record<Layout, number> = { '1x1': 1, '1x2': 2, '2x2': 4 };
const VIEWPORT_IDS = ['vp-0', 'vp-1', 'vp-2', 'vp-3'];

const TOOLS: { id: PrimaryTool; label: MessageKey; key: string }[] = [
  { id: 'windowLevel', label: 'tool.windowLevel', key: 'W' },
  { id: 'scroll', label: 'tool.scroll', key: 'S' },
  { id: 'pan', label: 'tool.pan', key: 'P' },
  { id: 'zoom', label: 'tool.zoom', key: 'Z' },
  { id: 'length', label: 'tool.length', key: 'L' },
  { id: 'angle', label: 'tool.angle', key: 'A' },
  { id: 'rectangle', label: 'tool.rectangle', key: 'R' },
  { id: 'ellipse', label: 'tool.ellipse', key: 'E' },
  { id: 'probe', label: 'tool.probe', key: 'B' },
];

function studyInfo(s: DicomJson): StudyInfo {
  return {
    patientName: str(s, Tag.PatientName),
    patientId: str(s, Tag.PatientID),
    birthDate: str(s, Tag.PatientBirthDate),
    sex: str(s, Tag.PatientSex),
    studyDate: str(s, Tag.StudyDate),
    studyDescription: str(s, Tag.StudyDescription),
    institution: str(s, Tag.InstitutionName),
  };
}

type StudyState =
  | { kind: 'loading' }
  | { kind: 'error'; message: string }
  | { kind: 'ready'; info: StudyInfo; record: DicomJson };

/**
 * How a viewport showing a series of study `other` is marked beside the study being read: from before
 * it (prior), after it (later), or neither known (other: no date, or the same date and time).
 */
function markOf(other: StudySummary, current: DicomJson): Exclude<StudyMark, 'current'> {
  const date = str(current, Tag.StudyDate).trim();
  if (!other.StudyDate || !date) return 'other';
  const a = `${other.StudyDate}${other.StudyTime}`;
  const b = `${date}${str(current, Tag.StudyTime).trim()}`;
  return a < b ? 'prior' : a > b ? 'later' : 'other';
}

export default function ViewerPage({
  studyUID,
  toolbarEnd,
  home = true,
  priors: priorsEnabled = true,
}: {
  studyUID: string;
  /** Extra toolbar buttons of the shell (sharing), at the end of the toolbar. */
  toolbarEnd?: ReactNode;
  /** Whether the way back to the study list is offered (not to a share link's visitor). */
  home?: boolean;
  /**
   * Whether the patient's other studies are listed: not to a share link's visitor, whose session reads
   * that one study only (the archive would answer it alone).
   */
  priors?: boolean;
}) {
  const t = useT();
  const [studyState, setStudyState] = useState<StudyState>({ kind: 'loading' });
  const [series, setSeries] = useState<SeriesEntry[]>([]);
  const [layout, setLayout] = useState<Layout>('1x1');
  const [slots, setSlots] = useState<(string | null)[]>([null, null, null, null]);
  const [active, setActive] = useState(0);
  const [tool, setTool] = useState<PrimaryTool>(defaultPrimaryTool);
  const [cine, setCine] = useState(false);
  const [fps, setFps] = useState(15);
  const [sync, setSync] = useState(true);
  const [help, setHelp] = useState(false);
  const [firstShown, setFirstShown] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const [ready, setReady] = useState(false);
  const [priors, setPriors] = useState<PriorsState>({ kind: 'waiting' });
  /** The requests for other studies and their series, ended when the page or the study changes. */
  const priorsAbort = useRef<AbortController | null>(null);

  // Cornerstone session for the page's lifetime. Its start (the WebGL context, the decode and
  // frame-fetch workers, the viewports) holds the main thread for about a second on a PC without a
  // GPU: when the first slice has already arrived, the first view draws it and the browser shows it
  // before that start begins (first-view.ts).
  // biome-ignore lint/correctness/useExhaustiveDependencies: the session is the page's, not the study's
  useEffect(() => {
    let cancelled = false;
    installTestHooks();
    resetFirstView();
    const start = () => {
      if (cancelled) return;
      viewerStarting(studyUID);
      getSession();
      setReady(true);
    };
    if (firstFrameArrived(studyUID)) {
      const giveUp = new Promise((resolve) => setTimeout(resolve, FIRST_VIEW_WAIT_MS));
      void Promise.race([firstViewSettled(), giveUp]).then(afterNextPaint).then(start);
    } else {
      start();
    }
    return () => {
      cancelled = true;
      resetPrefetch();
      destroySession();
    };
  }, []);

  // Study, series and metadata.
  // biome-ignore lint/correctness/useExhaustiveDependencies: t only formats messages
  useEffect(() => {
    let cancelled = false;
    setStudyState({ kind: 'loading' });
    priorsAbort.current?.abort();
    setPriors({ kind: 'waiting' });
    setSeries([]);
    setSlots([null, null, null, null]);
    const loaded = loadStudy(studyUID);
    loaded.record.then(
      ({ study, series: seriesJson }) => {
        if (cancelled) return;
        setStudyState({ kind: 'ready', info: studyInfo(study), record: study });
        const summaries = seriesJson.map((s) => summarizeSeries(studyUID, s));
        setSeries(summaries.map((summary) => ({ summary, state: 'loading' })));
        let placed = false;
        for (const summary of summaries) {
          loaded.metadata(summary.SeriesInstanceUID).then(
            (instances) => {
              if (cancelled) return;
              const displaySet = buildDisplaySet(summary, instances);
              setSeries((prev) =>
                prev.map((e) =>
                  e.summary.SeriesInstanceUID === summary.SeriesInstanceUID
                    ? { summary, state: 'ready', displaySet }
                    : e,
                ),
              );
              if (!placed && !displaySet.unsupported) {
                placed = true;
                setSlots((prev) => (prev[0] ? prev : [summary.SeriesInstanceUID, ...prev.slice(1)]));
              }
            },
            (e) => {
              if (cancelled) return;
              const message = t('error.seriesLoad', { message: describeError(e, t) });
              setSeries((prev) =>
                prev.map((x) =>
                  x.summary.SeriesInstanceUID === summary.SeriesInstanceUID
                    ? { summary, state: 'error', message }
                    : x,
                ),
              );
            },
          );
        }
      },
      (e) => {
        if (cancelled) return;
        const message =
          e instanceof DicomwebError && e.status === 404
            ? t('error.studyNotFound')
            : t('error.studyLoad', { message: describeError(e, t) });
        setStudyState({ kind: 'error', message });
      },
    );
    return () => {
      cancelled = true;
    };
  }, [studyUID, attempt]);

  // The patient's other studies: asked for once the study's first image is on screen (or after a
  // while), with a low fetch priority, so that they never delay it.
  // biome-ignore lint/correctness/useExhaustiveDependencies: t only formats messages
  useEffect(() => {
    if (!priorsEnabled || !firstShown || studyState.kind !== 'ready' || priors.kind !== 'waiting') return;
    const abort = new AbortController();
    priorsAbort.current = abort;
    setPriors({ kind: 'loading' });
    findPriorStudies(studyState.record, abort.signal).then(
      (found) => {
        if (abort.signal.aborted) return;
        setPriors({
          kind: 'ready',
          withheld: found.withheld,
          more: found.more,
          studies: found.studies.map((summary) => ({
            summary,
            info: studyInfo(summary.record),
            mark: markOf(summary, studyState.record),
            expanded: false,
            series: null,
          })),
        });
      },
      (e) => {
        if (abort.signal.aborted) return;
        setPriors({
          kind: 'error',
          message: t('viewer.otherStudiesError', { message: describeError(e, t) }),
        });
      },
    );
  }, [priorsEnabled, firstShown, studyState, priors.kind]);
  useEffect(
    () => () => {
      priorsAbort.current?.abort();
    },
    [],
  );

  const updatePrior = (uid: string, fn: (p: PriorStudy) => PriorStudy) =>
    setPriors((prev) =>
      prev.kind === 'ready'
        ? {
            ...prev,
            studies: prev.studies.map((p) => (p.summary.StudyInstanceUID === uid ? fn(p) : p)),
          }
        : prev,
    );

  const priorsRef = useRef(priors);
  priorsRef.current = priors;
  /** Expands or collapses another study; its series are asked for the first time it is expanded. */
  const togglePrior = (uid: string) => {
    const now = priorsRef.current;
    const prior =
      now.kind === 'ready' ? now.studies.find((p) => p.summary.StudyInstanceUID === uid) : undefined;
    if (!prior) return;
    const fetchNow = !prior.expanded && (prior.series === null || prior.series.state === 'error');
    updatePrior(uid, (p) => ({
      ...p,
      expanded: !p.expanded,
      series: fetchNow ? { state: 'loading' } : p.series,
    }));
    if (fetchNow) loadPriorSeries(uid);
  };

  /** The series of another study (QIDO), then each one's metadata (WADO-RS), all with low priority. */
  const loadPriorSeries = (uid: string) => {
    const signal = priorsAbort.current?.signal;
    priorSeries(uid, signal).then(
      (summaries) => {
        if (signal?.aborted) return;
        updatePrior(uid, (p) => ({
          ...p,
          series: {
            state: 'ready',
            entries: summaries.map((summary) => ({ summary, state: 'loading' }) as SeriesEntry),
          },
        }));
        for (const summary of summaries) {
          const set = (entry: SeriesEntry) =>
            updatePrior(uid, (p) =>
              p.series?.state === 'ready'
                ? {
                    ...p,
                    series: {
                      state: 'ready',
                      entries: p.series.entries.map((e) =>
                        e.summary.SeriesInstanceUID === summary.SeriesInstanceUID ? entry : e,
                      ),
                    },
                  }
                : p,
            );
          priorDisplaySet(summary, signal).then(
            (displaySet) => {
              if (!signal?.aborted) set({ summary, state: 'ready', displaySet });
            },
            (e) => {
              if (signal?.aborted) return;
              set({
                summary,
                state: 'error',
                message: t('error.seriesLoad', { message: describeError(e, t) }),
              });
            },
          );
        }
      },
      (e) => {
        if (signal?.aborted) return;
        updatePrior(uid, (p) => ({
          ...p,
          series: { state: 'error', message: t('error.seriesLoad', { message: describeError(e, t) }) },
        }));
      },
    );
  };

  const priorStudies = useMemo(() => (priors.kind === 'ready' ? priors.studies : []), [priors]);
  const bySeries = useMemo(() => {
    const m = new Map<string, SeriesEntry>(series.map((s) => [s.summary.SeriesInstanceUID, s]));
    for (const p of priorStudies) {
      if (p.series?.state !== 'ready') continue;
      for (const e of p.series.entries)
        if (!m.has(e.summary.SeriesInstanceUID)) m.set(e.summary.SeriesInstanceUID, e);
    }
    return m;
  }, [series, priorStudies]);
  const priorByUID = useMemo(
    () => new Map(priorStudies.map((p) => [p.summary.StudyInstanceUID, p])),
    [priorStudies],
  );
  const slotCount = LAYOUT_SLOTS[layout];
  const contentFor = (i: number): ViewportContent => {
    const uid = slots[i];
    if (!uid) {
      if (studyState.kind === 'loading' || (series.some((s) => s.state === 'loading') && i === 0))
        return { kind: 'loading' };
      // A study of reports and other objects without images says so, not "drag a series here".
      const ready = series.flatMap((s) => (s.state === 'ready' ? [s.displaySet] : []));
      const noImages =
        series.length > 0 && ready.length === series.length && ready.every((d) => d.unsupported);
      return { kind: 'empty', noImages, documents: noImages && ready.some((d) => d.documents.length > 0) };
    }
    const e = bySeries.get(uid);
    if (!e || e.state === 'loading') return { kind: 'loading' };
    if (e.state === 'error') return { kind: 'error', message: e.message };
    if (e.displaySet.unsupported)
      return { kind: 'error', message: t('error.unsupported', { modality: e.summary.Modality || '?' }) };
    return { kind: 'ready', displaySet: e.displaySet };
  };

  /** The study a viewport shows, and how it is marked beside the one being read. */
  const studyOf = (i: number): { info: StudyInfo | null; mark?: StudyMark } => {
    const current = studyState.kind === 'ready' ? studyState.info : null;
    const uid = slots[i];
    const entry = uid ? bySeries.get(uid) : undefined;
    const other = entry && entry.summary.StudyInstanceUID !== studyUID;
    if (!other) return { info: current };
    const prior = priorByUID.get(entry.summary.StudyInstanceUID);
    return { info: prior?.info ?? null, mark: prior?.mark ?? 'prior' };
  };

  const shownIn = useMemo(() => {
    const m = new Map<string, number[]>();
    slots.slice(0, slotCount).forEach((uid, i) => {
      if (uid) m.set(uid, [...(m.get(uid) ?? []), i]);
    });
    return m;
  }, [slots, slotCount]);

  const changeLayout = (l: Layout) => {
    setLayout(l);
    const n = LAYOUT_SLOTS[l];
    setSlots((prev) => {
      const next = [...prev];
      for (let i = n; i < 4; i++) next[i] = null;
      const images = series
        .filter((s) => s.state === 'ready' && !s.displaySet.unsupported)
        .map((s) => s.summary.SeriesInstanceUID);
      let k = 0;
      for (let i = 0; i < n; i++) {
        if (next[i]) continue;
        const unused = images.filter((u) => !next.includes(u));
        next[i] = unused[0] ?? images[k++ % Math.max(1, images.length)] ?? null;
      }
      return next;
    });
    if (active >= n) setActive(0);
  };

  /** Some viewport shows another study: the others say they show the current one. */
  const comparing = Array.from({ length: slotCount }, (_, i) => studyOf(i).mark).some(Boolean);

  const activeId = VIEWPORT_IDS[active];
  const activeSeries = slots[active] ? bySeries.get(slots[active]!) : undefined;
  const activeDs: DisplaySet | undefined =
    activeSeries?.state === 'ready' ? activeSeries.displaySet : undefined;
  const isCT = activeDs?.Modality === 'CT';
  const [fileWindowCount, setFileWindowCount] = useState(0);

  const onImageChange = useCallback(
    (viewportId: string) => {
      if (!firstShown) setFirstShown(true);
      if (viewportId === activeId) setFileWindowCount(actions.fileWindows(viewportId).length);
      // Only the viewport the user drives leads; followers must not drive it back while they load.
      if (!sync || viewportId !== activeId) return;
      const others = VIEWPORT_IDS.slice(0, slotCount).filter((v) => v !== viewportId);
      actions.syncSlices(viewportId, others);
    },
    [firstShown, sync, slotCount, activeId],
  );

  // Thumbnails wait for the first image, so they do not compete with it on a slow link.
  useEffect(() => {
    if (firstShown) return;
    const id = setTimeout(() => setFirstShown(true), 4000);
    return () => clearTimeout(id);
  }, [firstShown]);

  // Cine follows the active viewport.
  useEffect(() => {
    if (!cine) return;
    actions.playCine(activeId, fps);
    return () => actions.stopCine(activeId);
  }, [cine, fps, activeId]);

  const chooseTool = (id: PrimaryTool) => {
    setTool(id);
    setPrimaryTool(id);
  };

  const keyHandler = useRef<(e: KeyboardEvent) => void>(() => undefined);
  keyHandler.current = (e: KeyboardEvent) => {
    const target = e.target as HTMLElement;
    if (target.closest('input, select, textarea')) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    const upper = k.toUpperCase();
    const toolHit = e.shiftKey ? undefined : TOOLS.find((x) => x.key === upper);
    const preset = CT_PRESETS.find((p) => p.key === k);
    const layoutKey: Record<string, Layout> = { Digit1: '1x1', Digit2: '1x2', Digit3: '2x2' };
    const action = (): boolean => {
      if (help && k === 'Escape') setHelp(false);
      else if (k === '?') setHelp((h) => !h);
      else if (k === 'ArrowDown' || k === 'ArrowRight') actions.scroll(activeId, 1);
      else if (k === 'ArrowUp' || k === 'ArrowLeft') actions.scroll(activeId, -1);
      else if (k === 'PageDown') actions.scroll(activeId, 10);
      else if (k === 'PageUp') actions.scroll(activeId, -10);
      else if (k === 'Home') actions.scrollTo(activeId, 'first');
      else if (k === 'End') actions.scrollTo(activeId, 'last');
      else if (k === ' ') setCine((c) => !c);
      else if (k === 'Tab') setActive((a) => (a + (e.shiftKey ? slotCount - 1 : 1)) % slotCount);
      else if (e.shiftKey && layoutKey[e.code]) changeLayout(layoutKey[e.code]);
      else if (k === 'Escape') actions.reset(activeId);
      else if (k === 'Delete' || k === 'Backspace') actions.clearMeasurements(activeId);
      else if (toolHit) chooseTool(toolHit.id);
      else if (upper === 'F') actions.fit(activeId);
      else if (upper === 'T') actions.rotate90(activeId);
      else if (upper === 'H') actions.flip(activeId, 'h');
      else if (upper === 'V') actions.flip(activeId, 'v');
      else if (upper === 'I') actions.invert(activeId);
      else if (k === '0') actions.applyPreset(activeId, 'default');
      else if (preset) actions.applyPreset(activeId, preset.id);
      else return false;
      return true;
    };
    if (action()) e.preventDefault();
  };
  useEffect(() => {
    const fn = (e: KeyboardEvent) => keyHandler.current(e);
    window.addEventListener('keydown', fn);
    return () => window.removeEventListener('keydown', fn);
  }, []);

  const selectSeries = (uid: string) => {
    setSlots((prev) => {
      const next = [...prev];
      next[active] = uid;
      return next;
    });
  };

  if (studyState.kind === 'error') {
    return (
      <div className="viewer-error" role="alert">
        <p>{studyState.message}</p>
        <div className="row">
          <button type="button" onClick={() => setAttempt((a) => a + 1)}>
            {t('error.retry')}
          </button>
          {home && (
            <button type="button" onClick={() => navigate('/')}>
              {t('viewer.back')}
            </button>
          )}
        </div>
      </div>
    );
  }

  return (
    <div className="viewer-page">
      <div className="toolbar" role="toolbar">
        {home && (
          <>
            <button type="button" onClick={() => navigate('/')} className="back">
              ← {t('viewer.back')}
            </button>
            <span className="sep" />
          </>
        )}
        <span className="group">
          {(['1x1', '1x2', '2x2'] as Layout[]).map((l) => (
            <button
              type="button"
              key={l}
              aria-pressed={layout === l}
              title={t('viewer.layoutN', { layout: l.replace('x', '×') })}
              onClick={() => changeLayout(l)}
              data-layout={l}
            >
              {l.replace('x', '×')}
            </button>
          ))}
        </span>
        <span className="sep" />
        <span className="group">
          {TOOLS.map((x) => (
            <button
              type="button"
              key={x.id}
              aria-pressed={tool === x.id}
              title={t('app.withShortcut', { label: t(x.label), key: x.key })}
              data-tool={x.id}
              onClick={() => chooseTool(x.id)}
            >
              {t(x.label)}
            </button>
          ))}
        </span>
        <span className="sep" />
        <select
          aria-label={t('tool.presets')}
          title={t('tool.presets')}
          value=""
          data-testid="preset-select"
          onChange={(e) => {
            if (e.target.value) actions.applyPreset(activeId, e.target.value);
          }}
        >
          <option value="">{t('tool.presets')}</option>
          <option value="default">{t('preset.default')} (0)</option>
          {isCT &&
            CT_PRESETS.map((p) => (
              <option key={p.id} value={p.id}>
                {t(p.label)} ({p.key})
              </option>
            ))}
          {Array.from({ length: fileWindowCount }, (_, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: the file's windows are positional
            <option key={i} value={`file${i}`}>
              {t('preset.file', { index: i + 1 })}
            </option>
          ))}
        </select>
        <span className="group">
          <button
            type="button"
            title={t('app.withShortcut', { label: t('tool.fit'), key: 'F' })}
            onClick={() => actions.fit(activeId)}
          >
            {t('tool.fit')}
          </button>
          <button
            type="button"
            title={t('app.withShortcut', { label: t('tool.rotate'), key: 'T' })}
            onClick={() => actions.rotate90(activeId)}
          >
            ⟳
          </button>
          <button
            type="button"
            title={t('app.withShortcut', { label: t('tool.flipH'), key: 'H' })}
            onClick={() => actions.flip(activeId, 'h')}
          >
            ⇋
          </button>
          <button
            type="button"
            title={t('app.withShortcut', { label: t('tool.flipV'), key: 'V' })}
            onClick={() => actions.flip(activeId, 'v')}
          >
            ⇵
          </button>
          <button
            type="button"
            title={t('app.withShortcut', { label: t('tool.invert'), key: 'I' })}
            onClick={() => actions.invert(activeId)}
          >
            ◑
          </button>
          <button
            type="button"
            title={t('app.withShortcut', { label: t('tool.reset'), key: 'Esc' })}
            onClick={() => actions.reset(activeId)}
          >
            {t('tool.reset')}
          </button>
          <button
            type="button"
            title={t('app.withShortcut', { label: t('tool.clearMeasurements'), key: 'Delete' })}
            onClick={() => actions.clearMeasurements(activeId)}
          >
            ✕
          </button>
        </span>
        <span className="sep" />
        <span className="group">
          <button
            type="button"
            aria-pressed={cine}
            title={t('app.withShortcut', { label: t('tool.cine'), key: t('key.space') })}
            onClick={() => setCine((c) => !c)}
          >
            {cine ? '■' : '▶'} {t('tool.cine')}
          </button>
          <label className="fps">
            <input
              type="number"
              min={1}
              max={60}
              value={fps}
              onChange={(e) => setFps(Math.max(1, Math.min(60, Number(e.target.value) || 1)))}
            />
            <span>{t('tool.fps')}</span>
          </label>
          <label className="toggle">
            <input type="checkbox" checked={sync} onChange={(e) => setSync(e.target.checked)} />
            <span>{t('tool.sync')}</span>
          </label>
        </span>
        <span className="spacer" />
        {toolbarEnd}
        <TransferSelect />
        <button
          type="button"
          title={t('app.withShortcut', { label: t('app.help'), key: '?' })}
          onClick={() => setHelp(true)}
        >
          ?
        </button>
      </div>
      <div className="viewer-body">
        <SeriesPanel
          series={series}
          current={studyState.kind === 'ready' ? studyState.info : null}
          currentModalities={
            studyState.kind === 'ready' ? values(studyState.record, Tag.ModalitiesInStudy).map(String) : []
          }
          priors={priorsEnabled ? priors : { kind: 'off' }}
          shownIn={shownIn}
          thumbnailsEnabled={firstShown && ready}
          onSelect={selectSeries}
          onTogglePrior={togglePrior}
        />
        <div className={`viewport-grid layout-${layout}`}>
          {studyState.kind === 'loading' && (
            <div className="viewport-message">{t('viewer.loadingStudy')}</div>
          )}
          {VIEWPORT_IDS.slice(0, slotCount).map((id, i) => (
            <ViewportView
              key={id}
              viewportId={id}
              sessionReady={ready}
              content={contentFor(i)}
              study={studyOf(i).info}
              mark={studyOf(i).mark ?? (comparing ? 'current' : undefined)}
              active={i === active && slotCount > 1}
              onActivate={() => setActive(i)}
              onDropSeries={(uid) =>
                setSlots((prev) => {
                  const next = [...prev];
                  next[i] = uid;
                  return next;
                })
              }
              onImageChange={onImageChange}
            />
          ))}
        </div>
      </div>
      {help && <HelpPanel onClose={() => setHelp(false)} />}
    </div>
  );
}

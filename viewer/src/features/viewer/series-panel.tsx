import { useEffect, useRef, useState } from 'react';
import { formatDicomDate, useLanguage, useT } from '../../i18n';
import type { DisplaySet, SeriesSummary } from './display-sets';
import type { StudySummary, Withheld } from './priors';
import { drawThumbnail } from './thumbnail';
import { DRAG_TYPE, type StudyInfo, type StudyMark } from './viewport-view';

export type SeriesEntry =
  | { summary: SeriesSummary; state: 'loading' }
  | { summary: SeriesSummary; state: 'error'; message: string }
  | { summary: SeriesSummary; state: 'ready'; displaySet: DisplaySet };

/** Another study of the patient, listed under the current one. */
export interface PriorStudy {
  summary: StudySummary;
  /** patient and study, for the overlay of a viewport showing one of its series */
  info: StudyInfo;
  /** before (prior) or after (later) the study being read, or neither known (other) */
  mark: Exclude<StudyMark, 'current'>;
  expanded: boolean;
  /** its series: null until it is first expanded */
  series:
    | null
    | { state: 'loading' }
    | { state: 'error'; message: string }
    | { state: 'ready'; entries: SeriesEntry[] };
}

export type PriorsState =
  /** not listed (a share link's session) */
  | { kind: 'off' }
  /** asked for once the first image is shown */
  | { kind: 'waiting' }
  | { kind: 'loading' }
  | { kind: 'error'; message: string }
  | {
      kind: 'ready';
      /** the patient's other studies, newest first */
      studies: PriorStudy[];
      /** studies of the same PatientID that are another patient's: not listed, only counted */
      withheld: Withheld;
      /** the archive has more studies of this PatientID than were listed */
      more: boolean;
    };

interface Props {
  series: SeriesEntry[];
  /** the study being read (once known) */
  current: StudyInfo | null;
  currentModalities: string[];
  priors: PriorsState;
  shownIn: Map<string, number[]>;
  thumbnailsEnabled: boolean;
  onSelect(seriesUID: string): void;
  onTogglePrior(studyUID: string): void;
}

export function SeriesPanel({
  series,
  current,
  currentModalities,
  priors,
  shownIn,
  thumbnailsEnabled,
  onSelect,
  onTogglePrior,
}: Props) {
  const t = useT();
  const others = priors.kind === 'ready' ? priors.studies : [];
  const items = (entries: SeriesEntry[]) =>
    entries.map((s) => (
      <SeriesItem
        key={s.summary.SeriesInstanceUID}
        entry={s}
        viewports={shownIn.get(s.summary.SeriesInstanceUID) ?? []}
        thumbnailsEnabled={thumbnailsEnabled}
        onSelect={onSelect}
      />
    ));
  return (
    <aside className="series-panel" aria-label={t('viewer.series')}>
      <h2>
        {t('viewer.series')}{' '}
        <span className="muted">({t('viewer.seriesCount', { count: series.length })})</span>
      </h2>
      {/* Beside other studies, the one being read comes first and says so. */}
      {others.length > 0 && current && (
        <div className="study-head current" data-testid="current-study">
          <span className="study-badge">{t('viewer.currentStudy')}</span>
          <StudyLine
            date={current.studyDate}
            modalities={currentModalities}
            description={current.studyDescription}
          />
        </div>
      )}
      <ul>{items(series)}</ul>
      {priors.kind === 'loading' && <p className="muted study-status">{t('viewer.otherStudiesLoading')}</p>}
      {priors.kind === 'error' && (
        <p className="error-text study-status" role="alert">
          {priors.message}
        </p>
      )}
      {others.length > 0 && (
        <section className="other-studies" aria-label={t('viewer.otherStudies', { count: others.length })}>
          <h2>{t('viewer.otherStudies', { count: others.length })}</h2>
          {others.map((p) => (
            <div
              key={p.summary.StudyInstanceUID}
              className={`other-study${p.expanded ? ' expanded' : ''}`}
              data-testid="other-study"
              data-study-uid={p.summary.StudyInstanceUID}
            >
              <button
                type="button"
                className="study-head"
                aria-expanded={p.expanded}
                title={t(p.expanded ? 'viewer.hideStudySeries' : 'viewer.showStudySeries')}
                onClick={() => onTogglePrior(p.summary.StudyInstanceUID)}
              >
                <span className="caret" aria-hidden="true">
                  {p.expanded ? '▾' : '▸'}
                </span>
                <StudyLine
                  date={p.summary.StudyDate}
                  modalities={p.summary.modalities}
                  description={p.summary.StudyDescription}
                />
              </button>
              {p.expanded && p.series?.state === 'loading' && (
                <p className="muted study-status">{t('viewer.loadingSeries')}</p>
              )}
              {p.expanded && p.series?.state === 'error' && (
                <p className="error-text study-status">{p.series.message}</p>
              )}
              {p.expanded && p.series?.state === 'ready' && (
                <ul>
                  {p.series.entries.length === 0 && (
                    <li className="muted study-status">{t('viewer.noSeries')}</li>
                  )}
                  {items(p.series.entries)}
                </ul>
              )}
            </div>
          ))}
          {priors.kind === 'ready' && priors.more && (
            <p className="muted study-status" data-testid="other-studies-more">
              {t('viewer.otherStudiesMore', { count: others.length })}
            </p>
          )}
        </section>
      )}
      {priors.kind === 'ready' && priors.withheld.count > 0 && <WithheldNote withheld={priors.withheld} />}
    </aside>
  );
}

/**
 * Studies that share the PatientID but not the issuer, name or birth date: another patient as far as
 * the viewer can tell. Only counted, with why: nothing of them is shown or offered for comparison.
 */
function WithheldNote({ withheld }: { withheld: Withheld }) {
  const t = useT();
  const reasons = [
    ['issuer', 'viewer.otherPatientIssuer'],
    ['name', 'viewer.otherPatientName'],
    ['birthDate', 'viewer.otherPatientBirthDate'],
  ] as const;
  return (
    <div className="other-patient-studies" data-testid="other-patient-studies" role="note">
      <p>{t('viewer.otherPatientStudies', { count: withheld.count })}</p>
      <ul>
        {reasons
          .filter(([r]) => withheld.reasons[r] > 0)
          .map(([r, key]) => (
            <li key={r} data-reason={r}>
              {t(key, { count: withheld.reasons[r] })}
            </li>
          ))}
      </ul>
    </div>
  );
}

/** A study's date, modalities and description, as listed in the panel. */
function StudyLine({
  date,
  modalities,
  description,
}: {
  date: string;
  modalities: string[];
  description: string;
}) {
  const t = useT();
  const lang = useLanguage();
  return (
    <span className="study-text">
      <span className="study-date" data-testid="study-date">
        {date ? formatDicomDate(date, lang) : t('viewer.noStudyDate')}
      </span>
      {modalities.length > 0 && (
        <span className="study-modalities" translate="no">
          {modalities.join(', ')}
        </span>
      )}
      {description && (
        <span className="study-desc" translate="no">
          {description}
        </span>
      )}
    </span>
  );
}

function SeriesItem({
  entry,
  viewports,
  thumbnailsEnabled,
  onSelect,
}: {
  entry: SeriesEntry;
  viewports: number[];
  thumbnailsEnabled: boolean;
  onSelect(uid: string): void;
}) {
  const t = useT();
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const [thumbFailed, setThumbFailed] = useState(false);
  const ds = entry.state === 'ready' ? entry.displaySet : null;
  useEffect(() => {
    if (!thumbnailsEnabled || !ds || ds.imageIds.length === 0 || !canvasRef.current) return;
    const mid = ds.imageIds[Math.floor(ds.imageIds.length / 2)];
    drawThumbnail(canvasRef.current, mid).catch(() => setThumbFailed(true));
  }, [thumbnailsEnabled, ds]);
  const s = entry.summary;
  const count = ds
    ? ds.multiFrame
      ? t('viewer.frames', { count: ds.imageIds.length })
      : t('viewer.images', { count: ds.imageIds.length })
    : s.NumberOfSeriesRelatedInstances !== undefined
      ? t('viewer.images', { count: s.NumberOfSeriesRelatedInstances })
      : '';
  return (
    <li
      className={`series-item${viewports.length ? ' shown' : ''}${ds?.unsupported ? ' unsupported' : ''}`}
      data-series-uid={s.SeriesInstanceUID}
      draggable={Boolean(ds && !ds.unsupported)}
      onDragStart={(e) => {
        e.dataTransfer.setData(DRAG_TYPE, s.SeriesInstanceUID);
        e.dataTransfer.effectAllowed = 'copy';
      }}
    >
      <button type="button" onClick={() => onSelect(s.SeriesInstanceUID)} disabled={!ds || ds.unsupported}>
        <canvas ref={canvasRef} width={96} height={96} className={`thumb${thumbFailed ? ' failed' : ''}`} />
        <span className="series-text">
          <span className="series-title" translate="no">
            {s.Modality} {s.SeriesNumber !== undefined ? `#${s.SeriesNumber}` : ''}
          </span>
          <span className="series-desc" translate="no">
            {s.SeriesDescription}
          </span>
          <span className="series-count">{count}</span>
          {entry.state === 'loading' && <span className="muted">{t('viewer.loadingSeries')}</span>}
          {entry.state === 'error' && <span className="error-text">{entry.message}</span>}
          {ds?.unsupported && <span className="muted">{t('viewer.noImages')}</span>}
          {viewports.length > 0 && <span className="shown-in">{viewports.map((v) => v + 1).join(', ')}</span>}
        </span>
      </button>
      {ds?.documents.map((d) => (
        <a key={d.url} className="series-document" href={d.url} target="_blank" rel="noopener" translate="no">
          {t('viewer.openDocument', { title: d.title })}
        </a>
      ))}
    </li>
  );
}

import { useEffect, useRef, useState } from 'react';
import { useT } from '../../i18n';
import type { DisplaySet, SeriesSummary } from './display-sets';
import { drawThumbnail } from './thumbnail';
import { DRAG_TYPE } from './viewport-view';

export type SeriesEntry =
  | { summary: SeriesSummary; state: 'loading' }
  | { summary: SeriesSummary; state: 'error'; message: string }
  | { summary: SeriesSummary; state: 'ready'; displaySet: DisplaySet };

interface Props {
  series: SeriesEntry[];
  shownIn: Map<string, number[]>;
  thumbnailsEnabled: boolean;
  onSelect(seriesUID: string): void;
}

export function SeriesPanel({ series, shownIn, thumbnailsEnabled, onSelect }: Props) {
  const t = useT();
  return (
    <aside className="series-panel" aria-label={t('viewer.series')}>
      <h2>
        {t('viewer.series')}{' '}
        <span className="muted">({t('viewer.seriesCount', { count: series.length })})</span>
      </h2>
      <ul>
        {series.map((s) => (
          <SeriesItem
            key={s.summary.SeriesInstanceUID}
            entry={s}
            viewports={shownIn.get(s.summary.SeriesInstanceUID) ?? []}
            thumbnailsEnabled={thumbnailsEnabled}
            onSelect={onSelect}
          />
        ))}
      </ul>
    </aside>
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

/**
 * What the archive holds and where (GET /api/statistics): the counts, the stored size, the blob store
 * and the index, and the free space of the local disks, with a warning when one runs low.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { formatNumber, type Language, type MessageKey, type T, useLanguage, useT } from '../../i18n';
import { describeError } from '../../lib/describe-error';
import { type DiskSpace, getStatistics, type Statistics } from '../../lib/server-api';
import { FormError } from '../../components/form-error';

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

/** Bytes in decimal units, as `df -H` shows them (1 GB = 10⁹ bytes): 2.4 TB, 203.4 GB. */
export function formatBytes(bytes: number, lang: Language): string {
  let i = 0;
  while (i < UNITS.length - 1 && bytes >= 1000 ** (i + 1)) i++;
  return `${formatNumber(bytes / 1000 ** i, i === 0 ? 0 : 1, lang)} ${UNITS[i]}`;
}

function DiskRows({ disk, label, lang, t }: { disk: DiskSpace; label: string; lang: Language; t: T }) {
  return (
    <>
      <tr>
        <th scope="row">{label}</th>
        <td translate="no" className="location">
          {disk.path}
        </td>
      </tr>
      <tr data-testid="storage-disk" data-path={disk.path} data-low={disk.low}>
        <th scope="row">{t('storage.free')}</th>
        <td className={disk.low ? 'error-text' : undefined}>
          {t('storage.freeOf', {
            free: formatBytes(disk.freeBytes, lang),
            total: formatBytes(disk.totalBytes, lang),
            percent: formatNumber(disk.freePercent, 1, lang),
          })}
        </td>
      </tr>
    </>
  );
}

export function StoragePage() {
  const t = useT();
  const lang = useLanguage();
  const [stats, setStats] = useState<Statistics | null>(null);
  const [error, setError] = useState('');
  const [loading, setLoading] = useState(false);
  const request = useRef<AbortController | null>(null);

  // biome-ignore lint/correctness/useExhaustiveDependencies: t only formats messages
  const reload = useCallback(async () => {
    request.current?.abort();
    const controller = new AbortController();
    request.current = controller;
    setLoading(true);
    setError('');
    try {
      setStats(await getStatistics(controller.signal));
    } catch (e) {
      if ((e as Error).name === 'AbortError') return;
      setStats(null);
      setError(describeError(e, t));
    }
    if (request.current === controller) setLoading(false);
  }, []);
  useEffect(() => {
    void reload();
    return () => request.current?.abort();
  }, [reload]);

  const count = (n: number) => formatNumber(n, 0, lang);
  const figures: [MessageKey, string, string][] = stats
    ? [
        ['storage.studies', 'storage-studies', count(stats.studies)],
        ['storage.series', 'storage-series', count(stats.series)],
        ['storage.instances', 'storage-instances', count(stats.instances)],
        ['storage.size', 'storage-size', formatBytes(stats.storedBytes, lang)],
      ]
    : [];
  /** Where the image files and the index are: label, test id, kind, location. */
  const places: [MessageKey, string, MessageKey, string | undefined][] = stats
    ? [
        [
          'storage.blobStore',
          'storage-blobs',
          stats.blobStore.kind === 's3' ? 'storage.kindS3' : 'storage.kindFilesystem',
          stats.blobStore.location,
        ],
        [
          'storage.index',
          'storage-index',
          stats.index.kind === 'postgresql' ? 'storage.kindPostgresql' : 'storage.kindSqlite',
          stats.index.location,
        ],
      ]
    : [];
  const disks = stats
    ? [
        ...(stats.disk ? [{ disk: stats.disk, label: t('storage.blobDisk') }] : []),
        ...(stats.index.disk ? [{ disk: stats.index.disk, label: t('storage.indexDisk') }] : []),
      ]
    : [];
  return (
    <section className="admin-section" data-testid="storage-page">
      <div className="admin-buttons">
        <button type="button" onClick={() => void reload()} disabled={loading} data-testid="storage-refresh">
          {t('storage.refresh')}
        </button>
      </div>
      <FormError message={error} />
      {stats === null && !error && <p className="muted">{t('admin.loading')}</p>}
      {disks
        .filter((d) => d.disk.low)
        .map(({ disk }) => (
          <div key={disk.path} className="storage-low" role="alert" data-testid="storage-low">
            <p>
              <strong>{t('storage.lowTitle')}</strong>{' '}
              {t('storage.lowFree', { percent: formatNumber(disk.freePercent, 1, lang) })}{' '}
              <span translate="no" className="location">
                {disk.path}
              </span>
            </p>
            <p>{t('storage.lowAdvice')}</p>
          </div>
        ))}
      {stats && (
        <div className="table-scroll">
          <table className="data-table storage-table">
            <tbody>
              {figures.map(([label, testId, text]) => (
                <tr key={testId}>
                  <th scope="row">{t(label)}</th>
                  <td data-testid={testId}>{text}</td>
                </tr>
              ))}
              {places.map(([label, testId, kind, location]) => (
                <tr key={testId}>
                  <th scope="row">{t(label)}</th>
                  <td data-testid={testId}>
                    {t(kind)}
                    <div translate="no" className="location">
                      {location}
                    </div>
                  </td>
                </tr>
              ))}
              {disks.map((d) => (
                <DiskRows key={d.disk.path} disk={d.disk} label={d.label} lang={lang} t={t} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      {stats && !stats.disk && (
        <p className="muted" data-testid="storage-s3">
          {t('storage.s3NoDisk')}
        </p>
      )}
    </section>
  );
}

import { useEffect, useMemo, useState } from 'react';
import { navigate, useLocation } from '../../app/router';
import { formatDicomDate, formatDicomTime, type MessageKey, useLanguage, useT } from '../../i18n';
import { type DicomJson, num, str, strs, Tag } from '../../lib/dicom-json';
import { loadDemoStudy, searchForStudies } from '../../lib/dicomweb-client';
import { describeError } from '../../lib/describe-error';
import { env } from '../../config/env';
import {
  datesReversed,
  daysAgo,
  emptyFilter,
  filterFromUrl,
  filterToUrl,
  hasCriteria,
  PAGE_SIZES,
  parseTypedDate,
  type SortKey,
  type StudyFilter,
  studyDateRange,
} from './search-params';
import { Field } from '../../components/field';
import { FormError } from '../../components/form-error';

interface StudyRow {
  uid: string;
  name: string;
  id: string;
  birth: string;
  sex: string;
  date: string;
  time: string;
  desc: string;
  mod: string;
  acc: string;
  series?: number;
  images?: number;
}

const MODALITIES = ['CT', 'MR', 'CR', 'DX', 'US', 'MG', 'XA', 'RF', 'NM', 'PT', 'OT', 'SR'];

function toRow(s: DicomJson): StudyRow {
  return {
    uid: str(s, Tag.StudyInstanceUID),
    name: str(s, Tag.PatientName),
    id: str(s, Tag.PatientID),
    birth: str(s, Tag.PatientBirthDate),
    sex: str(s, Tag.PatientSex),
    date: str(s, Tag.StudyDate),
    time: str(s, Tag.StudyTime),
    desc: str(s, Tag.StudyDescription),
    mod: strs(s, Tag.ModalitiesInStudy).join(', '),
    acc: str(s, Tag.AccessionNumber),
    series: num(s, Tag.NumberOfStudyRelatedSeries),
    images: num(s, Tag.NumberOfStudyRelatedInstances),
  };
}

function sortValue(r: StudyRow, k: SortKey): string | number {
  switch (k) {
    case 'name':
      return r.name.toLocaleLowerCase('vi');
    case 'id':
      return r.id;
    case 'birth':
      return r.birth;
    case 'date':
      return `${r.date}${r.time}`;
    case 'desc':
      return r.desc.toLocaleLowerCase('vi');
    case 'mod':
      return r.mod;
    case 'acc':
      return r.acc;
    case 'series':
      return r.series ?? -1;
    case 'images':
      return r.images ?? -1;
  }
}

const collator = new Intl.Collator('vi', { numeric: true, sensitivity: 'base' });

function sortRows(rows: StudyRow[], k: SortKey, dir: 'asc' | 'desc'): StudyRow[] {
  const sign = dir === 'asc' ? 1 : -1;
  return [...rows].sort((a, b) => {
    const va = sortValue(a, k);
    const vb = sortValue(b, k);
    const c =
      typeof va === 'number' && typeof vb === 'number' ? va - vb : collator.compare(String(va), String(vb));
    return c * sign;
  });
}

type State =
  | { kind: 'loading' }
  | { kind: 'error'; message: string }
  | { kind: 'done'; rows: StudyRow[]; truncated: boolean };

export function StudyListPage() {
  const t = useT();
  const lang = useLanguage();
  const location = useLocation();
  const filter = useMemo(() => filterFromUrl(location.searchParams), [location]);
  const queryKey = JSON.stringify([filter.name, filter.id, filter.acc, filter.from, filter.to, filter.mod]);
  const [state, setState] = useState<State>({ kind: 'loading' });
  const [attempt, setAttempt] = useState(0);

  // biome-ignore lint/correctness/useExhaustiveDependencies: queryKey captures the filter fields that are sent
  useEffect(() => {
    // A reversed range (from a bookmark or a typed URL) is not sent: the server would refuse it in English.
    if (datesReversed(filter)) {
      setState({ kind: 'error', message: t('search.dateOrder') });
      return;
    }
    const ac = new AbortController();
    setState({ kind: 'loading' });
    searchForStudies(
      {
        PatientName: filter.name,
        PatientID: filter.id,
        AccessionNumber: filter.acc,
        StudyDate: studyDateRange(filter),
        ModalitiesInStudy: filter.mod,
        limit: env.searchLimit + 1,
      },
      ac.signal,
    ).then(
      (studies) => {
        setState({
          kind: 'done',
          rows: studies.slice(0, env.searchLimit).map(toRow),
          truncated: studies.length > env.searchLimit,
        });
      },
      (e) => {
        if ((e as Error).name !== 'AbortError') setState({ kind: 'error', message: describeError(e, t) });
      },
    );
    return () => ac.abort();
  }, [queryKey, attempt]);

  const update = (patch: Partial<StudyFilter>, replace = false) =>
    navigate(filterToUrl({ ...filter, page: 1, ...patch }), { replace });

  return (
    <div className="study-list">
      <SearchForm filter={filter} onSearch={(f) => update(f)} />
      {state.kind === 'loading' && (
        <p className="status" role="status">
          {t('list.loading')}
        </p>
      )}
      {state.kind === 'error' && (
        <div className="error-box" role="alert">
          <p>{state.message}</p>
          <button type="button" onClick={() => setAttempt((a) => a + 1)}>
            {t('error.retry')}
          </button>
        </div>
      )}
      {state.kind === 'done' && state.rows.length === 0 && !hasCriteria(filter) && <EmptyArchive />}
      {state.kind === 'done' && state.rows.length === 0 && hasCriteria(filter) && (
        <p className="status" data-testid="no-match">
          {t('list.noMatch')}
        </p>
      )}
      {state.kind === 'done' && state.rows.length > 0 && (
        <StudyTable
          rows={state.rows}
          truncated={state.truncated}
          filter={filter}
          lang={lang}
          onChange={(patch) => navigate(filterToUrl({ ...filter, ...patch }))}
        />
      )}
    </div>
  );
}

function SearchForm({
  filter,
  onSearch,
}: {
  filter: StudyFilter;
  onSearch: (f: Partial<StudyFilter>) => void;
}) {
  const t = useT();
  const lang = useLanguage();
  const fmt = (d: string) => (d ? formatDicomDate(d, lang) : '');
  const [name, setName] = useState(filter.name);
  const [id, setId] = useState(filter.id);
  const [acc, setAcc] = useState(filter.acc);
  const [from, setFrom] = useState(fmt(filter.from));
  const [to, setTo] = useState(fmt(filter.to));
  const [badDate, setBadDate] = useState(false);
  /** the typed range starts after it ends */
  const [reversed, setReversed] = useState(false);
  // biome-ignore lint/correctness/useExhaustiveDependencies: reset the fields when the URL changes
  useEffect(() => {
    setName(filter.name);
    setId(filter.id);
    setAcc(filter.acc);
    setFrom(fmt(filter.from));
    setTo(fmt(filter.to));
    setBadDate(false);
    setReversed(false);
  }, [filter.name, filter.id, filter.acc, filter.from, filter.to, lang]);

  const submit = (extra: Partial<StudyFilter> = {}) => {
    const f = parseTypedDate(from);
    const tt = parseTypedDate(to);
    if (f === null || tt === null) {
      setBadDate(true);
      setReversed(false);
      return;
    }
    if (datesReversed({ from: f, to: tt })) {
      setBadDate(true);
      setReversed(true);
      return;
    }
    setBadDate(false);
    setReversed(false);
    onSearch({ name: name.trim(), id: id.trim(), acc: acc.trim(), from: f, to: tt, ...extra });
  };
  const quick = (fromDays: number | null, toDays: number | null) =>
    onSearch({
      name: name.trim(),
      id: id.trim(),
      acc: acc.trim(),
      from: fromDays === null ? '' : daysAgo(fromDays),
      to: toDays === null ? '' : daysAgo(toDays),
    });
  const datePlaceholder = t('search.datePlaceholder');
  const isRange = (a: number, b: number) => filter.from === daysAgo(a) && filter.to === daysAgo(b);

  return (
    <form
      className="search-form"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <Field
        label={t('search.patientName')}
        name="name"
        value={name}
        placeholder={t('search.patientNamePlaceholder')}
        onChange={(e) => setName(e.target.value)}
        autoComplete="off"
      />
      <Field
        label={t('search.patientId')}
        name="id"
        value={id}
        onChange={(e) => setId(e.target.value)}
        autoComplete="off"
      />
      <Field
        label={t('search.accession')}
        name="acc"
        value={acc}
        onChange={(e) => setAcc(e.target.value)}
        autoComplete="off"
      />
      <Field
        label={t('search.dateFrom')}
        name="from"
        className={badDate ? 'invalid' : ''}
        value={from}
        placeholder={datePlaceholder}
        onChange={(e) => setFrom(e.target.value)}
        size={10}
      />
      <Field
        label={t('search.dateTo')}
        name="to"
        className={badDate ? 'invalid' : ''}
        value={to}
        placeholder={datePlaceholder}
        onChange={(e) => setTo(e.target.value)}
        size={10}
      />
      <label>
        <span>{t('search.modality')}</span>
        <select name="mod" value={filter.mod} onChange={(e) => submit({ mod: e.target.value })}>
          <option value="">{t('search.anyModality')}</option>
          {MODALITIES.map((m) => (
            <option key={m} value={m} translate="no">
              {m}
            </option>
          ))}
        </select>
      </label>
      <div className="search-actions">
        <button type="submit" className="primary">
          {t('search.search')}
        </button>
        <button type="button" onClick={() => navigate(filterToUrl(emptyFilter))}>
          {t('search.clear')}
        </button>
      </div>
      <FormError message={reversed ? t('search.dateOrder') : undefined} testId="search-date-error" />
      <div className="quick-dates">
        <button type="button" aria-pressed={isRange(0, 0)} onClick={() => quick(0, 0)}>
          {t('search.today')}
        </button>
        <button type="button" aria-pressed={isRange(1, 1)} onClick={() => quick(1, 1)}>
          {t('search.yesterday')}
        </button>
        <button type="button" aria-pressed={isRange(6, 0)} onClick={() => quick(6, 0)}>
          {t('search.last7')}
        </button>
        <button type="button" aria-pressed={isRange(29, 0)} onClick={() => quick(29, 0)}>
          {t('search.last30')}
        </button>
        <button type="button" aria-pressed={!filter.from && !filter.to} onClick={() => quick(null, null)}>
          {t('search.anyDate')}
        </button>
      </div>
    </form>
  );
}

const COLUMNS: { key: SortKey; label: MessageKey; numeric?: boolean }[] = [
  { key: 'name', label: 'list.patient' },
  { key: 'id', label: 'list.patientId' },
  { key: 'birth', label: 'list.birthDate' },
  { key: 'date', label: 'list.studyDate' },
  { key: 'desc', label: 'list.description' },
  { key: 'mod', label: 'list.modalities' },
  { key: 'acc', label: 'list.accession' },
  { key: 'series', label: 'list.series', numeric: true },
  { key: 'images', label: 'list.instances', numeric: true },
];

function StudyTable({
  rows,
  truncated,
  filter,
  lang,
  onChange,
}: {
  rows: StudyRow[];
  truncated: boolean;
  filter: StudyFilter;
  lang: 'vi' | 'en';
  onChange: (patch: Partial<StudyFilter>) => void;
}) {
  const t = useT();
  const sorted = useMemo(() => sortRows(rows, filter.sort, filter.dir), [rows, filter.sort, filter.dir]);
  const pages = Math.max(1, Math.ceil(sorted.length / filter.size));
  const page = Math.min(filter.page, pages);
  const shown = sorted.slice((page - 1) * filter.size, page * filter.size);
  const sexKey = (s: string): MessageKey | null => (s === 'M' || s === 'F' || s === 'O' ? `sex.${s}` : null);
  const lq = new URLSearchParams(window.location.search).get('lang');
  const studyHref = (uid: string) => `/viewer/${uid}${lq ? `?lang=${lq}` : ''}`;

  return (
    <>
      <div className="list-summary">
        <span data-testid="study-count">{t('list.count', { count: rows.length })}</span>
        {truncated && <span className="warning">{t('list.tooMany', { count: rows.length })}</span>}
      </div>
      <table className="studies">
        <thead>
          <tr>
            {COLUMNS.map((c) => {
              const active = filter.sort === c.key;
              return (
                <th
                  key={c.key}
                  className={c.numeric ? 'num' : ''}
                  aria-sort={active ? (filter.dir === 'asc' ? 'ascending' : 'descending') : 'none'}
                >
                  <button
                    type="button"
                    title={t('list.sortBy', { column: t(c.label) })}
                    onClick={() =>
                      onChange({
                        sort: c.key,
                        dir: active
                          ? filter.dir === 'asc'
                            ? 'desc'
                            : 'asc'
                          : c.key === 'date'
                            ? 'desc'
                            : 'asc',
                        page: 1,
                      })
                    }
                  >
                    {t(c.label)}
                    <span className="sort-mark">{active ? (filter.dir === 'asc' ? ' ▲' : ' ▼') : ''}</span>
                  </button>
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>
          {shown.map((r) => {
            const sk = sexKey(r.sex);
            return (
              <tr
                key={r.uid}
                data-study-uid={r.uid}
                onClick={(e) => {
                  if ((e.target as HTMLElement).closest('a')) return;
                  navigate(studyHref(r.uid));
                }}
              >
                <td>
                  <a
                    href={studyHref(r.uid)}
                    title={t('list.open')}
                    onClick={(e) => {
                      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
                      e.preventDefault();
                      navigate(studyHref(r.uid));
                    }}
                  >
                    {r.name ? (
                      <span translate="no">{r.name}</span>
                    ) : (
                      <span className="muted">{t('list.noName')}</span>
                    )}
                  </a>
                  {sk && <span className="sex"> ({t(sk)})</span>}
                </td>
                <td translate="no">{r.id}</td>
                <td>{formatDicomDate(r.birth, lang)}</td>
                <td>
                  {formatDicomDate(r.date, lang)} {r.time && formatDicomTime(r.time)}
                </td>
                <td translate="no">{r.desc}</td>
                <td translate="no">{r.mod}</td>
                <td translate="no">{r.acc}</td>
                <td className="num">{r.series ?? ''}</td>
                <td className="num">{r.images ?? ''}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <div className="pager">
        <button type="button" disabled={page <= 1} onClick={() => onChange({ page: page - 1 })}>
          {t('list.prev')}
        </button>
        <span>{t('list.page', { page, pages })}</span>
        <button type="button" disabled={page >= pages} onClick={() => onChange({ page: page + 1 })}>
          {t('list.next')}
        </button>
        <label>
          <span>{t('list.pageSize')}</span>
          <select value={filter.size} onChange={(e) => onChange({ size: Number(e.target.value), page: 1 })}>
            {PAGE_SIZES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
      </div>
    </>
  );
}

function EmptyArchive() {
  const t = useT();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  return (
    <div className="empty-archive" data-testid="empty-archive">
      <h2>{t('empty.title')}</h2>
      <p>{t('empty.body')}</p>
      <button
        type="button"
        className="primary"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          setError('');
          try {
            const uid = await loadDemoStudy();
            navigate(`/viewer/${uid}`);
          } catch (e) {
            setError(t('error.demo', { message: describeError(e, t) }));
            setBusy(false);
          }
        }}
      >
        {busy ? t('empty.loading') : t('empty.loadDemo')}
      </button>
      {error && (
        <p className="error-box" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

/** The study search lives in the URL so that a search can be bookmarked and shared. */
export type SortKey = 'name' | 'id' | 'birth' | 'date' | 'desc' | 'mod' | 'acc' | 'series' | 'images';

export interface StudyFilter {
  name: string;
  id: string;
  acc: string;
  /** YYYYMMDD or '' */
  from: string;
  to: string;
  mod: string;
  sort: SortKey;
  dir: 'asc' | 'desc';
  page: number;
  size: number;
}

const SORT_KEYS: SortKey[] = ['name', 'id', 'birth', 'date', 'desc', 'mod', 'acc', 'series', 'images'];
export const PAGE_SIZES = [25, 50, 100];

export const emptyFilter: StudyFilter = {
  name: '',
  id: '',
  acc: '',
  from: '',
  to: '',
  mod: '',
  sort: 'date',
  dir: 'desc',
  page: 1,
  size: 25,
};

const ymd = /^\d{8}$/;

export function filterFromUrl(params: URLSearchParams): StudyFilter {
  const get = (k: string) => params.get(k)?.trim() ?? '';
  const sort = get('sort') as SortKey;
  const size = Number(get('size'));
  const page = Number(get('page'));
  return {
    // PatientName/PatientID/AccessionNumber/StudyDate/ModalitiesInStudy (DICOM keywords) are accepted too,
    // so links like /?PatientName=... work.
    name: get('name') || get('PatientName'),
    id: get('id') || get('PatientID'),
    acc: get('acc') || get('AccessionNumber'),
    from: ymd.test(get('from')) ? get('from') : (get('StudyDate').split('-')[0] ?? ''),
    to: ymd.test(get('to'))
      ? get('to')
      : (get('StudyDate').split('-')[1] ?? get('StudyDate').split('-')[0] ?? ''),
    mod: (get('mod') || get('ModalitiesInStudy')).toUpperCase(),
    sort: SORT_KEYS.includes(sort) ? sort : emptyFilter.sort,
    dir: get('dir') === 'asc' ? 'asc' : get('dir') === 'desc' ? 'desc' : emptyFilter.dir,
    page: Number.isInteger(page) && page > 0 ? page : 1,
    size: PAGE_SIZES.includes(size) ? size : emptyFilter.size,
  };
}

export function filterToUrl(f: StudyFilter): string {
  const p = new URLSearchParams();
  if (f.name) p.set('name', f.name);
  if (f.id) p.set('id', f.id);
  if (f.acc) p.set('acc', f.acc);
  if (f.from) p.set('from', f.from);
  if (f.to) p.set('to', f.to);
  if (f.mod) p.set('mod', f.mod);
  if (f.sort !== emptyFilter.sort || f.dir !== emptyFilter.dir) {
    p.set('sort', f.sort);
    p.set('dir', f.dir);
  }
  if (f.page > 1) p.set('page', String(f.page));
  if (f.size !== emptyFilter.size) p.set('size', String(f.size));
  const lang = new URLSearchParams(window.location.search).get('lang');
  if (lang) p.set('lang', lang);
  const q = p.toString();
  return q ? `/?${q}` : '/';
}

export function hasCriteria(f: StudyFilter): boolean {
  return Boolean(f.name || f.id || f.acc || f.from || f.to || f.mod);
}

/** The range's start is after its end (both YYYYMMDD): there is nothing to search for. */
export function datesReversed(f: Pick<StudyFilter, 'from' | 'to'>): boolean {
  return Boolean(f.from && f.to && f.from > f.to);
}

/** DICOM date range for QIDO. */
export function studyDateRange(f: StudyFilter): string {
  if (!f.from && !f.to) return '';
  if (f.from && f.from === f.to) return f.from;
  return `${f.from}-${f.to}`;
}

export function toYmd(d: Date): string {
  return `${d.getFullYear()}${String(d.getMonth() + 1).padStart(2, '0')}${String(d.getDate()).padStart(2, '0')}`;
}

export function daysAgo(n: number, now = new Date()): string {
  const d = new Date(now.getFullYear(), now.getMonth(), now.getDate() - n);
  return toYmd(d);
}

/** Parses a typed date: dd/mm/yyyy (also d/m/yyyy, dd-mm-yyyy, dd.mm.yyyy) or yyyy-mm-dd. Returns YYYYMMDD or null. */
export function parseTypedDate(s: string): string | null {
  const t = s.trim();
  if (!t) return '';
  let y: number;
  let m: number;
  let d: number;
  let r = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(t);
  if (r) {
    [y, m, d] = [Number(r[1]), Number(r[2]), Number(r[3])];
  } else {
    r = /^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$/.exec(t);
    if (!r) return /^\d{8}$/.test(t) ? t : null;
    [d, m, y] = [Number(r[1]), Number(r[2]), Number(r[3])];
  }
  const date = new Date(y, m - 1, d);
  if (date.getFullYear() !== y || date.getMonth() !== m - 1 || date.getDate() !== d) return null;
  return toYmd(date);
}

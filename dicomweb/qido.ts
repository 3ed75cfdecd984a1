/**
 * QIDO-RS (PS3.18 10.6): the pure query model. parseQuery turns the URL of a search into a Query;
 * storage/sql.ts turns a Query into SQL. No I/O, browser-safe.
 *
 * Matching (PS3.4 C.2.2.2, PS3.18 10.6.1.2):
 * - single value; `*` and `?` wildcards for string VRs (AE CS LO LT PN SH ST UC UR UT), never for
 *   UIDs, dates, times or numbers; a value that is only `*` is universal matching for any VR;
 * - UID list matching: UIDs separated by `,` or `\`; CS values may be listed the same way
 *   (`Modality=CT,MR`, `ModalitiesInStudy=CT\MR`); other strings by `\`;
 * - range matching for DA, TM and DT: `a-b`, `-b`, `a-`, inclusive. A truncated time or datetime
 *   covers its whole span (`StudyTime=10` is 10:00:00–10:59:59.999999, `-1030` ends at 10:30:59.999999);
 *   DT timezone offsets in the query are accepted and ignored;
 * - when both StudyDate and StudyTime (or PerformedProcedureStepStartDate and …Time) are given, they
 *   combine into one date-time range (PS3.4 C.2.2.2.5.1): `StudyDate=20230101-20230102&StudyTime=2200-0200`
 *   is from 2023-01-01 22:00 to 2023-01-02 02:00:59;
 * - an empty value is universal matching: the attribute is only added to the returned attributes;
 * - person names: see dicomweb/names.ts (case-insensitive, NFC; `fuzzymatching=true` folds diacritics).
 * Study-level keys may be used at series and instance level and series-level keys at instance level
 * (relational queries: `/series?PatientName=…`, `/instances?StudyDate=…`).
 */
import {
  type LevelAttribute,
  levelsUpTo,
  lookupAttribute,
  type MatchKind,
  matchingKey,
  type QueryLevel,
  SPECIFIC_CHARACTER_SET,
  ATTRIBUTES,
} from './attributes';
import { foldPersonName, personNameKey } from './names';
import { badRequest } from './status';
import { isAcceptableUID } from './uids';

export type { QueryLevel } from './attributes';

/** One value of a list: compared for equality, or a DICOM wildcard pattern (`*`, `?`). */
export type Term = { exact: string } | { pattern: string };

export type Match =
  /** empty value (or `*`): matches everything, the attribute is just returned */
  | { type: 'universal' }
  /** single value, wildcard, UID list or value list: any term matches */
  | { type: 'any'; terms: Term[] }
  /** inclusive range over the normalized sortable text of dates (YYYYMMDD), times (HHMMSS.FFFFFF), datetimes */
  | { type: 'range'; from?: string; to?: string }
  /** fuzzy person name: folded words, each the start of a word of the folded name, in order */
  | { type: 'fuzzy'; words: string[] }
  /** combined date and time (StudyDate + StudyTime): range over date || time */
  | { type: 'datetime'; timeTag: string; from?: string; to?: string };

export interface Filter {
  keyword: string;
  /** tag of the matching key; "SEQ.ITEM" for a key inside a sequence */
  tag: string;
  level: QueryLevel;
  kind: MatchKind;
  match: Match;
}

export interface Query {
  level: QueryLevel;
  /** from the path (/studies/{study}/series...) */
  StudyInstanceUID?: string;
  SeriesInstanceUID?: string;
  filters: Filter[];
  includeAll: boolean;
  /** tags named by includefield */
  includeFields: string[];
  /** Every tag each result carries (sorted): defaults, matching keys, includefield, SpecificCharacterSet. */
  returnTags: string[];
  /** Levels whose attributes are returned (study-level attributes for /series, …). */
  returnLevels: QueryLevel[];
  fuzzymatching: boolean;
  /** undefined: no limit */
  limit?: number;
  offset: number;
  /** Warning header texts (limit reduced, includefield not kept…). */
  warnings: string[];
}

export interface ParseOptions {
  /** Largest page the server returns; a larger or missing limit becomes this (with a warning when larger). */
  maxLimit?: number;
}

const CONTROL_PARAMS = new Set(['limit', 'offset', 'includefield', 'fuzzymatching', 'accept', 'charset']);
const WILDCARD_VRS = new Set(['AE', 'CS', 'LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UR', 'UT']);

const bad = (param: string, value: string, why: string) =>
  badRequest(`Invalid QIDO-RS parameter ${param}=${JSON.stringify(value)}: ${why}`);

/** Parses the query string of a QIDO-RS search. Throws DicomwebError 400 naming the bad parameter. */
export function parseQuery(
  level: QueryLevel,
  params: URLSearchParams,
  path: { StudyInstanceUID?: string; SeriesInstanceUID?: string } = {},
  opts: ParseOptions = {},
): Query {
  const q: Query = {
    level,
    filters: [],
    includeAll: false,
    includeFields: [],
    returnTags: [],
    returnLevels: [],
    fuzzymatching: false,
    offset: 0,
    warnings: [],
  };
  for (const k of ['StudyInstanceUID', 'SeriesInstanceUID'] as const) {
    const v = path[k];
    if (v === undefined) continue;
    if (!isAcceptableUID(v)) throw badRequest(`Invalid ${k} in the path: ${JSON.stringify(v)}`);
    q[k] = v;
  }

  const seen = new Set<string>();
  const matchingTags: string[] = [];
  let limit: number | undefined;
  for (const [rawName, rawValue] of params) {
    const value = rawValue.normalize('NFC');
    const control = rawName.toLowerCase();
    if (CONTROL_PARAMS.has(control)) {
      if (control === 'includefield') {
        for (const f of value.split(',')) includeField(q, f.trim(), rawName);
        continue;
      }
      if (seen.has(control)) throw bad(rawName, value, 'given more than once');
      seen.add(control);
      if (control === 'limit') limit = nonNegativeInteger(rawName, value);
      else if (control === 'offset') q.offset = nonNegativeInteger(rawName, value);
      else if (control === 'fuzzymatching') {
        if (value !== 'true' && value !== 'false') throw bad(rawName, value, 'must be true or false');
        q.fuzzymatching = value === 'true';
      }
      // accept and charset are content negotiation, handled by the server.
      continue;
    }
    // PS3.18 8.3.4.1.1 lets a client say the offset of its dates and times; the archive matches them as
    // the modalities wrote them (local time, which is what a hospital searches by) and says so.
    if (rawName === 'TimezoneOffsetFromUTC' || rawName === '00080201') {
      if (!/^[+-](?:0\d|1[0-4])[0-5]\d$/.test(value)) throw bad(rawName, value, 'expected +HHMM or -HHMM');
      q.warnings.push(
        `TimezoneOffsetFromUTC ${value}: ignored; dates and times match as stored (local time)`,
      );
      continue;
    }
    const attr = resolveMatchingKey(level, rawName, value);
    if (seen.has(attr.tag)) throw bad(rawName, value, 'attribute given more than once');
    seen.add(attr.tag);
    matchingTags.push(attr.tag.split('.')[0]);
    const match = parseMatch(attr, rawName, value.trim());
    q.filters.push({ keyword: attr.keyword, tag: attr.tag, level: attr.level, kind: attr.match!, match });
  }
  if (q.fuzzymatching) {
    for (const f of q.filters) {
      if (f.kind === 'pn' && f.match.type === 'any') f.match = fuzzy(f.match);
    }
  }
  combineDateTime(q, '00080020', '00080030');
  combineDateTime(q, '00400244', '00400245');
  for (const f of q.filters) {
    const m = f.match;
    if (m.type === 'range' && m.from !== undefined && m.to !== undefined && m.from > m.to) {
      throw bad(f.keyword, params.get(f.keyword) ?? params.get(f.tag) ?? '', 'bad range: start is after end');
    }
  }

  if (opts.maxLimit !== undefined) {
    if (limit === undefined) limit = opts.maxLimit;
    else if (limit > opts.maxLimit) {
      q.warnings.push(`limit ${limit} is larger than this server's maximum; reduced to ${opts.maxLimit}`);
      limit = opts.maxLimit;
    }
  }
  q.limit = limit;

  q.returnLevels = returnLevels(q);
  // Study and series results carry only what the index keeps for their levels: an includefield of a
  // lower level's attribute (Modality on /studies) is not returned, not even empty (PS3.18 10.6.3.3.1).
  let includeFields = q.includeFields;
  if (level !== 'instance') {
    const available = new Set(
      ATTRIBUTES.filter((x) => levelsUpTo(level).includes(x.level) && (x.kept || x.computed)).map(
        (x) => x.tag,
      ),
    );
    available.add(SPECIFIC_CHARACTER_SET.tag);
    includeFields = q.includeFields.filter((t) => available.has(t));
    for (const t of q.includeFields) {
      if (!available.has(t)) {
        q.warnings.push(`includefield ${t}: not kept by the index at ${level} level; not returned`);
      }
    }
  }
  const tags = new Set<string>([SPECIFIC_CHARACTER_SET.tag, ...matchingTags, ...includeFields]);
  if (level !== 'study') tags.add('0020000D');
  if (level === 'instance') tags.add('0020000E');
  for (const l of q.returnLevels) {
    for (const x of ATTRIBUTES) {
      if (x.level !== l || x.tag.includes('.')) continue;
      if (x.byDefault || (q.includeAll && (x.kept || x.computed))) tags.add(x.tag);
    }
  }
  q.returnTags = [...tags].sort();
  return q;
}

/** Levels whose attributes a result carries: the query level, plus those above it not fixed by the path. */
function returnLevels(q: Query): QueryLevel[] {
  if (q.level === 'study') return ['study'];
  if (q.level === 'series') return q.StudyInstanceUID ? ['series'] : ['study', 'series'];
  if (q.SeriesInstanceUID) return ['instance'];
  return q.StudyInstanceUID ? ['series', 'instance'] : ['study', 'series', 'instance'];
}

function includeField(q: Query, f: string, param: string): void {
  if (f === '') return;
  if (f === 'all') {
    q.includeAll = true;
    return;
  }
  // A path into a sequence ("RequestAttributesSequence.ScheduledProcedureStepID") returns the whole sequence.
  const top = f.split('.')[0];
  const entry = lookupAttribute(top);
  if (!entry) throw bad(param, f, 'unknown attribute keyword or tag');
  if (!q.includeFields.includes(entry.tag)) q.includeFields.push(entry.tag);
}

function nonNegativeInteger(param: string, value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw bad(param, value, 'must be a non-negative integer');
  return Number(value);
}

/** Finds the matching key named by a parameter (keyword, 8-hex tag, or "SEQ.ITEM" path of either). */
function resolveMatchingKey(level: QueryLevel, name: string, value: string): LevelAttribute {
  const parts = name.split('.');
  const tags: string[] = [];
  for (const p of parts) {
    const e = lookupAttribute(p);
    if (!e)
      throw bad(
        name,
        value,
        `unknown attribute ${JSON.stringify(p)} (not a DICOM keyword or 8-digit hex tag)`,
      );
    tags.push(e.tag);
  }
  const tag = tags.join('.');
  const attr = matchingKey(tag);
  const where = { study: 'studies', series: 'series', instance: 'instances' }[level];
  if (!attr) throw bad(name, value, `not a matching key supported by this server`);
  if (!levelsUpTo(level).includes(attr.level)) {
    throw bad(
      name,
      value,
      `${attr.keyword} is a ${attr.level}-level key, not a matching key when searching ${where}`,
    );
  }
  return attr;
}

function parseMatch(attr: LevelAttribute, param: string, value: string): Match {
  if (value === '' || value === '*') return { type: 'universal' };
  switch (attr.match) {
    case 'uid': {
      const uids = value.split(/[,\\]/).map((u) => u.trim());
      for (const u of uids)
        if (!isAcceptableUID(u)) throw bad(param, value, `${JSON.stringify(u)} is not a valid UID`);
      return { type: 'any', terms: uids.map((exact) => ({ exact })) };
    }
    case 'date':
      return range(param, value, (v, end) => dateKey(v, end), 'a date YYYYMMDD');
    case 'time':
      // A reversed time range is valid only combined with a date range (checked after combining).
      return range(param, value, (v, end) => timeKey(v, end), 'a time HHMMSS.FFFFFF', true);
    case 'datetime':
      return range(param, value, (v, end) => dateTimeKey(v, end), 'a datetime YYYYMMDDHHMMSS.FFFFFF&ZZXX');
    case 'integer': {
      const values = value.split('\\').map((v) => v.trim());
      for (const v of values) if (!/^[+-]?\d{1,10}$/.test(v)) throw bad(param, value, 'must be an integer');
      return { type: 'any', terms: values.map((v) => ({ exact: String(Number(v)) })) };
    }
    case 'pn':
      return { type: 'any', terms: terms(value.split('\\'), personNameKey) };
    default: {
      const sep = attr.vr === 'CS' ? /[,\\]/ : /\\/;
      const values = value.split(sep).map((v) => v.trim());
      if (!WILDCARD_VRS.has(attr.vr) && values.some((v) => /[*?]/.test(v))) {
        throw bad(param, value, `wildcards are not allowed for VR ${attr.vr}`);
      }
      return { type: 'any', terms: terms(values, (v) => v) };
    }
  }
}

function terms(values: string[], norm: (v: string) => string): Term[] {
  return values.map((v) => (/[*?]/.test(v) ? { pattern: norm(v) } : { exact: norm(v) }));
}

function fuzzy(m: { type: 'any'; terms: Term[] }): Match {
  // A list of names is rare with fuzzy matching; we fold the first one (PS3.18 defines no fuzzy lists).
  const t = m.terms[0];
  const words = foldPersonName('exact' in t ? t.exact : t.pattern)
    .split(' ')
    .filter((w) => w !== '');
  return words.length === 0 || words.every((w) => /^\*+$/.test(w))
    ? { type: 'universal' }
    : { type: 'fuzzy', words };
}

function range(
  param: string,
  value: string,
  key: (v: string, end: boolean) => string | undefined,
  what: string,
  reversible = false,
): Match {
  const from = key(value, false);
  const to = key(value, true);
  if (from !== undefined && to !== undefined) return { type: 'range', from, to };
  if (!value.includes('-')) throw bad(param, value, `not ${what}`);
  if (value === '-') throw bad(param, value, 'bad range: a range needs at least one bound');
  // Try each dash as the range separator (a DT bound may itself hold a "-0500" offset).
  for (let i = value.indexOf('-'); i !== -1; i = value.indexOf('-', i + 1)) {
    const a = value.slice(0, i);
    const b = value.slice(i + 1);
    const lo = a === '' ? undefined : key(a, false);
    const hi = b === '' ? undefined : key(b, true);
    if ((a !== '' && lo === undefined) || (b !== '' && hi === undefined)) continue;
    if (lo !== undefined && hi !== undefined && lo > hi && !reversible) {
      throw bad(param, value, 'bad range: start is after end');
    }
    return { type: 'range', from: lo, to: hi };
  }
  throw bad(param, value, `bad range: each bound must be ${what}`);
}

const pad = (s: string | undefined, fill: string) => s ?? fill;

/** A DA value as YYYYMMDD (end is ignored: a date is its own span). undefined when not a real date. */
export function dateKey(v: string, _end = false): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(v);
  if (!m) return undefined;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return undefined;
  return v;
}

function daysInMonth(y: number, m: number): number {
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/**
 * A TM value as sortable "HHMMSS.FFFFFF". A truncated value is the start of its span, or with end=true its
 * last instant ("10" → "100000.000000" / "105959.999999"). Colons (ACR-NEMA "10:30:00") are accepted.
 */
export function timeKey(v: string, end = false): string | undefined {
  const m = /^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$/.exec(v.includes(':') ? v.replace(/:/g, '') : v);
  if (!m) return undefined;
  const [, hh, mm, ss, frac] = m;
  if (frac !== undefined && ss === undefined) return undefined;
  if (Number(hh) > 23 || (mm !== undefined && Number(mm) > 59) || (ss !== undefined && Number(ss) > 60)) {
    return undefined;
  }
  return `${hh}${pad(mm, end ? '59' : '00')}${pad(ss, end ? '59' : '00')}.${(frac ?? '').padEnd(6, end ? '9' : '0')}`;
}

/** A DT value as sortable "YYYYMMDDHHMMSS.FFFFFF" (timezone offset ignored), start or end of its span. */
export function dateTimeKey(v: string, end = false): string | undefined {
  const m = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?(?:[+-]\d{4})?$/.exec(v);
  if (!m) return undefined;
  const [, y, mo, d, hh, mi, ss, frac] = m;
  const parts = [mo, d, hh, mi, ss];
  // no gaps: a component may be present only if the previous one is
  for (let i = 1; i < parts.length; i++)
    if (parts[i] !== undefined && parts[i - 1] === undefined) return undefined;
  if (frac !== undefined && ss === undefined) return undefined;
  if (mo !== undefined && (Number(mo) < 1 || Number(mo) > 12)) return undefined;
  if (d !== undefined && (Number(d) < 1 || Number(d) > daysInMonth(Number(y), Number(mo)))) return undefined;
  if (hh !== undefined && Number(hh) > 23) return undefined;
  if (mi !== undefined && Number(mi) > 59) return undefined;
  if (ss !== undefined && Number(ss) > 60) return undefined;
  const date = `${y}${pad(mo, end ? '12' : '01')}${pad(d, end ? '31' : '01')}`;
  const time = `${pad(hh, end ? '23' : '00')}${pad(mi, end ? '59' : '00')}${pad(ss, end ? '59' : '00')}`;
  return `${date}${time}.${(frac ?? '').padEnd(6, end ? '9' : '0')}`;
}

/** Merges a date filter and a time filter of the same entity into one date-time range. */
function combineDateTime(q: Query, dateTag: string, timeTag: string): void {
  const d = q.filters.find((f) => f.tag === dateTag);
  const t = q.filters.find((f) => f.tag === timeTag);
  if (!d || !t || d.match.type !== 'range' || t.match.type !== 'range') return;
  const from = d.match.from === undefined ? undefined : d.match.from + (t.match.from ?? '');
  const to = d.match.to === undefined ? undefined : d.match.to + (t.match.to ?? '999999.999999');
  q.filters = q.filters.filter((f) => f !== t);
  d.match = { type: 'datetime', timeTag, from, to };
}

/**
 * The same query limited to some studies (what a referring physician or a share link may read): a
 * StudyInstanceUID UID-list filter ANDed with the query's own filters.
 */
export function restrictToStudies(query: Query, studies: readonly string[]): Query {
  return {
    ...query,
    filters: [
      ...query.filters,
      {
        keyword: 'StudyInstanceUID',
        tag: '0020000D',
        level: 'study',
        kind: 'uid',
        match: { type: 'any', terms: studies.map((exact) => ({ exact })) },
      },
    ],
  };
}

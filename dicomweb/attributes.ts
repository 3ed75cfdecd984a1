/**
 * The attributes QIDO-RS knows at each level (PS3.18 10.6, Tables 10.6.1-5 and 10.6.3-3/-4/-5):
 * which are matching keys (and how they match), which are returned by default, and which the index
 * keeps for `includefield=all`. Pure data plus a dictionary lookup (dcmjs). Browser-safe.
 */
// biome-ignore lint/suspicious/noTsIgnore: dcmjs ships no type declarations; @ts-ignore stays valid if a declaration is added elsewhere.
// @ts-ignore
import dcmjsModule from 'dcmjs';

export type QueryLevel = 'study' | 'series' | 'instance';
export const LEVELS: readonly QueryLevel[] = ['study', 'series', 'instance'];

/**
 * How a matching key compares:
 * string  single value / `*` `?` wildcards / backslash-separated list (CS: comma too)
 * pn      person name: case-insensitive, or fuzzy (names.ts)
 * uid     single UID or UID list (`,` or `\`)
 * date, time, datetime  single value or range
 * integer single integer value (IS)
 * multi   multi-valued column ("\CT\MR\"): matches when any stored value matches
 */
export type MatchKind = 'string' | 'pn' | 'uid' | 'date' | 'time' | 'datetime' | 'integer' | 'multi';

export interface LevelAttribute {
  keyword: string;
  /** 8 upper-case hex digits; a nested matching key is "SEQTAG.ITEMTAG". */
  tag: string;
  vr: string;
  level: QueryLevel;
  /** Set for matching keys: how values compare, and the column (of the level's table) that holds them. */
  match?: MatchKind;
  column?: string;
  /** Returned by default at its level (PS3.18 Table 10.6.3-3/-4/-5). */
  byDefault: boolean;
  /** Copied from the instance's metadata into the level's attribute JSON at write time. */
  kept: boolean;
  /** Computed by the index (counts, ModalitiesInStudy, InstanceAvailability…), not copied. */
  computed: boolean;
}

type Opts = { match?: MatchKind; column?: string; byDefault?: boolean; computed?: boolean; kept?: boolean };

function a(level: QueryLevel, keyword: string, tag: string, vr: string, o: Opts = {}): LevelAttribute {
  const computed = o.computed ?? false;
  return {
    keyword,
    tag,
    vr,
    level,
    match: o.match,
    column: o.column,
    byDefault: o.byDefault ?? false,
    kept: o.kept ?? (!computed && !tag.includes('.')),
    computed,
  };
}

const D = { byDefault: true };

export const ATTRIBUTES: readonly LevelAttribute[] = [
  // ── Study (Patient + Study modules) ──
  a('study', 'StudyDate', '00080020', 'DA', { ...D, match: 'date', column: 'study_date' }),
  a('study', 'StudyTime', '00080030', 'TM', { ...D, match: 'time', column: 'study_time' }),
  a('study', 'AccessionNumber', '00080050', 'SH', { ...D, match: 'string', column: 'accession_number' }),
  a('study', 'IssuerOfAccessionNumberSequence', '00080051', 'SQ'),
  a('study', 'InstanceAvailability', '00080056', 'CS', { ...D, computed: true }),
  a('study', 'ModalitiesInStudy', '00080061', 'CS', {
    ...D,
    match: 'multi',
    column: 'modalities',
    computed: true,
  }),
  a('study', 'ReferringPhysicianName', '00080090', 'PN', {
    ...D,
    match: 'pn',
    column: 'referring_physician_name',
  }),
  a('study', 'TimezoneOffsetFromUTC', '00080201', 'SH', D),
  a('study', 'StudyDescription', '00081030', 'LO', { ...D, match: 'string', column: 'study_description' }),
  a('study', 'ProcedureCodeSequence', '00081032', 'SQ'),
  a('study', 'NameOfPhysiciansReadingStudy', '00081060', 'PN'),
  a('study', 'PatientName', '00100010', 'PN', { ...D, match: 'pn', column: 'patient_name' }),
  a('study', 'PatientID', '00100020', 'LO', { ...D, match: 'string', column: 'patient_id' }),
  a('study', 'IssuerOfPatientID', '00100021', 'LO', { match: 'string', column: 'issuer_of_patient_id' }),
  a('study', 'PatientBirthDate', '00100030', 'DA', { ...D, match: 'date', column: 'patient_birth_date' }),
  a('study', 'PatientSex', '00100040', 'CS', { ...D, match: 'string', column: 'patient_sex' }),
  a('study', 'OtherPatientIDsSequence', '00101002', 'SQ'),
  a('study', 'PatientAge', '00101010', 'AS'),
  a('study', 'PatientSize', '00101020', 'DS'),
  a('study', 'PatientWeight', '00101030', 'DS'),
  a('study', 'PatientComments', '00104000', 'LT'),
  a('study', 'StudyInstanceUID', '0020000D', 'UI', { ...D, match: 'uid', column: 'study_uid' }),
  a('study', 'StudyID', '00200010', 'SH', { ...D, match: 'string', column: 'study_id' }),
  a('study', 'NumberOfStudyRelatedSeries', '00201206', 'IS', { ...D, computed: true }),
  a('study', 'NumberOfStudyRelatedInstances', '00201208', 'IS', { ...D, computed: true }),

  // ── Series (General Series + Equipment modules) ──
  a('series', 'SeriesDate', '00080021', 'DA'),
  a('series', 'SeriesTime', '00080031', 'TM'),
  a('series', 'Modality', '00080060', 'CS', { ...D, match: 'string', column: 'modality' }),
  a('series', 'Manufacturer', '00080070', 'LO'),
  a('series', 'InstitutionName', '00080080', 'LO'),
  a('series', 'TimezoneOffsetFromUTC', '00080201', 'SH', D),
  a('series', 'StationName', '00081010', 'SH'),
  a('series', 'SeriesDescription', '0008103E', 'LO', { ...D, match: 'string', column: 'series_description' }),
  a('series', 'InstitutionalDepartmentName', '00081040', 'LO'),
  a('series', 'PerformingPhysicianName', '00081050', 'PN'),
  a('series', 'OperatorsName', '00081070', 'PN'),
  a('series', 'ManufacturerModelName', '00081090', 'LO'),
  a('series', 'BodyPartExamined', '00180015', 'CS', { match: 'string', column: 'body_part_examined' }),
  a('series', 'ProtocolName', '00181030', 'LO'),
  a('series', 'SeriesInstanceUID', '0020000E', 'UI', { ...D, match: 'uid', column: 'series_uid' }),
  a('series', 'SeriesNumber', '00200011', 'IS', { ...D, match: 'integer', column: 'series_number' }),
  a('series', 'Laterality', '00200060', 'CS'),
  a('series', 'NumberOfSeriesRelatedInstances', '00201209', 'IS', { ...D, computed: true }),
  a('series', 'PerformedProcedureStepStartDate', '00400244', 'DA', {
    ...D,
    match: 'date',
    column: 'pps_start_date',
  }),
  a('series', 'PerformedProcedureStepStartTime', '00400245', 'TM', {
    ...D,
    match: 'time',
    column: 'pps_start_time',
  }),
  a('series', 'PerformedProcedureStepID', '00400253', 'SH'),
  a('series', 'PerformedProcedureStepDescription', '00400254', 'LO'),
  a('series', 'RequestAttributesSequence', '00400275', 'SQ', D),
  a('series', 'RequestAttributesSequence.ScheduledProcedureStepID', '00400275.00400009', 'SH', {
    match: 'multi',
    column: 'request_sps_ids',
  }),
  a('series', 'RequestAttributesSequence.RequestedProcedureID', '00400275.00401001', 'SH', {
    match: 'multi',
    column: 'request_rp_ids',
  }),

  // ── Instance (SOP Common, General Image, Image Pixel, Multi-frame…) ──
  a('instance', 'ImageType', '00080008', 'CS'),
  a('instance', 'SOPClassUID', '00080016', 'UI', { ...D, match: 'uid', column: 'sop_class_uid' }),
  a('instance', 'SOPInstanceUID', '00080018', 'UI', { ...D, match: 'uid', column: 'sop_uid' }),
  a('instance', 'AcquisitionDate', '00080022', 'DA'),
  a('instance', 'ContentDate', '00080023', 'DA'),
  a('instance', 'AcquisitionDateTime', '0008002A', 'DT', {
    match: 'datetime',
    column: 'acquisition_datetime',
  }),
  a('instance', 'AcquisitionTime', '00080032', 'TM'),
  a('instance', 'ContentTime', '00080033', 'TM'),
  a('instance', 'InstanceAvailability', '00080056', 'CS', { ...D, computed: true }),
  a('instance', 'TimezoneOffsetFromUTC', '00080201', 'SH', D),
  a('instance', 'AvailableTransferSyntaxUID', '00083002', 'UI', { computed: true }),
  a('instance', 'AcquisitionNumber', '00200012', 'IS'),
  a('instance', 'InstanceNumber', '00200013', 'IS', { ...D, match: 'integer', column: 'instance_number' }),
  a('instance', 'SliceLocation', '00201041', 'DS'),
  a('instance', 'SamplesPerPixel', '00280002', 'US'),
  a('instance', 'PhotometricInterpretation', '00280004', 'CS'),
  a('instance', 'NumberOfFrames', '00280008', 'IS', D),
  a('instance', 'Rows', '00280010', 'US', D),
  a('instance', 'Columns', '00280011', 'US', D),
  a('instance', 'BitsAllocated', '00280100', 'US', D),
  a('instance', 'BitsStored', '00280101', 'US'),
  a('instance', 'DocumentTitle', '00420010', 'ST'),
  a('instance', 'ConceptNameCodeSequence', '0040A043', 'SQ'),
  a('instance', 'ContentLabel', '00700080', 'CS'),
  a('instance', 'ContentDescription', '00700081', 'LO'),
];

/** Always returned, at every level: our values are Unicode (UTF-8 on the wire). */
export const SPECIFIC_CHARACTER_SET = { tag: '00080005', vr: 'CS', value: 'ISO_IR 192' } as const;

/** The attributes of one level. */
export function attributesAt(level: QueryLevel): LevelAttribute[] {
  return ATTRIBUTES.filter((x) => x.level === level);
}

/** Tags copied from instance metadata into the level's attribute JSON (top-level tags only). */
export function keptTags(level: QueryLevel): string[] {
  return attributesAt(level)
    .filter((x) => x.kept)
    .map((x) => x.tag);
}

/** The matching key with this (possibly nested, "SEQ.ITEM") tag, if any. */
export function matchingKey(tag: string): LevelAttribute | undefined {
  return ATTRIBUTES.find((x) => x.tag === tag && x.match !== undefined);
}

/** Levels at and above `level` ('instance' → instance, series, study). */
export function levelsUpTo(level: QueryLevel): QueryLevel[] {
  return LEVELS.slice(0, LEVELS.indexOf(level) + 1).reverse();
}

export interface DictionaryEntry {
  keyword: string;
  tag: string;
  vr: string;
}

interface DcmjsDictionary {
  data: {
    DicomMetaDictionary: {
      dictionary: Record<string, { tag: string; vr: string; name: string } | undefined>;
      nameMap: Record<string, { tag: string; vr: string; name: string } | undefined>;
    };
  };
}
const dictionary = (dcmjsModule as unknown as DcmjsDictionary).data.DicomMetaDictionary;

/**
 * Looks up one attribute of the DICOM data dictionary by keyword ("PatientName") or tag ("00100010",
 * any case). Tags not in the dictionary (private, retired-unknown) return a VR of "UN"; unknown
 * keywords return undefined.
 */
export function lookupAttribute(keywordOrTag: string): DictionaryEntry | undefined {
  if (/^[0-9A-Fa-f]{8}$/.test(keywordOrTag)) {
    const tag = keywordOrTag.toUpperCase();
    const known = ATTRIBUTES.find((x) => x.tag === tag);
    if (known) return { keyword: known.keyword, tag, vr: known.vr };
    const e = dictionary.dictionary[`(${tag.slice(0, 4)},${tag.slice(4)})`];
    return { keyword: e?.name ?? tag, tag, vr: dictionaryVR(e?.vr) };
  }
  const known = ATTRIBUTES.find((x) => x.keyword === keywordOrTag);
  if (known) return { keyword: known.keyword, tag: known.tag, vr: known.vr };
  if (!Object.hasOwn(dictionary.nameMap, keywordOrTag)) return undefined;
  const e = dictionary.nameMap[keywordOrTag];
  if (!e || !/^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$/.test(e.tag)) return undefined;
  return { keyword: e.name, tag: e.tag.replace(/[(),]/g, '').toUpperCase(), vr: dictionaryVR(e.vr) };
}

/** dcmjs writes ambiguous VRs as "ox" (OB or OW), "xs" (US or SS)…: pick the usual one. */
function dictionaryVR(vr: string | undefined): string {
  if (vr && /^[A-Z]{2}$/.test(vr)) return vr;
  return ({ ox: 'OW', xs: 'US' } as Record<string, string>)[vr ?? ''] ?? 'UN';
}

/**
 * The PS3.6 data dictionary as fast lookups: tag → VR (for Implicit VR Little Endian, PS3.5 §7.1.3),
 * keyword ↔ tag. Built once from dcmjs' dictionary (nameMap: keyword → "(GGGG,EEEE)").
 *
 * Tags are numbers `(group << 16 | element) >>> 0` internally and 8 upper-case hex digits
 * ("00100010") at the API, as in DICOM JSON (PS3.18 F.2.1.1).
 */
import dcmjs from 'dcmjs';

/** Standard tag (number) → VR as found in dcmjs (may be a pseudo-VR: ox, xs, lt, up, na). */
const VR_BY_TAG = new Map<number, string>();
/** Keyword → 8-hex tag. */
const TAG_BY_KEYWORD = new Map<string, string>();
/** 8-hex tag → keyword. */
const KEYWORD_BY_TAG = new Map<string, string>();

for (const [keyword, entry] of Object.entries(dcmjs.data.DicomMetaDictionary.nameMap)) {
  const m = /^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$/.exec(entry.tag);
  if (!m) continue;
  const hex = (m[1] + m[2]).toUpperCase();
  const num = Number.parseInt(hex, 16);
  VR_BY_TAG.set(num, entry.vr);
  TAG_BY_KEYWORD.set(keyword, hex);
  KEYWORD_BY_TAG.set(hex, keyword);
}

/**
 * Repeating groups (PS3.5 §7.6): overlays 60xx, curves 50xx (retired) and variable pixel data 7Fxx (retired)
 * are stored in the dictionary under their base group (6000, 5000, 7F00).
 */
function baseOfRepeatingGroup(group: number): number {
  if ((group & 1) === 0) {
    if (group >= 0x6000 && group <= 0x60ff) return 0x6000;
    if (group >= 0x5000 && group <= 0x50ff) return 0x5000;
    if (group >= 0x7f00 && group <= 0x7fdf) return 0x7f00;
  }
  return group;
}

/** The dictionary VR of a tag, including dcmjs pseudo-VRs; undefined when unknown. */
export function dictionaryVR(tag: number): string | undefined {
  const vr = VR_BY_TAG.get(tag);
  if (vr !== undefined) return vr;
  const group = tag >>> 16;
  const base = baseOfRepeatingGroup(group);
  if (base !== group) return VR_BY_TAG.get(((base << 16) | (tag & 0xffff)) >>> 0);
  return undefined;
}

/**
 * The VR to use for an element read in Implicit VR (PS3.5 §7.1.3, Annex A.1):
 * - group length (gggg,0000) → UL; private creator (odd gggg,0010-00FF) → LO; other private/unknown → UN;
 * - "OB or OW" → OW (PS3.5 A.1: Pixel Data / Overlay Data are OW in Implicit VR);
 * - "US or SS" → SS when Pixel Representation (0028,0103) is 1, else US; LUT Data → US; "up" → UL.
 */
export function implicitVR(tag: number, pixelRepresentation = 0): string {
  const element = tag & 0xffff;
  if (element === 0) return 'UL';
  const group = tag >>> 16;
  if (group & 1) return element >= 0x10 && element <= 0xff ? 'LO' : 'UN';
  const vr = dictionaryVR(tag);
  switch (vr) {
    case undefined:
    case 'na':
      return 'UN';
    case 'ox':
      return 'OW';
    case 'xs':
      return pixelRepresentation === 1 ? 'SS' : 'US';
    case 'lt':
      return 'US';
    case 'up':
      return 'UL';
    default:
      return vr;
  }
}

/** "PatientName" → "00100010" */
export function tagForKeyword(keyword: string): string | undefined {
  return TAG_BY_KEYWORD.get(keyword);
}

/** "00100010" → "PatientName" (repeating groups resolved to their base keyword) */
export function keywordForTag(tag: string): string | undefined {
  const hex = tag.toUpperCase();
  const kw = KEYWORD_BY_TAG.get(hex);
  if (kw !== undefined) return kw;
  const group = Number.parseInt(hex.slice(0, 4), 16);
  const base = baseOfRepeatingGroup(group);
  if (base === group) return undefined;
  return KEYWORD_BY_TAG.get(base.toString(16).toUpperCase().padStart(4, '0') + hex.slice(4));
}

/** Read-only views for callers that need to iterate (e.g. building includefield lists). */
export const keywordToTag: ReadonlyMap<string, string> = TAG_BY_KEYWORD;
export const tagToKeyword: ReadonlyMap<string, string> = KEYWORD_BY_TAG;

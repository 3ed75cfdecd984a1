/**
 * Decoding of DICOM character strings to Unicode (NFC) per Specific Character Set (0008,0005):
 * PS3.5 §6.1 (character repertoires), PS3.3 C.12.1.1.2 (defined terms, ISO 2022 escape sequences),
 * PS3.5 Annex H/I/J/K (Japanese, Korean, Unicode/GB18030, Chinese).
 *
 * Only SH, LO, ST, LT, UC, UT and PN use the Specific Character Set (PS3.5 §6.1.2.3); every other string VR
 * is in the default repertoire (ASCII).
 *
 * Order of operations: the whole value is decoded first, then split on '\' (VM) and, for PN, on '=' and '^'
 * by the caller. This is the correct order for every character set:
 *  - GB18030/GBK: 0x5C may be the second byte of a two-byte character; only the decoder knows the boundaries;
 *  - ISO 2022 (code extensions): a 0x5C/0x3D/0x5E byte inside a JIS X 0208/0212 segment is half of a
 *    character, not a delimiter; the state machine below treats those bytes as delimiters (and returns to
 *    the initial designation, PS3.5 §6.1.2.5.3) only while G0 is a single-byte set;
 *  - single-byte sets and UTF-8 never use 0x5C, 0x3D or 0x5E inside a character.
 *
 * Unlabelled non-ASCII bytes (no Specific Character Set, or an unknown term): decoded as UTF-8 when they are
 * valid UTF-8, else with the caller's default charset (the server uses windows-1258 for legacy Vietnamese
 * modalities). Pure and browser-safe: TextDecoder only (full ICU in Node 20 and in browsers).
 */

/** Decodes one element value (all its values, with their '\' separators) to an NFC string. */
export type DicomStringDecoder = (bytes: Uint8Array, vr: string) => string;

/** VRs whose values use the Specific Character Set (PS3.5 §6.1.2.3). */
const SCS_VRS = new Set(['SH', 'LO', 'ST', 'LT', 'UC', 'UT', 'PN']);

/** Single-byte and multi-byte character sets without code extensions (PS3.3 Table C.12-2, C.12-4). */
const SINGLE: Record<string, string> = {
  'ISO_IR 6': 'ascii',
  'ISO_IR 100': 'latin1',
  'ISO_IR 101': 'iso-8859-2',
  'ISO_IR 109': 'iso-8859-3',
  'ISO_IR 110': 'iso-8859-4',
  'ISO_IR 144': 'iso-8859-5',
  'ISO_IR 127': 'iso-8859-6',
  'ISO_IR 126': 'iso-8859-7',
  'ISO_IR 138': 'iso-8859-8',
  // WHATWG maps ISO-8859-9 and TIS-620 to these supersets; they differ only in C1 (0x80-0x9F), unused in DICOM.
  'ISO_IR 148': 'windows-1254',
  'ISO_IR 203': 'iso-8859-15',
  'ISO_IR 166': 'windows-874',
  // JIS X 0201: Romaji in G0, half-width Katakana (0xA1-0xDF) in G1, exactly as Shift_JIS single bytes.
  'ISO_IR 13': 'shift_jis',
  'ISO_IR 192': 'utf-8',
  GB18030: 'gb18030',
  GBK: 'gbk',
};

/** A character set designated to G0 or G1 by an ISO 2022 escape sequence. */
interface G {
  /** TextDecoder label used for segments in this set ('ascii' = plain bytes). */
  label: string;
  /** 94×94 two-byte set in G0 (JIS X 0208 / 0212): transcoded to EUC-JP before decoding. */
  jis?: 'x0208' | 'x0212';
}

const G_ASCII: G = { label: 'ascii' };
/** ISO 2022 defined terms → their designation (PS3.3 Table C.12-3, C.12-4). */
const ISO2022: Record<string, { g0?: G; g1?: G }> = {
  'ISO 2022 IR 6': { g0: G_ASCII },
  'ISO 2022 IR 100': { g1: { label: 'latin1' } },
  'ISO 2022 IR 101': { g1: { label: 'iso-8859-2' } },
  'ISO 2022 IR 109': { g1: { label: 'iso-8859-3' } },
  'ISO 2022 IR 110': { g1: { label: 'iso-8859-4' } },
  'ISO 2022 IR 144': { g1: { label: 'iso-8859-5' } },
  'ISO 2022 IR 127': { g1: { label: 'iso-8859-6' } },
  'ISO 2022 IR 126': { g1: { label: 'iso-8859-7' } },
  'ISO 2022 IR 138': { g1: { label: 'iso-8859-8' } },
  'ISO 2022 IR 148': { g1: { label: 'windows-1254' } },
  'ISO 2022 IR 203': { g1: { label: 'iso-8859-15' } },
  'ISO 2022 IR 166': { g1: { label: 'windows-874' } },
  'ISO 2022 IR 13': { g0: G_ASCII /* JIS X 0201 Romaji, ~ASCII */, g1: { label: 'shift_jis' } },
  'ISO 2022 IR 87': { g0: { label: 'euc-jp', jis: 'x0208' } },
  'ISO 2022 IR 159': { g0: { label: 'euc-jp', jis: 'x0212' } },
  'ISO 2022 IR 149': { g1: { label: 'euc-kr' } },
  'ISO 2022 IR 58': { g1: { label: 'gbk' } },
};

/** Escape sequences (bytes after ESC) → the defined term they designate (PS3.3 Table C.12-3/C.12-4). */
const ESCAPES: Array<[bytes: number[], term: string]> = [
  [[0x28, 0x42], 'ISO 2022 IR 6'], // ESC ( B
  [[0x28, 0x4a], 'ISO 2022 IR 13'], // ESC ( J  (JIS X 0201 Romaji in G0)
  [[0x29, 0x49], 'ISO 2022 IR 13'], // ESC ) I  (JIS X 0201 Katakana in G1)
  [[0x24, 0x42], 'ISO 2022 IR 87'], // ESC $ B
  [[0x24, 0x40], 'ISO 2022 IR 87'], // ESC $ @ (JIS C 6226-1978, decoded as JIS X 0208)
  [[0x24, 0x28, 0x44], 'ISO 2022 IR 159'], // ESC $ ( D
  [[0x24, 0x29, 0x43], 'ISO 2022 IR 149'], // ESC $ ) C
  [[0x24, 0x29, 0x41], 'ISO 2022 IR 58'], // ESC $ ) A
  [[0x2d, 0x41], 'ISO 2022 IR 100'],
  [[0x2d, 0x42], 'ISO 2022 IR 101'],
  [[0x2d, 0x43], 'ISO 2022 IR 109'],
  [[0x2d, 0x44], 'ISO 2022 IR 110'],
  [[0x2d, 0x4c], 'ISO 2022 IR 144'],
  [[0x2d, 0x47], 'ISO 2022 IR 127'],
  [[0x2d, 0x46], 'ISO 2022 IR 126'],
  [[0x2d, 0x48], 'ISO 2022 IR 138'],
  [[0x2d, 0x4d], 'ISO 2022 IR 148'],
  [[0x2d, 0x62], 'ISO 2022 IR 203'],
  [[0x2d, 0x54], 'ISO 2022 IR 166'],
];

const ESC = 0x1b;

// ---------------------------------------------------------------------------------------------------------

const decoders = new Map<string, TextDecoder>();
function textDecoder(label: string): TextDecoder {
  let d = decoders.get(label);
  if (!d) {
    d = new TextDecoder(label);
    decoders.set(label, d);
  }
  return d;
}
let strictUtf8: TextDecoder | undefined;

/** Bytes as code points 0-255 (exact ISO 8859-1, and ASCII). */
export function latin1(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let s = '';
  for (let i = start; i < end; i += 4096) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, Math.min(end, i + 4096)) as unknown as number[]);
  }
  return s;
}

function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80 || bytes[i] === ESC) return false;
  return true;
}

function decodeWith(label: string, bytes: Uint8Array): string {
  if (label === 'latin1' || label === 'ascii') return latin1(bytes);
  return textDecoder(label).decode(bytes);
}

/** Unlabelled data: UTF-8 when valid, else the default charset. */
function decodeUnlabelled(bytes: Uint8Array, defaultCharset: string): string {
  strictUtf8 ??= new TextDecoder('utf-8', { fatal: true });
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return decodeWith(defaultCharset, bytes);
  }
}

/** Canonical form of a defined term: tolerates case, '-' for '_', and missing spaces ("ISO_IR100", "iso-ir 192"). */
export function normalizeTerm(term: string): string {
  const t = term.trim().toUpperCase();
  let m = /^ISO[ _-]?2022[ _-]?IR[ _-]?(\d+)$/.exec(t);
  if (m) return `ISO 2022 IR ${m[1]}`;
  m = /^ISO[ _-]?IR[ _-]?(\d+)$/.exec(t);
  if (m) return `ISO_IR ${m[1]}`;
  if (t === 'UTF-8' || t === 'UTF8') return 'ISO_IR 192';
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// ISO 2022 code extensions (PS3.5 §6.1.2.5)

interface State {
  g0: G;
  g1: G | undefined;
}

function initialState(terms: string[]): State {
  // The first value of Specific Character Set is the initial designation (empty = ISO 2022 IR 6).
  const first = terms[0] || 'ISO 2022 IR 6';
  const asIso2022 = first.startsWith('ISO_IR ') ? `ISO 2022 IR ${first.slice(7)}` : first;
  const d = ISO2022[asIso2022];
  return { g0: d?.g0 ?? G_ASCII, g1: d?.g1 };
}

/** Parses an escape sequence at bytes[i] (ESC); returns its length and the designation, or undefined. */
function readEscape(bytes: Uint8Array, i: number): { length: number; term: string } | undefined {
  outer: for (const [seq, term] of ESCAPES) {
    for (let k = 0; k < seq.length; k++) if (bytes[i + 1 + k] !== seq[k]) continue outer;
    return { length: 1 + seq.length, term };
  }
  return undefined;
}

/** JIS X 0208/0212 bytes (G0, 0x21-0x7E pairs) → EUC-JP, which WHATWG TextDecoder supports. */
function jisToEucJp(bytes: Uint8Array, kind: 'x0208' | 'x0212'): Uint8Array {
  const out = new Uint8Array(kind === 'x0212' ? Math.ceil(bytes.length * 1.5) + 1 : bytes.length);
  let o = 0;
  let second = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b >= 0x21 && b <= 0x7e) {
      // EUC-JP: JIS X 0208 = two bytes | 0x80; JIS X 0212 = 0x8F then two bytes | 0x80.
      if (kind === 'x0212' && !second) out[o++] = 0x8f;
      out[o++] = b | 0x80;
      second = !second;
    } else {
      out[o++] = b;
      second = false;
    }
  }
  return out.subarray(0, o);
}

function decodeSegment(bytes: Uint8Array, state: State, defaultCharset: string): string {
  if (bytes.length === 0) return '';
  if (state.g0.jis) return textDecoder('euc-jp').decode(jisToEucJp(bytes, state.g0.jis));
  let high = false;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) {
      high = true;
      break;
    }
  }
  if (!high) return latin1(bytes);
  if (state.g1) return decodeWith(state.g1.label, bytes);
  return decodeUnlabelled(bytes, defaultCharset);
}

function decodeIso2022(bytes: Uint8Array, vr: string, terms: string[], defaultCharset: string): string {
  const initial = initialState(terms);
  let state: State = { ...initial };
  let out = '';
  let start = 0;
  const isPN = vr === 'PN';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === ESC) {
      const esc = readEscape(bytes, i);
      if (!esc) continue; // unknown escape: left in the text, as dcmtk does
      out += decodeSegment(bytes.subarray(start, i), state, defaultCharset);
      const d = ISO2022[esc.term];
      // ESC ( J designates Romaji to G0, ESC ) I Katakana to G1; other sets go where their table says.
      const second = bytes[i + 1];
      if (esc.term === 'ISO 2022 IR 13') {
        if (second === 0x28) state = { ...state, g0: G_ASCII };
        else state = { ...state, g1: d.g1 };
      } else {
        state = { g0: d.g0 ?? state.g0, g1: d.g1 ?? state.g1 };
      }
      i += esc.length - 1;
      start = i + 1;
      continue;
    }
    if (state.g0.jis) continue; // inside a two-byte G0 segment nothing is a delimiter
    // PS3.5 §6.1.2.5.3: the initial designation is back in force after CR, LF, FF, TAB, '\' and, in PN, '^' '='.
    const delimiter =
      b === 0x5c ||
      b === 0x0d ||
      b === 0x0a ||
      b === 0x0c ||
      b === 0x09 ||
      (isPN && (b === 0x5e || b === 0x3d));
    if (delimiter) {
      out += decodeSegment(bytes.subarray(start, i), state, defaultCharset) + String.fromCharCode(b);
      start = i + 1;
      state = { ...initial };
    }
  }
  out += decodeSegment(bytes.subarray(start), state, defaultCharset);
  return out;
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Builds the decoder for one data set (or a sequence item with its own Specific Character Set).
 * @param specificCharacterSet the values of (0008,0005), undefined/empty when absent
 * @param defaultCharset WHATWG label for unlabelled non-UTF-8 data, e.g. 'windows-1258'
 */
export function createDecoder(
  specificCharacterSet: readonly string[] | undefined,
  defaultCharset: string,
): DicomStringDecoder {
  textDecoder(defaultCharset); // fail fast on an unknown label (RangeError)
  const terms = (specificCharacterSet ?? []).map(normalizeTerm);
  const codeExtensions = terms.length > 1 || (terms.length === 1 && terms[0].startsWith('ISO 2022'));
  const single = terms.length === 1 ? SINGLE[terms[0]] : terms.length === 0 ? 'ascii' : undefined;
  const nfc = (s: string) => s.normalize('NFC');

  return (bytes, vr) => {
    if (isAscii(bytes)) return latin1(bytes);
    if (!SCS_VRS.has(vr)) return nfc(decodeUnlabelled(bytes, defaultCharset));
    if (codeExtensions) return nfc(decodeIso2022(bytes, vr, terms, defaultCharset));
    if (single && single !== 'ascii') return nfc(decodeWith(single, bytes));
    // No (or empty, ISO_IR 6, or unknown) Specific Character Set but non-ASCII bytes.
    return nfc(decodeUnlabelled(bytes, defaultCharset));
  };
}

/** True when the decoded string needs a Unicode-capable character set. */
export function isNonAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return true;
  return false;
}

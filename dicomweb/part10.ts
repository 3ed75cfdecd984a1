/**
 * Push (streaming) DICOM Part 10 scanner (PS3.10 §7.1 file format, PS3.5 §7 data set encoding).
 *
 * The server streams each STOW-RS part to the blob store and feeds the very same chunks here. Memory stays
 * flat: large values (pixel data, binaries over `inlineLimit`) are never retained, only their
 * [offset, length] in the file; only the small unconsumed remainder of a chunk is ever copied.
 *
 * Handles: 128-byte preamble + "DICM"; File Meta Information (group 0002, always Explicit VR Little Endian,
 * with or without (0002,0000) group length); data sets in Implicit VR LE, Explicit VR LE, Explicit VR BE
 * (retired) and Deflated Explicit VR LE (inflated incrementally with pako); sequences and items of defined
 * and undefined length; UN of undefined length (parsed as an Implicit VR LE sequence, PS3.5 §6.2.2);
 * encapsulated Pixel Data fragments (PS3.5 §A.4); Data Set Trailing Padding (FFFC,FFFC).
 *
 * Pure: no I/O, browser-safe.
 */
import { Inflate } from 'pako';
import { implicitVR } from './dictionary';

export type Part10ErrorCode =
  | 'not-dicom'
  | 'no-meta'
  | 'no-transfer-syntax'
  | 'truncated'
  | 'malformed'
  | 'unsupported'
  | 'too-large';

/**
 * A deflated data set (PS3.5 A.5) may inflate to at most this many bytes. Deflate packs uniform data
 * about 1,000 to 1: without a bound a 1 MB upload could stand for a gigabyte that every read of the
 * object inflates again.
 */
export const MAX_INFLATED_BYTES = 256 * 1024 * 1024;

export class Part10Error extends Error {
  readonly code: Part10ErrorCode;
  constructor(code: Part10ErrorCode, message: string) {
    super(message);
    this.name = 'Part10Error';
    this.code = code;
  }
}

export interface ScannedElement {
  /** 8 upper-case hex digits, e.g. "00100010" */
  tag: string;
  vr: string;
  /** Offset of the value in the file (for a deflated data set: in the inflated data set stream, 0 = its first byte). */
  offset: number;
  /** Value length; undefined lengths (SQ, encapsulated Pixel Data) are resolved to the bytes before the delimiter. */
  length: number;
  /** The value bytes (a private copy) when small enough or needed; absent for bulk values. */
  value?: Uint8Array;
  /** SQ: the items, each a list of elements. */
  items?: ScannedElement[][];
  /** Encapsulated Pixel Data: the value spans of its items; the first is the Basic Offset Table. */
  fragments?: Array<[offset: number, length: number]>;
  /** Encapsulated Pixel Data: the Basic Offset Table bytes (first item value), when not empty and ≤ 4 MiB. */
  basicOffsetTable?: Uint8Array;
  /**
   * Encapsulated Pixel Data: the first 4 bytes of each fragment as a big endian u32 (zero-padded), so frame
   * starts (JPEG SOI FFD8, JPEG 2000 SOC FF4F) can be found without the file when there is no offset table.
   */
  fragmentHeads?: number[];
  /** Set (true) when the value is encoded big endian (Explicit VR Big Endian). */
  bigEndian?: boolean;
}

export interface ScanResult {
  /** File Meta Information elements (group 0002). */
  meta: ScannedElement[];
  transferSyntaxUID: string;
  dataset: ScannedElement[];
  /** Bytes of the file pushed. */
  size: number;
  /** Deflated transfer syntax: data set offsets refer to the inflated stream. */
  deflated: boolean;
  /** File offset of the first byte after the File Meta Information (start of the data set or of the deflate stream). */
  datasetOffset: number;
  /** Explicit VR Big Endian data set. */
  bigEndian: boolean;
}

export interface ScanOptions {
  /** Values up to this many bytes are kept in `value` (default 1024). */
  inlineLimit?: number;
  /**
   * Non-binary values (strings, numbers, AT) are kept up to this many bytes even above inlineLimit, since
   * DICOM JSON carries them inline (default 16 MiB). Binary VRs (OB, OD, OF, OL, OV, OW, UN) never are.
   */
  maxTextLength?: number;
  /** A deflated data set inflating to more fails with Part10Error 'too-large' (default MAX_INFLATED_BYTES). */
  maxInflatedBytes?: number;
}

// ---------------------------------------------------------------------------------------------------------
// Transfer syntaxes (PS3.5 §10, PS3.6 Table A-1)

const IMPLICIT_VR_LE = '1.2.840.10008.1.2';
const EXPLICIT_VR_BE = '1.2.840.10008.1.2.2';
/** Deflated Explicit VR Little Endian; JPIP Referenced Deflate; JPIP HTJ2K Referenced Deflate. */
const DEFLATED = new Set(['1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.4.95', '1.2.840.10008.1.2.4.205']);

interface Syntax {
  explicit: boolean;
  little: boolean;
}
const EXPLICIT_LE: Syntax = { explicit: true, little: true };
const IMPLICIT_LE: Syntax = { explicit: false, little: true };
const EXPLICIT_BE: Syntax = { explicit: true, little: false };

// ---------------------------------------------------------------------------------------------------------
// Value representations (PS3.5 §6.2)

/** VRs with a 2-byte reserved field and a 4-byte length in Explicit VR (PS3.5 §7.1.2, Table 7.1-1). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const KNOWN_VRS = new Set([
  ...LONG_VRS,
  ...['AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FL', 'FD', 'IS', 'LO', 'LT', 'PN', 'SH', 'SL', 'SS', 'ST'],
  ...['TM', 'UI', 'UL', 'US'],
]);
/** Binary VRs: never retained above inlineLimit; DICOM JSON gives them as InlineBinary or BulkDataURI. */
export const BINARY_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);

const UNDEFINED_LENGTH = 0xffffffff;
const ITEM = 0xe000;
const ITEM_DELIMITATION = 0xe00d;
const SEQUENCE_DELIMITATION = 0xe0dd;
const TAG_PIXEL_DATA = 0x7fe00010;
/** Extended Offset Table (7FE0,0001) and its lengths (7FE0,0002): needed by frames.ts, kept up to 4 MiB. */
const NEEDED_TAGS = new Set([0x7fe00001, 0x7fe00002]);
const MAX_NEEDED_LENGTH = 4 * 1024 * 1024;
const MAX_META_VALUE = 64 * 1024;
const MAX_DEPTH = 64;

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).toUpperCase().padStart(2, '0'));
function tagString(tag: number): string {
  return HEX[tag >>> 24] + HEX[(tag >>> 16) & 0xff] + HEX[(tag >>> 8) & 0xff] + HEX[tag & 0xff];
}

const vrCache = new Map<number, string>();
function vrString(a: number, b: number): string {
  const key = (a << 8) | b;
  let s = vrCache.get(key);
  if (s === undefined) {
    s = String.fromCharCode(a, b);
    vrCache.set(key, s);
  }
  return s;
}

const isUpper = (c: number) => c >= 0x41 && c <= 0x5a;

// ---------------------------------------------------------------------------------------------------------
// ByteQueue: the unconsumed bytes = carry (small private buffer) followed by the current chunk (a view).

const EMPTY = new Uint8Array(0);

class ByteQueue {
  /** Absolute stream position of the next unconsumed byte. */
  pos: number;
  private cur: Uint8Array = EMPTY;
  private ci = 0;
  private carry: Uint8Array = EMPTY;
  private cs = 0;
  private ce = 0;
  /** After a successful peek(): the array and index holding the requested bytes contiguously. */
  pa: Uint8Array = EMPTY;
  pi = 0;

  constructor(pos: number) {
    this.pos = pos;
  }

  /** Takes a new chunk (by reference, until release()). */
  push(chunk: Uint8Array): void {
    this.release();
    this.cur = chunk;
    this.ci = 0;
  }

  /** Moves what is left of the current chunk into the carry so that no reference to it is kept. */
  release(): void {
    const rest = this.cur.length - this.ci;
    if (rest > 0) {
      this.reserve(rest);
      this.carry.set(this.cur.subarray(this.ci), this.ce);
      this.ce += rest;
    }
    this.cur = EMPTY;
    this.ci = 0;
  }

  available(): number {
    return this.ce - this.cs + (this.cur.length - this.ci);
  }

  /** Makes n bytes contiguous at pa[pi..], copying at most n bytes; false when fewer are available. */
  peek(n: number): boolean {
    const carried = this.ce - this.cs;
    if (carried === 0) {
      if (this.cur.length - this.ci < n) return false;
      this.pa = this.cur;
      this.pi = this.ci;
      return true;
    }
    if (carried < n) {
      const need = n - carried;
      if (this.cur.length - this.ci < need) return false;
      this.reserve(need);
      this.carry.set(this.cur.subarray(this.ci, this.ci + need), this.ce);
      this.ce += need;
      this.ci += need;
    }
    this.pa = this.carry;
    this.pi = this.cs;
    return true;
  }

  consume(n: number): void {
    this.pos += n;
    const carried = this.ce - this.cs;
    if (carried > 0) {
      const k = Math.min(n, carried);
      this.cs += k;
      n -= k;
      if (this.cs === this.ce) this.cs = this.ce = 0;
    }
    this.ci += n;
  }

  /** Consumes up to n bytes; returns how many. */
  skip(n: number): number {
    const k = Math.min(n, this.available());
    this.consume(k);
    return k;
  }

  /** Removes and returns every available byte, as views (used to hand the rest of the stream to the inflater). */
  drain(): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (this.ce > this.cs) out.push(this.carry.slice(this.cs, this.ce));
    if (this.ci < this.cur.length) out.push(this.cur.subarray(this.ci));
    const n = this.available();
    this.consume(n);
    return out;
  }

  /** The remaining bytes are all zero (tolerated as trailing padding). */
  restIsZero(): boolean {
    for (let i = this.cs; i < this.ce; i++) if (this.carry[i] !== 0) return false;
    for (let i = this.ci; i < this.cur.length; i++) if (this.cur[i] !== 0) return false;
    return true;
  }

  private reserve(extra: number): void {
    const used = this.ce - this.cs;
    if (this.ce + extra <= this.carry.length) return;
    if (used + extra <= this.carry.length && this.cs > 0) {
      this.carry.copyWithin(0, this.cs, this.ce);
    } else {
      const next = new Uint8Array(Math.max(256, (used + extra) * 2));
      next.set(this.carry.subarray(this.cs, this.ce));
      this.carry = next;
    }
    this.cs = 0;
    this.ce = used;
  }
}

function u16(a: Uint8Array, i: number, little: boolean): number {
  return little ? a[i] | (a[i + 1] << 8) : (a[i] << 8) | a[i + 1];
}
function u32(a: Uint8Array, i: number, little: boolean): number {
  return little
    ? (a[i] | (a[i + 1] << 8) | (a[i + 2] << 16) | (a[i + 3] << 24)) >>> 0
    : ((a[i] << 24) | (a[i + 1] << 16) | (a[i + 2] << 8) | a[i + 3]) >>> 0;
}

// ---------------------------------------------------------------------------------------------------------
// Data set parser: a resumable state machine over a ByteQueue with an explicit stack (no recursion).

type FrameKind = 'dataset' | 'item' | 'sequence' | 'fragments';
interface Frame {
  kind: FrameKind;
  /** Absolute end for defined length, -1 for undefined length. */
  end: number;
  /** Nearest defined end of this frame or any ancestor (Infinity if none): nothing may run past it. */
  limit: number;
  syntax: Syntax;
  /** dataset/item: where parsed elements go. */
  elements?: ScannedElement[];
  /** sequence/fragments: the owning element. */
  owner?: ScannedElement;
}

class DatasetParser {
  readonly elements: ScannedElement[] = [];
  private readonly stack: Frame[];
  private skipRemaining = 0;
  private pending: { el: ScannedElement; length: number; target: 'value' | 'bot' } | undefined;
  private pixelRepresentation = 0;

  constructor(
    readonly q: ByteQueue,
    syntax: Syntax,
    private readonly inlineLimit: number,
    private readonly maxTextLength: number,
  ) {
    this.stack = [
      { kind: 'dataset', end: -1, limit: Number.POSITIVE_INFINITY, syntax, elements: this.elements },
    ];
  }

  /** Parses as far as the available bytes allow. */
  run(): void {
    const q = this.q;
    for (;;) {
      if (this.skipRemaining > 0) {
        this.skipRemaining -= q.skip(this.skipRemaining);
        if (this.skipRemaining > 0) return;
      }
      const pending = this.pending;
      if (pending) {
        const n = pending.length;
        if (!q.peek(n)) return;
        const bytes = q.pa.slice(q.pi, q.pi + n);
        q.consume(n);
        if (pending.target === 'bot') pending.el.basicOffsetTable = bytes;
        else {
          pending.el.value = bytes;
          if (pending.el.tag === '00280103' && this.stack.length === 1 && n >= 2) {
            this.pixelRepresentation = u16(bytes, 0, !pending.el.bigEndian);
          }
        }
        this.pending = undefined;
      }
      const top = this.stack[this.stack.length - 1];
      if (top.end >= 0 && q.pos >= top.end) {
        if (q.pos > top.end)
          throw new Part10Error('malformed', `element runs past the end of its ${top.kind}`);
        this.close(top.end);
        continue;
      }
      let progressed: boolean;
      switch (top.kind) {
        case 'dataset':
        case 'item':
          progressed = this.readElement(top);
          break;
        case 'sequence':
          progressed = this.readItem(top);
          break;
        default:
          progressed = this.readFragment(top);
      }
      if (!progressed) return;
    }
  }

  /** End of input: anything still open means the stream was truncated. */
  finish(): void {
    const q = this.q;
    if (this.skipRemaining > 0 || this.pending) {
      const missing = this.skipRemaining || (this.pending ? this.pending.length - q.available() : 0);
      throw new Part10Error(
        'truncated',
        `data ends ${missing} bytes short of the end of a value (at offset ${q.pos})`,
      );
    }
    // Trailing bytes too short for an element header: tolerated only as zero padding.
    if (q.available() > 0 && !q.restIsZero()) {
      throw new Part10Error('truncated', `incomplete element header at offset ${q.pos}`);
    }
    if (this.stack.length > 1) {
      const open = this.stack[this.stack.length - 1];
      throw new Part10Error('truncated', `${open.kind} still open at end of data (offset ${q.pos})`);
    }
  }

  /** Pops the top frame; `endPos` is where its content ended (before any delimiter). */
  private close(endPos: number): void {
    const frame = this.stack.pop()!;
    if ((frame.kind === 'sequence' || frame.kind === 'fragments') && frame.owner && frame.end < 0) {
      frame.owner.length = endPos - frame.owner.offset;
    }
  }

  private pushFrame(frame: Omit<Frame, 'limit'>, parent: Frame): void {
    if (this.stack.length >= MAX_DEPTH)
      throw new Part10Error('malformed', `nesting deeper than ${MAX_DEPTH} levels`);
    if (frame.end > parent.limit) {
      throw new Part10Error(
        'malformed',
        `${frame.kind} at offset ${this.q.pos} runs past the end of its parent`,
      );
    }
    this.stack.push({ ...frame, limit: frame.end >= 0 ? frame.end : parent.limit });
  }

  private readElement(top: Frame): boolean {
    const q = this.q;
    const { explicit, little } = top.syntax;
    if (!q.peek(8)) return false;
    let a = q.pa;
    let i = q.pi;
    const group = u16(a, i, little);
    const element = u16(a, i + 2, little);
    const tag = ((group << 16) | element) >>> 0;

    if (group === 0xfffe) return this.delimiterInDataset(top, element, u32(a, i + 4, little));

    let vr: string;
    let headerLength: number;
    let length: number;
    let sequenceSyntax = top.syntax;
    if (explicit && isUpper(a[i + 4]) && isUpper(a[i + 5])) {
      vr = vrString(a[i + 4], a[i + 5]);
      if (LONG_VRS.has(vr)) {
        if (!q.peek(12)) return false;
        a = q.pa;
        i = q.pi;
        headerLength = 12;
        length = u32(a, i + 8, little);
        // UN of defined length whose dictionary VR is SQ and whose value starts with an Item: a sequence
        // re-encoded as UN by a node that did not know it, its content Implicit VR Little Endian (PS3.5 §6.2.2).
        if (vr === 'UN' && length !== UNDEFINED_LENGTH && length >= 8 && implicitVR(tag) === 'SQ') {
          if (!q.peek(16)) return false;
          a = q.pa;
          i = q.pi;
          if (u16(a, i + 12, true) === 0xfffe && u16(a, i + 14, true) === ITEM) {
            vr = 'SQ';
            sequenceSyntax = IMPLICIT_LE;
          }
        }
      } else {
        headerLength = 8;
        length = u16(a, i + 6, little);
        // Unknown VR letters: PS3.5 §6.2 defines none; keep the element, typed UN (2-byte length form).
        if (!KNOWN_VRS.has(vr)) vr = 'UN';
      }
    } else {
      // Implicit VR, or an Explicit VR element whose VR bytes are not letters: some writers emit implicit
      // elements inside explicit data sets; read it as implicit (4-byte length) rather than give up.
      vr = implicitVR(tag, this.pixelRepresentation);
      headerLength = 8;
      length = u32(a, i + 4, little);
      // An implicit private/unknown element of defined length that starts with an Item tag is a sequence
      // (PS3.5 §7.5: its VR is SQ in the private dictionary of its creator).
      if (vr === 'UN' && length !== UNDEFINED_LENGTH && length >= 8) {
        if (!q.peek(12)) return false;
        a = q.pa;
        i = q.pi;
        if (u16(a, i + 8, little) === 0xfffe && u16(a, i + 10, little) === ITEM) vr = 'SQ';
      }
    }

    const offset = q.pos + headerLength;
    const el: ScannedElement = { tag: tagString(tag), vr, offset, length };
    if (!little) el.bigEndian = true;
    q.consume(headerLength);
    top.elements!.push(el);

    if (length === UNDEFINED_LENGTH) {
      if (tag === TAG_PIXEL_DATA || vr === 'OB' || vr === 'OW') {
        // Encapsulated Pixel Data (PS3.5 §A.4): a sequence of fragment items (even if mislabelled UN).
        el.fragments = [];
        el.fragmentHeads = [];
        el.length = 0;
        this.pushFrame({ kind: 'fragments', end: -1, syntax: top.syntax, owner: el }, top);
        return true;
      }
      if (vr === 'SQ' || vr === 'UN') {
        // UN of undefined length: an Implicit VR Little Endian sequence whatever the transfer syntax (PS3.5 §6.2.2).
        const syntax = vr === 'UN' ? IMPLICIT_LE : top.syntax;
        el.vr = 'SQ';
        el.items = [];
        el.length = 0;
        delete el.bigEndian;
        this.pushFrame({ kind: 'sequence', end: -1, syntax, owner: el }, top);
        return true;
      }
      throw new Part10Error(
        'malformed',
        `undefined length on ${vr} element ${el.tag} at offset ${offset - headerLength}`,
      );
    }

    if (offset + length > top.limit) {
      // A value that cannot fit its (defined-length) parent: a corrupt length, not a truncated file.
      throw new Part10Error('malformed', `${el.tag} length ${length} runs past the end of its parent`);
    }
    if (vr === 'SQ') {
      el.items = [];
      if (sequenceSyntax !== top.syntax) delete el.bigEndian;
      this.pushFrame({ kind: 'sequence', end: offset + length, syntax: sequenceSyntax, owner: el }, top);
      return true;
    }
    if (this.retains(tag, vr, length)) {
      this.pending = { el, length, target: 'value' };
    } else {
      this.skipRemaining = length;
    }
    return true;
  }

  private retains(tag: number, vr: string, length: number): boolean {
    if (length <= this.inlineLimit) return true;
    if (NEEDED_TAGS.has(tag)) return length <= MAX_NEEDED_LENGTH;
    return !BINARY_VRS.has(vr) && length <= this.maxTextLength;
  }

  /** (FFFE,xxxx) met where a data element is expected. */
  private delimiterInDataset(top: Frame, element: number, length: number): boolean {
    const q = this.q;
    if (element === ITEM_DELIMITATION) {
      q.consume(8);
      if (top.kind === 'item' && top.end < 0) this.close(q.pos - 8);
      // else: a stray Item Delimitation Item (tolerated, as dcmtk does)
      return true;
    }
    if (element === SEQUENCE_DELIMITATION) {
      const parent = this.stack[this.stack.length - 2];
      if (top.kind === 'item' && top.end < 0 && parent?.kind === 'sequence' && parent.end < 0) {
        // Item Delimitation Item missing: the Sequence Delimitation Item closes both.
        q.consume(8);
        this.close(q.pos - 8);
        this.close(q.pos - 8);
        return true;
      }
      if (length === 0 && top.kind === 'dataset') {
        q.consume(8); // stray, tolerated
        return true;
      }
    }
    throw new Part10Error(
      'malformed',
      `unexpected (FFFE,${HEX[element >> 8]}${HEX[element & 0xff]}) at offset ${q.pos}`,
    );
  }

  private readItem(top: Frame): boolean {
    const q = this.q;
    const { little } = top.syntax;
    if (!q.peek(8)) return false;
    const group = u16(q.pa, q.pi, little);
    const element = u16(q.pa, q.pi + 2, little);
    const length = u32(q.pa, q.pi + 4, little);
    if (group !== 0xfffe) {
      throw new Part10Error('malformed', `expected an Item in sequence ${top.owner?.tag} at offset ${q.pos}`);
    }
    q.consume(8);
    if (element === ITEM) {
      const item: ScannedElement[] = [];
      top.owner!.items!.push(item);
      const end = length === UNDEFINED_LENGTH ? -1 : q.pos + length;
      this.pushFrame({ kind: 'item', end, syntax: top.syntax, elements: item }, top);
      return true;
    }
    if (element === SEQUENCE_DELIMITATION) {
      if (top.end < 0) this.close(q.pos - 8);
      // inside a defined-length sequence: stray, tolerated
      return true;
    }
    if (element === ITEM_DELIMITATION) return true; // stray, tolerated
    throw new Part10Error(
      'malformed',
      `unexpected (FFFE,${HEX[element >> 8]}${HEX[element & 0xff]}) in a sequence`,
    );
  }

  private readFragment(top: Frame): boolean {
    const q = this.q;
    const { little } = top.syntax;
    if (!q.peek(8)) return false;
    const group = u16(q.pa, q.pi, little);
    const element = u16(q.pa, q.pi + 2, little);
    const length = u32(q.pa, q.pi + 4, little);
    if (group !== 0xfffe || (element !== ITEM && element !== SEQUENCE_DELIMITATION)) {
      throw new Part10Error(
        'malformed',
        `expected a fragment Item in encapsulated pixel data at offset ${q.pos}`,
      );
    }
    if (element === SEQUENCE_DELIMITATION) {
      q.consume(8);
      this.close(q.pos - 8);
      return true;
    }
    if (length === UNDEFINED_LENGTH) throw new Part10Error('malformed', 'fragment with undefined length');
    if (q.pos + 8 + length > top.limit)
      throw new Part10Error('malformed', 'fragment runs past the end of its parent');
    // First bytes of the fragment (codestream marker), read before consuming the header so a short chunk can wait.
    const headLength = Math.min(4, length);
    if (!q.peek(8 + headLength)) return false;
    let head = 0;
    for (let k = 0; k < 4; k++) head = (head << 8) | (k < headLength ? q.pa[q.pi + 8 + k] : 0);
    q.consume(8);
    const owner = top.owner!;
    const fragments = owner.fragments!;
    fragments.push([q.pos, length]);
    owner.fragmentHeads!.push(head >>> 0);
    if (fragments.length === 1 && length > 0 && length <= MAX_NEEDED_LENGTH) {
      // Keep the Basic Offset Table on the Pixel Data element itself.
      this.pending = { el: owner, length, target: 'bot' };
    } else {
      this.skipRemaining = length;
    }
    return true;
  }
}

// ---------------------------------------------------------------------------------------------------------

type Phase = 'preamble' | 'meta' | 'dataset' | 'inflate';

export class Part10Scanner {
  private readonly inlineLimit: number;
  private readonly maxTextLength: number;
  private readonly maxInflatedBytes: number;
  private readonly q = new ByteQueue(0);
  private phase: Phase = 'preamble';
  private size = 0;
  private readonly meta: ScannedElement[] = [];
  private groupLengthEnd = -1;
  private transferSyntaxUID = '';
  private datasetOffset = 0;
  private parser: DatasetParser | undefined;
  private inflater: Inflate | undefined;
  private failure: Part10Error | undefined;
  private ended = false;

  constructor(opts: ScanOptions = {}) {
    this.inlineLimit = opts.inlineLimit ?? 1024;
    this.maxTextLength = Math.max(this.inlineLimit, opts.maxTextLength ?? 16 * 1024 * 1024);
    this.maxInflatedBytes = opts.maxInflatedBytes ?? MAX_INFLATED_BYTES;
  }

  push(chunk: Uint8Array): void {
    if (this.failure) throw this.failure;
    if (this.ended) throw new Error('Part10Scanner: push() after end()');
    if (chunk.length === 0) return;
    this.size += chunk.length;
    try {
      if (this.phase === 'inflate') {
        this.inflate(chunk, false);
        return;
      }
      this.q.push(chunk);
      this.advance();
      this.q.release();
    } catch (err) {
      throw this.fail(err);
    }
  }

  /**
   * The SOP Class and Instance UIDs read so far, from the data set (0008,0016 / 0008,0018) or else the
   * File Meta Information (0002,0002 / 0002,0003): what names an object that turned out broken.
   */
  uidsSeen(): { sopClassUID?: string; sopInstanceUID?: string } {
    const read = (list: readonly ScannedElement[] | undefined, tag: string) => {
      const el = list && findElement(list, tag);
      return el?.value ? uidString(el.value) || undefined : undefined;
    };
    const dataset = this.parser?.elements;
    return {
      sopClassUID: read(dataset, '00080016') ?? read(this.meta, '00020002'),
      sopInstanceUID: read(dataset, '00080018') ?? read(this.meta, '00020003'),
    };
  }

  end(): ScanResult {
    if (this.failure) throw this.failure;
    if (this.ended) throw new Error('Part10Scanner: end() called twice');
    this.ended = true;
    try {
      switch (this.phase) {
        case 'preamble':
          throw new Part10Error(
            'not-dicom',
            `only ${this.q.available()} bytes: no DICOM preamble and "DICM" prefix`,
          );
        case 'meta':
          // The file ends within (or right after) the meta information.
          if (this.q.available() > 0 || this.groupLengthEnd > this.q.pos) {
            throw new Part10Error('truncated', 'file ends inside the File Meta Information');
          }
          this.endMeta();
          break;
        case 'inflate':
          this.inflate(EMPTY, true);
          break;
        default:
      }
      this.parser!.finish();
      return {
        meta: this.meta,
        transferSyntaxUID: this.transferSyntaxUID,
        dataset: this.parser!.elements,
        size: this.size,
        deflated: this.phase === 'inflate',
        datasetOffset: this.datasetOffset,
        bigEndian: this.transferSyntaxUID === EXPLICIT_VR_BE,
      };
    } catch (err) {
      throw this.fail(err);
    }
  }

  private fail(err: unknown): Part10Error {
    this.failure =
      err instanceof Part10Error
        ? err
        : new Part10Error(
            'malformed',
            `unreadable DICOM: ${err instanceof Error ? err.message : String(err)}`,
          );
    return this.failure;
  }

  private advance(): void {
    const q = this.q;
    if (this.phase === 'preamble') {
      // Some writers omit the preamble and "DICM" and start with the meta information itself:
      // accepted when the first element is a group 0002 Explicit VR element.
      if (!q.peek(6)) return;
      const b = q.pa;
      const j = q.pi;
      if (b[j] === 0x02 && b[j + 1] === 0x00 && isUpper(b[j + 4]) && isUpper(b[j + 5])) {
        this.phase = 'meta';
      } else {
        if (!q.peek(132)) return;
        const a = q.pa;
        const i = q.pi + 128;
        if (a[i] !== 0x44 || a[i + 1] !== 0x49 || a[i + 2] !== 0x43 || a[i + 3] !== 0x4d) {
          throw new Part10Error('not-dicom', 'no "DICM" prefix at offset 128 (PS3.10 §7.1)');
        }
        q.consume(132);
        this.phase = 'meta';
      }
    }
    if (this.phase === 'meta') {
      if (!this.readMeta()) return;
    }
    if (this.phase === 'dataset') {
      this.parser!.run();
    } else if (this.phase === 'inflate') {
      for (const part of q.drain()) this.inflate(part, false);
    }
  }

  /** Reads File Meta Information elements; true once the meta information is complete. */
  private readMeta(): boolean {
    const q = this.q;
    for (;;) {
      const deflated = DEFLATED.has(this.transferSyntaxUID);
      // With a group length we know where the meta ends: needed for deflated data (no tag to peek at).
      if (this.groupLengthEnd >= 0 && q.pos >= this.groupLengthEnd && deflated) break;
      if (!q.peek(2)) return false;
      if (u16(q.pa, q.pi, true) !== 0x0002) break;
      if (!q.peek(8)) return false;
      let a = q.pa;
      let i = q.pi;
      const element = u16(a, i + 2, true);
      if (!isUpper(a[i + 4]) || !isUpper(a[i + 5])) {
        throw new Part10Error(
          'malformed',
          'File Meta Information is not Explicit VR Little Endian (PS3.10 §7.1)',
        );
      }
      const vr = vrString(a[i + 4], a[i + 5]);
      let headerLength = 8;
      let length = u16(a, i + 6, true);
      if (LONG_VRS.has(vr)) {
        if (!q.peek(12)) return false;
        a = q.pa;
        i = q.pi;
        headerLength = 12;
        length = u32(a, i + 8, true);
      }
      if (length > MAX_META_VALUE) {
        throw new Part10Error(
          'malformed',
          `meta element (0002,${HEX[element >> 8]}${HEX[element & 0xff]}) too long`,
        );
      }
      if (!q.peek(headerLength + length)) return false;
      const offset = q.pos + headerLength;
      const value = q.pa.slice(q.pi + headerLength, q.pi + headerLength + length);
      q.consume(headerLength + length);
      this.meta.push({ tag: tagString((0x0002 << 16) | element), vr, offset, length, value });
      if (element === 0x0000 && length === 4) this.groupLengthEnd = q.pos + u32(value, 0, true);
      if (element === 0x0010) this.transferSyntaxUID = uidString(value);
    }
    this.endMeta();
    return true;
  }

  private endMeta(): void {
    if (this.meta.length === 0)
      throw new Part10Error('no-meta', 'no File Meta Information (group 0002) after "DICM"');
    const ts = this.transferSyntaxUID;
    if (!ts)
      throw new Part10Error(
        'no-transfer-syntax',
        'File Meta Information lacks Transfer Syntax UID (0002,0010)',
      );
    if (!/^[0-9.]+$/.test(ts)) throw new Part10Error('unsupported', `transfer syntax "${ts}" is not a UID`);
    this.datasetOffset = this.q.pos;
    if (DEFLATED.has(ts)) {
      this.phase = 'inflate';
      const inner = new ByteQueue(0);
      this.parser = new DatasetParser(inner, EXPLICIT_LE, this.inlineLimit, this.maxTextLength);
      const inflater = new Inflate({ raw: true });
      let inflated = 0;
      inflater.onData = (chunk) => {
        inflated += (chunk as Uint8Array).length;
        if (inflated > this.maxInflatedBytes) {
          throw new Part10Error(
            'too-large',
            `the deflated data set inflates to more than ${this.maxInflatedBytes} bytes`,
          );
        }
        inner.push(chunk as Uint8Array);
        this.parser!.run();
        inner.release();
      };
      this.inflater = inflater;
      return;
    }
    this.phase = 'dataset';
    const syntax = ts === IMPLICIT_VR_LE ? IMPLICIT_LE : ts === EXPLICIT_VR_BE ? EXPLICIT_BE : EXPLICIT_LE;
    this.parser = new DatasetParser(this.q, syntax, this.inlineLimit, this.maxTextLength);
  }

  private inflate(chunk: Uint8Array, last: boolean): void {
    const inflater = this.inflater!;
    if ((inflater as unknown as { ended: boolean }).ended) return; // bytes after the deflate stream: ignored
    inflater.push(chunk, last);
    if (inflater.err)
      throw new Part10Error(
        'malformed',
        `deflated data set: ${inflater.msg || `zlib error ${inflater.err}`}`,
      );
  }
}

/** UI value: trailing NUL/space padding removed (PS3.5 §9.1). */
function uidString(value: Uint8Array): string {
  let end = value.length;
  while (end > 0 && (value[end - 1] === 0 || value[end - 1] === 0x20)) end--;
  let s = '';
  for (let k = 0; k < end; k++) s += String.fromCharCode(value[k]);
  return s.trim();
}

/** Convenience: scans a whole file held in memory. */
export function scanPart10(bytes: Uint8Array, opts?: ScanOptions): ScanResult {
  const scanner = new Part10Scanner(opts);
  scanner.push(bytes);
  return scanner.end();
}

/** Finds an element by 8-hex tag in a list (top level or an item). */
export function findElement(elements: readonly ScannedElement[], tag: string): ScannedElement | undefined {
  for (const el of elements) if (el.tag === tag) return el;
  return undefined;
}

/**
 * multipart/related (RFC 2046 §5.1, RFC 2387) as used by DICOMweb (PS3.18 8.6.1.2).
 * Pure and streaming: parts are read from an AsyncIterable of byte chunks and each part's body is
 * itself an AsyncIterable, so a gigabyte request is never held in memory. No I/O.
 */
import { badRequest } from './status';

export interface Part {
  /** Header names lower-cased. */
  headers: Record<string, string>;
  /** The part's bytes. Must be consumed (or abandoned) before asking for the next part. */
  body: AsyncIterable<Uint8Array>;
}

const CRLF = Uint8Array.of(13, 10);
const enc = new TextEncoder();
const MAX_HEADER_BYTES = 16 * 1024;

type NodeBuffer = Uint8Array & { indexOf(needle: Uint8Array, from?: number): number };
const NodeBufferClass = (
  globalThis as { Buffer?: { from(b: ArrayBufferLike, off: number, len: number): NodeBuffer } }
).Buffer;

/**
 * Searches needle in hay from `from`. On Node, Buffer's native search (no copy: a view on the same memory);
 * elsewhere, native indexOf for the first byte, then a compare.
 */
function indexOf(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  if (NodeBufferClass)
    return NodeBufferClass.from(hay.buffer, hay.byteOffset, hay.length).indexOf(needle, from);
  return indexOfPortable(hay, needle, from);
}

export function indexOfPortable(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0];
  const last = hay.length - needle.length;
  let i = hay.indexOf(first, from);
  while (i !== -1 && i <= last) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
    i = hay.indexOf(first, i + 1);
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * The longest boundary accepted. RFC 2046 allows 70 characters, but real senders exceed it: Orthanc's
 * DICOMweb client (STOW-RS from `/dicom-web/servers/{name}/stow`) joins two UUIDs, 73 characters.
 * A longer boundary is harmless to the parser; refusing it would fail every upload from such a sender.
 */
export const MAX_BOUNDARY_CHARS = 200;

export function isValidBoundary(boundary: string): boolean {
  // RFC 2046 bchars, not ending in a space; 1..MAX_BOUNDARY_CHARS characters (RFC 2046 says 70).
  return (
    boundary.length <= MAX_BOUNDARY_CHARS &&
    /^[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]$/.test(boundary)
  );
}

/**
 * Splits a multipart body into parts. Throws DicomwebError(400) for a missing opening boundary,
 * malformed part headers or a body that ends before the closing delimiter.
 */
export async function* parseMultipart(
  source: AsyncIterable<Uint8Array>,
  boundary: string,
): AsyncGenerator<Part, void, undefined> {
  if (!isValidBoundary(boundary)) throw badRequest(`invalid multipart boundary "${boundary}"`);
  const it = source[Symbol.asyncIterator]();
  const dashBoundary = enc.encode(`--${boundary}`);
  // The delimiter that ends a body: CRLF "--" boundary.
  const delimiter = enc.encode(`\r\n--${boundary}`);
  let buf: Uint8Array = new Uint8Array(0);
  let ended = false;

  const fill = async (): Promise<boolean> => {
    if (ended) return false;
    const r = await it.next();
    if (r.done) {
      ended = true;
      return false;
    }
    buf = concat(buf, r.value instanceof Uint8Array ? r.value : new Uint8Array(r.value));
    return true;
  };
  const need = async (n: number): Promise<boolean> => {
    while (buf.length < n) if (!(await fill())) return false;
    return true;
  };

  // Preamble: skip to the first dash-boundary at the start of a line (RFC 2046 5.1.1: the boundary
  // text elsewhere in the preamble is not a delimiter).
  await need(dashBoundary.length);
  if (indexOf(buf.subarray(0, dashBoundary.length), dashBoundary) === 0) {
    buf = buf.subarray(dashBoundary.length);
  } else {
    for (let from = 0; ; ) {
      const at = indexOf(buf, delimiter, from);
      if (at !== -1) {
        buf = buf.subarray(at + delimiter.length);
        break;
      }
      // Search again from where a delimiter split across reads could begin.
      from = Math.max(0, buf.length - delimiter.length + 1);
      if (buf.length > MAX_HEADER_BYTES * 4 || !(await fill())) {
        throw badRequest(
          `multipart body does not start with the boundary "${boundary}" given in Content-Type`,
        );
      }
    }
  }

  for (;;) {
    // After a boundary: "--" closes, else optional transport padding then CRLF.
    if (!(await need(2))) throw badRequest('multipart body ended after a boundary, before the closing "--"');
    if (buf[0] === 45 && buf[1] === 45) return;
    let eol = indexOf(buf, CRLF);
    while (eol === -1) {
      if (buf.length > 256 || !(await fill())) throw badRequest('malformed multipart boundary line');
      eol = indexOf(buf, CRLF);
    }
    if (!/^[ \t]*$/.test(new TextDecoder().decode(buf.subarray(0, eol)))) {
      throw badRequest('malformed multipart boundary line');
    }
    // Keep the CRLF that ends the boundary line: headers then run to the first CRLF CRLF.
    buf = buf.subarray(eol);
    const headerEnd = enc.encode('\r\n\r\n');
    let end = indexOf(buf, headerEnd);
    while (end === -1) {
      if (buf.length > MAX_HEADER_BYTES) throw badRequest('multipart part headers are too large');
      if (!(await fill())) throw badRequest('multipart body ended inside part headers');
      end = indexOf(buf, headerEnd);
    }
    const headers = parseHeaders(new TextDecoder().decode(buf.subarray(2, Math.max(2, end))));
    buf = buf.subarray(end + 4);

    // Body: everything up to the next delimiter. Reading is driven from here, not by the consumer's
    // iterator, so a consumer that stops early (a refused part) cannot lose our place in the stream.
    let bodyDone = false;
    const nextBodyChunk = async (): Promise<Uint8Array | undefined> => {
      while (!bodyDone) {
        const at = indexOf(buf, delimiter);
        if (at !== -1) {
          const chunk = buf.subarray(0, at);
          buf = buf.subarray(at + delimiter.length);
          bodyDone = true;
          return chunk.length > 0 ? chunk : undefined;
        }
        // Keep a tail that might be the start of the delimiter.
        const safe = buf.length - (delimiter.length - 1);
        if (safe > 0) {
          const chunk = buf.subarray(0, safe);
          buf = buf.subarray(safe);
          return chunk;
        }
        // buf is a short tail. Rather than copying the next chunk onto it, check whether the delimiter
        // starts inside the tail; if not, the tail is body bytes and the chunk becomes buf as it is.
        const r = ended ? undefined : await it.next();
        if (!r || r.done) {
          ended = true;
          throw badRequest('multipart body is truncated: a part has no closing boundary');
        }
        const chunk = r.value instanceof Uint8Array ? r.value : new Uint8Array(r.value);
        // The probe decides only when the chunk is long enough to complete a delimiter begun in the tail.
        const probe = concat(buf, chunk.subarray(0, delimiter.length));
        const inTail = indexOf(probe, delimiter);
        if (chunk.length < delimiter.length - 1 || (inTail !== -1 && inTail < buf.length)) {
          buf = concat(buf, chunk); // rare: a tiny chunk, or the delimiter straddles the two
        } else {
          const tail = buf;
          buf = chunk;
          if (tail.length > 0) return tail;
        }
      }
      return undefined;
    };
    const body: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          const value = await nextBodyChunk();
          return value ? { value, done: false } : { value: undefined, done: true };
        },
        return: async () => ({ value: undefined, done: true }),
      }),
    };
    yield { headers, body };
    while (!bodyDone) await nextBodyChunk();
  }
}

function parseHeaders(text: string): Record<string, string> {
  const headers: Record<string, string> = {};
  if (text === '') return headers;
  // A line that starts with a space or a tab continues the header before it (RFC 5322 folding).
  for (const line of text.replace(/\r\n(?=[ \t])/g, '').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw badRequest(`malformed multipart part header "${line.slice(0, 80)}"`);
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** A random boundary safe for any body (RFC 2046 bchars). */
export function newBoundary(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return `DICOMwebBoundary${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export interface OutgoingPart {
  contentType: string;
  /** Extra headers, e.g. Content-Location. */
  headers?: Record<string, string>;
  body: Uint8Array | AsyncIterable<Uint8Array>;
}

/** Serializes parts as a multipart/related body, streaming each part's body through. */
export async function* writeMultipart(
  parts: AsyncIterable<OutgoingPart> | Iterable<OutgoingPart>,
  boundary: string,
): AsyncGenerator<Uint8Array> {
  let first = true;
  for await (const part of parts) {
    let head = `${first ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${part.contentType}\r\n`;
    for (const [k, v] of Object.entries(part.headers ?? {})) head += `${k}: ${v}\r\n`;
    yield enc.encode(`${head}\r\n`);
    first = false;
    if (part.body instanceof Uint8Array) yield part.body;
    else yield* part.body;
  }
  yield enc.encode(`${first ? '' : '\r\n'}--${boundary}--\r\n`);
}

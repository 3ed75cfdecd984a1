/**
 * npm run fuzz — bad input never hurts the archive. Sends seeded, reproducible STOW-RS requests built from
 * the sample files: mutated files (truncated, flipped bytes, absurd element lengths, sequences nested
 * thousands deep, huge elements, garbage) and broken multipart framing (missing, duplicated or foreign
 * boundaries, huge or malformed part headers, wrong media types, wrong Content-Length, slow senders,
 * senders that stall and vanish). After each case the archive must have answered in time with a clear
 * status (2xx/409 with a reason and a message per refused instance, or 4xx with a message; never 5xx),
 * still answer /healthz, list exactly the instances it acknowledged, and hold no blob it does not list.
 *
 *   npm run fuzz -- --cases 5000 --seed 7        # its own archive in a temporary folder
 *   npm run fuzz -- --url http://127.0.0.1:8080  # an archive already running (no blob-folder check)
 *
 * Exit code 1 when any case broke a rule; each is printed with its seed and number, to replay it.
 */
import { readdir, readFile, rm, stat, mkdtemp } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ScanResult, scanPart10 } from '../dicomweb/part10';
import { startArchive, REPO_ROOT } from './lib/archive-process';
import { commandLine, isMain, parseOrExit } from './lib/cli';
import {
  countInstances,
  listInstances,
  parseStow,
  type Random,
  seededRandom,
  sleep,
  syntheticInstances,
  uidsOf,
} from './lib/reliability';

/** Limits the fuzz archive runs with, so the size limits are reached cheaply. */
export const FUZZ_LIMITS = {
  PACS_MAX_INSTANCE_BYTES: String(8 * 1024 * 1024),
  PACS_MAX_STOW_BYTES: String(48 * 1024 * 1024),
};

const ALLOWED = [200, 202, 409, 400, 413, 415];

interface FuzzCase {
  category: string;
  detail: string;
  /** Content-Type of the request; undefined: none sent. */
  contentType?: string;
  /** Body chunks; a number is a pause (ms) between chunks: a slow sender. */
  body: Array<Buffer | number>;
  /** Content-Length sent: exact by default; 'chunked' for chunked transfer coding; a number to lie. */
  length?: number | 'chunked';
  /** The request head is sent a few bytes at a time with this pause (ms) between pieces. */
  slowHeadMs?: number;
  /** The client vanishes (destroys its socket) once the body is sent: no answer is expected. */
  vanish?: boolean;
  /** The client half-closes after the body (a Content-Length it did not honour). */
  halfClose?: boolean;
  /** The files sent as parts (to check acknowledged instances byte for byte). */
  files: Uint8Array[];
  allowed?: number[];
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

// ----------------------------------------------------------------------------------------------------
// The client: raw HTTP/1.1 over a socket, so framing, lengths and timing are entirely ours.

function parseResponse(raw: Buffer): RawAnswer | undefined {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1]);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = raw.subarray(end + 4);
  if (headers['transfer-encoding'] === 'chunked') {
    const out: Buffer[] = [];
    for (;;) {
      const eol = rest.indexOf('\r\n');
      if (eol < 0) return undefined;
      const size = Number.parseInt(rest.subarray(0, eol).toString(), 16);
      if (size === 0) return { status, headers, body: Buffer.concat(out) };
      if (rest.length < eol + 2 + size + 2) return undefined;
      out.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 2 + size + 2);
    }
  }
  const length = Number(headers['content-length'] ?? Number.NaN);
  if (Number.isFinite(length)) {
    if (rest.length < length) return undefined;
    return { status, headers, body: rest.subarray(0, length) };
  }
  return undefined;
}

async function send(
  host: string,
  port: number,
  c: FuzzCase,
  timeoutMs: number,
): Promise<RawAnswer | 'vanished' | 'no answer' | 'timeout'> {
  const bodyBytes = c.body.reduce<number>((n, b) => n + (typeof b === 'number' ? 0 : b.length), 0);
  let head = `POST /dicomweb/studies HTTP/1.1\r\nHost: ${host}:${port}\r\nAccept: application/dicom+json\r\nConnection: close\r\n`;
  if (c.contentType !== undefined) head += `Content-Type: ${c.contentType}\r\n`;
  head +=
    c.length === 'chunked'
      ? 'Transfer-Encoding: chunked\r\n'
      : `Content-Length: ${c.length ?? bodyBytes}\r\n`;
  head += '\r\n';
  const socket = connect(port, host);
  const received: Buffer[] = [];
  let closed = false;
  socket.on('data', (d) => received.push(d));
  const gone = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  socket.on('error', () => {}); // the server may close while we still send: read what it answered
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const write = (b: Buffer) =>
    closed || socket.destroyed
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          if (socket.write(b)) resolve();
          else {
            socket.once('drain', () => resolve());
            socket.once('close', () => resolve());
          }
        });
  const deadline = Date.now() + timeoutMs;
  const answered = () => parseResponse(Buffer.concat(received));
  if (c.slowHeadMs) {
    const h = Buffer.from(head);
    for (let i = 0; i < h.length; i += 16) {
      await write(h.subarray(i, i + 16));
      await sleep(c.slowHeadMs);
    }
  } else await write(Buffer.from(head));
  for (const chunk of c.body) {
    if (closed || answered()) break;
    if (typeof chunk === 'number') await sleep(chunk);
    else if (c.length === 'chunked')
      await write(
        Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]),
      );
    else await write(chunk);
    if (Date.now() > deadline) break;
  }
  if (c.length === 'chunked' && !closed) await write(Buffer.from('0\r\n\r\n'));
  if (c.vanish) {
    socket.destroy();
    return 'vanished';
  }
  if (c.halfClose && !closed) socket.end();
  const timer = new Promise<'timeout'>((resolve) =>
    setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now())),
  );
  for (;;) {
    const a = answered();
    if (a) {
      socket.destroy();
      return a;
    }
    if (closed) return 'no answer';
    const r = await Promise.race([
      gone.then(() => 'closed' as const),
      timer,
      sleep(20).then(() => 'tick' as const),
    ]);
    if (r === 'timeout') {
      socket.destroy();
      return 'timeout';
    }
  }
}

// ----------------------------------------------------------------------------------------------------
// The cases.

const BOUNDARY = 'fuzzBoundary7e3c';
const CT = (b = BOUNDARY) => `multipart/related; type="application/dicom"; boundary=${b}`;

function multipart(
  files: Uint8Array[],
  boundary = BOUNDARY,
  partHead = 'Content-Type: application/dicom\r\n',
): Buffer {
  const out: Buffer[] = [];
  for (const f of files)
    out.push(Buffer.from(`--${boundary}\r\n${partHead}\r\n`), Buffer.from(f), Buffer.from('\r\n'));
  out.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(out);
}

function fileCase(category: string, detail: string, file: Uint8Array, allowed?: number[]): FuzzCase {
  return { category, detail, contentType: CT(), body: [multipart([file])], files: [file], allowed };
}

/** Explicit VR little endian element header. */
function element(group: number, el: number, vr: string, length: number): Buffer {
  const long = ['OB', 'OW', 'OF', 'SQ', 'UT', 'UN', 'UC', 'UR'].includes(vr);
  const b = Buffer.alloc(long ? 12 : 8);
  b.writeUInt16LE(group, 0);
  b.writeUInt16LE(el, 2);
  b.write(vr, 4, 'latin1');
  if (long) b.writeUInt32LE(length >>> 0, 8);
  else b.writeUInt16LE(length, 6);
  return b;
}
function itemTag(el: number, length: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(0xfffe, 0);
  b.writeUInt16LE(el, 2);
  b.writeUInt32LE(length >>> 0, 4);
  return b;
}

/** A sequence (FFFA,FFFA) nested depth levels deep, appended after the data set (tags stay in order). */
function deepSequence(depth: number, closed: boolean): Buffer {
  const open: Buffer[] = [];
  const close: Buffer[] = [];
  for (let d = 0; d < depth; d++) {
    open.push(element(0xfffa, 0xfffa, 'SQ', 0xffffffff), itemTag(0xe000, 0xffffffff));
    close.push(itemTag(0xe00d, 0), itemTag(0xe0dd, 0));
  }
  return Buffer.concat(closed ? [...open, ...close] : open);
}

function isExplicitLE(file: Uint8Array): boolean {
  const uids = file.length > 200 ? Buffer.from(file).toString('latin1', 0, 400) : '';
  return uids.includes('1.2.840.10008.1.2.1\0') || uids.includes('1.2.840.10008.1.2.1 ');
}

/** Sets the length field of a random top-level element to an absurd value. */
function absurdLength(file: Uint8Array, random: Random): { bytes: Uint8Array; detail: string } | undefined {
  let scan: ScanResult;
  try {
    scan = scanPart10(file);
  } catch {
    return undefined;
  }
  if (scan.deflated || scan.bigEndian) return undefined;
  const implicit = scan.transferSyntaxUID === '1.2.840.10008.1.2';
  const els = scan.dataset.filter((e) => e.offset > 0 && e.offset < file.length);
  if (els.length === 0) return undefined;
  const el = random.pick(els);
  const out = Buffer.from(file);
  const long =
    implicit ||
    ['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV'].includes(el.vr);
  const values = long
    ? [0xffffffff, 0xfffffffe, 0x7fffffff, 0x80000000, file.length * 4, el.length + 1, el.length + 4097, 1]
    : [0xffff, 0xfffe, el.length + 1, 0x8000, 1];
  const v = random.pick(values);
  if (long) out.writeUInt32LE(v >>> 0, el.offset - 4);
  else out.writeUInt16LE(v, el.offset - 2);
  return {
    bytes: out,
    detail: `(${el.tag.slice(0, 4)},${el.tag.slice(4)}) ${el.vr} length ${el.length} -> ${v}`,
  };
}

export function makeCase(random: Random, files: { name: string; bytes: Uint8Array }[]): FuzzCase {
  const f = random.pick(files);
  const file = f.bytes;
  const kind = random.int(100);
  // ---- mutated files (60 %)
  if (kind < 10) {
    const at = random.int(file.length);
    return fileCase('file: truncated', `${f.name} cut at ${at}/${file.length}`, file.subarray(0, at));
  }
  if (kind < 22) {
    const out = Buffer.from(file);
    const n = 1 + random.int(16);
    const region = random.next() < 0.6 ? Math.min(out.length, 2048) : out.length;
    for (let i = 0; i < n; i++) out[random.int(region)] ^= 1 << random.int(8);
    return fileCase('file: flipped bits', `${f.name}, ${n} bits in the first ${region} bytes`, out);
  }
  if (kind < 32) {
    const m = absurdLength(file, random);
    if (m) return fileCase('file: absurd element length', `${f.name} ${m.detail}`, m.bytes);
    return fileCase('file: truncated', `${f.name} cut at 140`, file.subarray(0, 140));
  }
  if (kind < 40) {
    const depth = random.pick([8, 63, 65, 200, 5_000, 50_000]);
    const closed = random.next() < 0.7;
    const base = isExplicitLE(file) ? file : syntheticInstances(1)[0].bytes;
    return fileCase(
      'file: deep sequence',
      `depth ${depth}${closed ? '' : ', never closed'}`,
      Buffer.concat([Buffer.from(base), deepSequence(depth, closed)]),
    );
  }
  if (kind < 48) {
    const base = isExplicitLE(file) ? file : syntheticInstances(1)[0].bytes;
    const variant = random.int(4);
    if (variant === 0) {
      const n = random.pick([1, 3]) * 1024 * 1024;
      const text = Buffer.alloc(n, 'A');
      return fileCase(
        'file: huge element',
        `a ${n}-byte UT after the data set`,
        Buffer.concat([
          Buffer.from(base),
          element(0x7fe1, 0x0010, 'LO', 4),
          Buffer.from('FUZZ'),
          element(0x7fe1, 0x1001, 'UT', n),
          text,
        ]),
      );
    }
    if (variant === 1) {
      const n = 9 * 1024 * 1024; // above the archive's 8 MiB PACS_MAX_INSTANCE_BYTES
      return fileCase(
        'file: huge element',
        `${n}-byte padding: larger than the instance limit`,
        Buffer.concat([Buffer.from(base), element(0xfffc, 0xfffc, 'OB', n), Buffer.alloc(n)]),
      );
    }
    if (variant === 2) {
      return fileCase(
        'file: huge element',
        'a 4 GB padding declared, 10 bytes present',
        Buffer.concat([Buffer.from(base), element(0xfffc, 0xfffc, 'OB', 0xfffffff0), Buffer.alloc(10)]),
      );
    }
    const n = 20_000;
    const els: Buffer[] = [element(0x7fe1, 0x0010, 'LO', 4), Buffer.from('FUZZ')];
    for (let i = 0; i < n; i++) els.push(element(0x7fe1, 0x1000 + (i % 0xff), 'SH', 4), Buffer.from('ABCD'));
    return fileCase(
      'file: huge element',
      `${n} elements after the data set`,
      Buffer.concat([Buffer.from(base), ...els]),
    );
  }
  if (kind < 54) {
    const variant = random.int(5);
    const garbage = [
      Buffer.from(random.bytes(1 + random.int(4096))),
      Buffer.alloc(0),
      Buffer.concat([Buffer.alloc(128), Buffer.from('DICM')]),
      Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.from(random.bytes(500))]),
      Buffer.from(file).subarray(132), // no preamble
    ][variant];
    return fileCase('file: garbage', `variant ${variant}, ${garbage.length} bytes`, garbage);
  }
  if (kind < 60) {
    const others = Array.from({ length: 1 + random.int(3) }, () => random.pick(files).bytes);
    const bad = Buffer.from(file).subarray(0, random.int(file.length));
    const all = [...others, bad];
    return {
      category: 'file: good and bad parts',
      detail: `${others.length} good + 1 truncated`,
      contentType: CT(),
      body: [multipart(all)],
      files: all,
    };
  }
  // ---- broken multipart framing and transport (40 %)
  const good = multipart([file]);
  const v = random.int(21);
  const framing = (
    detail: string,
    body: Buffer | Array<Buffer | number>,
    over: Partial<FuzzCase> = {},
  ): FuzzCase => ({
    category: `multipart: ${detail.split(':')[0]}`,
    detail,
    contentType: CT(),
    body: Array.isArray(body) ? body : [body],
    files: [file],
    ...over,
  });
  switch (v) {
    case 0:
      return framing('no opening boundary', good.subarray(BOUNDARY.length + 4));
    case 1:
      return framing('no closing boundary', good.subarray(0, good.length - BOUNDARY.length - 6));
    case 2:
      return framing(
        'duplicated boundaries',
        Buffer.concat([Buffer.from(`--${BOUNDARY}\r\n--${BOUNDARY}\r\n`), good]),
      );
    case 3:
      return framing('boundary not the one declared', good, { contentType: CT('someOtherBoundary') });
    case 4:
      return framing('no boundary parameter', good, {
        contentType: 'multipart/related; type="application/dicom"',
      });
    case 5: {
      const size = random.pick([17 * 1024, 200 * 1024, 2 * 1024 * 1024]);
      return framing(
        `huge part headers: ${size} bytes`,
        multipart([file], BOUNDARY, `Content-Type: application/dicom\r\nX-Fuzz: ${'x'.repeat(size)}\r\n`),
      );
    }
    case 6:
      return framing(
        'malformed part header: no colon',
        multipart([file], BOUNDARY, 'Content-Type application/dicom\r\n'),
      );
    case 7:
      return framing(
        'LF line endings',
        Buffer.from(good.toString('latin1').replaceAll('\r\n', '\n'), 'latin1'),
      );
    case 8:
      return framing(
        'preamble and epilogue of garbage',
        Buffer.concat([
          Buffer.from(random.bytes(random.int(70_000))),
          Buffer.from('\r\n'),
          good,
          Buffer.from(random.bytes(1000)),
        ]),
      );
    case 9: {
      const b = random.pick(['x'.repeat(201), 'bad boundary "quoted"', '', 'a;b=c']);
      return framing(`invalid boundary: ${JSON.stringify(b.slice(0, 20))}`, good, {
        contentType: `multipart/related; type="application/dicom"; boundary=${b}`,
      });
    }
    case 10: {
      const ct = random.pick([
        'application/json',
        'multipart/related; type="image/jpeg"; boundary=' + BOUNDARY,
        'text/plain',
        undefined,
      ]);
      return framing(`wrong media type: ${ct}`, good, { contentType: ct });
    }
    case 11:
      return framing('part of another type', multipart([file], BOUNDARY, 'Content-Type: image/png\r\n'));
    case 12:
      return framing('no parts', Buffer.from(`--${BOUNDARY}--\r\n`));
    case 13: {
      const n = random.pick([100, 2000]);
      const empty = Buffer.concat([
        ...Array.from({ length: n }, () =>
          Buffer.from(`--${BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n\r\n`),
        ),
        Buffer.from(`--${BOUNDARY}--\r\n`),
      ]);
      return framing(`many empty parts: ${n}`, empty, { files: [] });
    }
    case 14: {
      // A slow sender that gets there: the body in 10-30 pieces with pauses.
      const pieces = 10 + random.int(20);
      const body: Array<Buffer | number> = [];
      const step = Math.ceil(good.length / pieces);
      for (let i = 0; i < good.length; i += step) body.push(good.subarray(i, i + step), 10 + random.int(30));
      return framing(`slow sender: ${pieces} pieces`, body);
    }
    case 15:
      return framing('slow request head', good, { slowHeadMs: 15 });
    case 16: {
      // A sender that stalls half way and vanishes: nothing may be kept, nothing may leak.
      const at = random.int(good.length);
      return framing(`vanishing sender: after ${at}/${good.length} bytes`, [good.subarray(0, at), 200], {
        vanish: true,
      });
    }
    case 17: {
      const claimed = good.length + 1 + random.int(100_000);
      return framing(`wrong Content-Length: ${claimed} for ${good.length} bytes, then half-close`, good, {
        length: claimed,
        halfClose: true,
      });
    }
    case 18: {
      // Chunked transfer coding with odd chunk sizes.
      const body: Buffer[] = [];
      for (let i = 0; i < good.length; ) {
        const n = 1 + random.int(9000);
        body.push(good.subarray(i, i + n));
        i += n;
      }
      return framing(`chunked: ${body.length} chunks`, body, { length: 'chunked' });
    }
    case 19: {
      // A large body refused by its first bytes: the client, sending it all before reading, must not stall.
      const mb = 4 + random.int(20);
      const big = Buffer.concat([
        Buffer.from('--notTheBoundary\r\n\r\n'),
        Buffer.alloc(mb * 1024 * 1024, 0x41),
      ]);
      return framing(`large body refused early: ${mb} MB, foreign boundary`, big, { files: [] });
    }
    default: {
      const declared = 64 * 1024 * 1024; // above the 48 MiB PACS_MAX_STOW_BYTES: refused before reading
      return framing(`declared length above the limit: ${declared}`, good.subarray(0, 1024), {
        length: declared,
        halfClose: true,
        allowed: [413],
      });
    }
  }
}

// ----------------------------------------------------------------------------------------------------
// The run.

export interface FuzzOptions {
  /** Archive base URL (http://127.0.0.1:PORT). */
  baseUrl: string;
  cases: number;
  seed: number;
  /** Sample files (paths); synthetic instances when empty. */
  samples: string[];
  /** The archive's data folder (filesystem store): every blob must be an instance it lists. */
  dataDir?: string;
  /** Per case, ms (default 20 s): no answer by then is a hang. */
  timeoutMs?: number;
  onProgress?: (done: number) => void;
}

export interface FuzzReport {
  cases: number;
  seed: number;
  ms: number;
  byCategory: Record<string, number>;
  byStatus: Record<string, number>;
  /** FailureReason (hex) counts over every refused instance. */
  reasons: Record<string, number>;
  acknowledged: number;
  /** Rules broken: "case N (category, detail): what". Empty when all is well. */
  violations: string[];
}

async function blobFiles(dataDir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(p);
    }
  };
  await walk(path.join(dataDir, 'blobs'));
  return out;
}

export async function loadFuzzFiles(samples: string[]): Promise<{ name: string; bytes: Uint8Array }[]> {
  const files: { name: string; bytes: Uint8Array }[] = [];
  for (const p of samples) files.push({ name: path.basename(p), bytes: new Uint8Array(await readFile(p)) });
  if (files.length === 0)
    for (const [i, inst] of syntheticInstances(8, { rows: 64 }).entries())
      files.push({ name: `synthetic-${i}`, bytes: inst.bytes });
  return files;
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const url = new URL(opts.baseUrl);
  const host = url.hostname;
  const port = Number(url.port);
  const dicomweb = `${opts.baseUrl}/dicomweb`;
  const random = seededRandom(opts.seed);
  const files = await loadFuzzFiles(opts.samples);
  const report: FuzzReport = {
    cases: 0,
    seed: opts.seed,
    ms: 0,
    byCategory: {},
    byStatus: {},
    reasons: {},
    acknowledged: 0,
    violations: [],
  };
  const listed = new Set((await listInstances(dicomweb)).map((i) => i.sop));
  const t0 = Date.now();
  for (let n = 1; n <= opts.cases; n++) {
    const c = makeCase(random, files);
    const label = `case ${n} (${c.category}: ${c.detail})`;
    const violation = (what: string) => report.violations.push(`${label}: ${what}`);
    report.cases++;
    report.byCategory[c.category] = (report.byCategory[c.category] ?? 0) + 1;
    const answer = await send(host, port, c, opts.timeoutMs ?? 20_000);
    if (typeof answer === 'string') {
      report.byStatus[answer] = (report.byStatus[answer] ?? 0) + 1;
      if (answer === 'timeout') violation('no answer in time (hang)');
      else if (answer === 'no answer' && !c.halfClose) violation('connection closed without an answer');
    } else {
      report.byStatus[answer.status] = (report.byStatus[answer.status] ?? 0) + 1;
      const text = answer.body.toString('utf8');
      if (!(c.allowed ?? ALLOWED).includes(answer.status))
        violation(`HTTP ${answer.status}: ${text.slice(0, 300)}`);
      const stow = parseStow(answer.status, text, new Headers());
      if (answer.status >= 400 && answer.status !== 409 && !stow.message)
        violation(`HTTP ${answer.status} without a message: ${text.slice(0, 200)}`);
      for (const f of stow.failed) {
        const key = `0x${f.reason.toString(16).toUpperCase().padStart(4, '0')}`;
        report.reasons[key] = (report.reasons[key] ?? 0) + 1;
        if (!Number.isInteger(f.reason) || !f.message)
          violation(`a refused instance without a reason or a message: ${JSON.stringify(f)}`);
      }
      if ((answer.status === 202 || answer.status === 409) && stow.failed.length === 0)
        violation(`HTTP ${answer.status} without FailedSOPSequence`);
      // Every acknowledged instance is stored byte for byte as sent.
      for (const [k, sop] of stow.acknowledged.entries()) {
        report.acknowledged++;
        listed.add(sop);
        const sent =
          c.files.find((f) => uidsOf(f)?.sop === sop) ?? (c.files.length === 1 ? c.files[0] : undefined);
        const at = new URL(stow.retrieveURLs[k]);
        const res = await fetch(`${opts.baseUrl}${at.pathname}`, {
          headers: { Accept: 'application/dicom; transfer-syntax=*' },
        });
        const got = Buffer.from(await res.arrayBuffer());
        if (res.status !== 200) violation(`acknowledged ${sop} but WADO-RS answers ${res.status}`);
        else if (sent && !got.equals(Buffer.from(sent))) {
          // Same SOP Instance UID sent before with the same bytes is fine; different bytes are refused (0x0111).
          const sentUids = uidsOf(sent);
          if (!sentUids || sentUids.sop === sop)
            violation(`acknowledged ${sop} but the stored bytes differ from those sent`);
        }
      }
    }
    // The archive is alive and unchanged by what it refused.
    try {
      const h = await fetch(`${opts.baseUrl}/healthz`, { signal: AbortSignal.timeout(5000) });
      await h.arrayBuffer();
      if (h.status !== 200) violation(`/healthz answered ${h.status} afterwards`);
    } catch (err) {
      violation(`/healthz does not answer afterwards: ${err}`);
      break; // the archive is gone; no point going on
    }
    // A request that got no answer (its client vanished) may still be rolling back for a moment.
    let count = await countInstances(dicomweb);
    for (let t = 0; t < 40 && count !== listed.size; t++) {
      await sleep(50);
      count = await countInstances(dicomweb);
    }
    if (count !== listed.size) {
      violation(`the archive lists ${count} instances, ${listed.size} expected (acknowledged ones only)`);
      for (const i of await listInstances(dicomweb)) listed.add(i.sop);
    }
    if (opts.dataDir) {
      // Blobs (and temporary files of uploads) beyond the listed instances are traces of refused input;
      // a vanished sender's upload may take a moment to be cleaned up.
      let blobs = await blobFiles(opts.dataDir);
      for (let t = 0; t < 40 && blobs.length !== count; t++) {
        await sleep(50);
        blobs = await blobFiles(opts.dataDir);
      }
      if (blobs.length !== count) violation(`${blobs.length} files under blobs/ for ${count} instances`);
    }
    opts.onProgress?.(n);
  }
  report.ms = Date.now() - t0;
  return report;
}

/** Sample files small enough to fuzz quickly (under 700 kB), sorted: the same seed gives the same cases. */
export async function fuzzSamples(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'LICENSES') await walk(p);
      } else if (!/\.(md|tsv|txt)$/.test(e.name) && (await stat(p)).size < 700_000) out.push(p);
    }
  };
  await walk(dir);
  return out;
}

export function summarizeFuzz(r: FuzzReport): string {
  const lines = [
    `${r.cases} cases (seed ${r.seed}) in ${(r.ms / 1000).toFixed(1)} s; ${r.acknowledged} instances acknowledged and checked`,
    `answers: ${Object.entries(r.byStatus)
      .map(([k, v]) => `${k} × ${v}`)
      .join(', ')}`,
    `refused instances by reason: ${
      Object.entries(r.reasons)
        .map(([k, v]) => `${k} × ${v}`)
        .join(', ') || 'none'
    }`,
    `cases by kind: ${Object.entries(r.byCategory)
      .sort()
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}`,
    r.violations.length === 0
      ? 'no rule broken'
      : `${r.violations.length} rules broken:\n  ${r.violations.slice(0, 50).join('\n  ')}`,
  ];
  return lines.join('\n');
}

const USAGE = `usage: npm run fuzz -- [--cases N] [--seed S] [--url http://host:port] [--samples DIR]
  --cases N     cases to run (default 2000)
  --seed S      random seed (default 1): the same seed replays the same cases
  --url URL     fuzz an archive already running instead of starting one (no blob-folder check)
  --samples DIR sample DICOM files (default ../shared/dicom-samples or PACS_SAMPLES_DIR)`;

interface Cli {
  cases: number;
  seed: number;
  url?: string;
  samples: string;
}

function parse(argv: string[]): Cli | string {
  const o: Cli = {
    cases: 2000,
    seed: 1,
    samples: process.env.PACS_SAMPLES_DIR ?? path.resolve(REPO_ROOT, '../shared/dicom-samples'),
  };
  for (const a of commandLine(argv)) {
    if (a.flag === '--cases') o.cases = a.int();
    else if (a.flag === '--seed') o.seed = a.int();
    else if (a.flag === '--url') o.url = a.value().replace(/\/+$/, '');
    else if (a.flag === '--samples') o.samples = path.resolve(a.value());
    else if (a.flag === '-h' || a.flag === '--help') return USAGE;
    else throw new Error(`unknown option ${a.arg}`);
  }
  return o;
}

async function main(): Promise<number> {
  const o = parseOrExit(parse, USAGE);
  if (typeof o === 'number') return o;
  const samples = await fuzzSamples(o.samples);
  if (samples.length === 0)
    console.warn(`no sample files under ${o.samples}: fuzzing synthetic instances only`);
  let dataDir: string | undefined;
  let archive: Awaited<ReturnType<typeof startArchive>> | undefined;
  let baseUrl = o.url;
  if (!baseUrl) {
    dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-fuzz-'));
    archive = await startArchive({ dataDir, env: FUZZ_LIMITS });
    baseUrl = archive.baseUrl;
    console.log(`archive at ${baseUrl} (data in ${dataDir}), limits ${JSON.stringify(FUZZ_LIMITS)}`);
  }
  try {
    const report = await runFuzz({
      baseUrl,
      cases: o.cases,
      seed: o.seed,
      samples,
      dataDir,
      onProgress: (n) => {
        if (process.stderr.isTTY && n % 50 === 0) process.stderr.write(`\r${n}/${o.cases} cases`);
      },
    });
    if (process.stderr.isTTY) process.stderr.write('\n');
    if (archive?.exit())
      report.violations.push(`the archive exited: ${JSON.stringify(archive.exit())}\n${archive.tail()}`);
    if (archive && archive.errors.length > 0)
      report.violations.push(`the archive logged errors: ${JSON.stringify(archive.errors.slice(0, 5))}`);
    console.log(summarizeFuzz(report));
    return report.violations.length === 0 ? 0 : 1;
  } finally {
    await archive?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err?.stack ?? err);
      process.exit(1);
    },
  );
}

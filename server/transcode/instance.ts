/**
 * Whole-instance transcoding (WADO-RS retrieve with a transfer-syntax, PS3.18 8.7.3.5): the Part 10
 * object re-encoded by dcmjs-codecs (dcmjs data sets, WebAssembly codecs), and Deflated Explicit VR
 * Little Endian written here (PS3.5 A.5: the data set after the File Meta Information, deflated).
 * Runs inside a worker thread (worker.ts).
 */
import { createRequire } from 'node:module';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import * as dcmjsCodecsNs from 'dcmjs-codecs';
import { Part10Scanner } from '../../dicomweb/part10';

type Lib = typeof import('dcmjs-codecs');
const lib: Lib = ((dcmjsCodecsNs as unknown as { default?: Lib }).default ?? dcmjsCodecsNs) as Lib;

// dcmjs (the copy dcmjs-codecs uses) warns on the console about every private attribute: silence it.
try {
  const dcmjs = createRequire(createRequire(import.meta.url).resolve('dcmjs-codecs'))('dcmjs') as {
    log?: { setLevel(level: string): void };
  };
  dcmjs.log?.setLevel('silent');
  lib.log.setLevel('silent');
} catch {
  // no logger to silence
}

const EVRLE = '1.2.840.10008.1.2.1';
const DEFLATED = '1.2.840.10008.1.2.1.99';
const LONG_VR = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);

interface Meta {
  elements: { tag: number; vr: string; value: Uint8Array }[];
  end: number;
}

/** The File Meta Information elements (explicit VR little endian) of a Part 10 object. */
function readMeta(p10: Uint8Array): Meta {
  if (Buffer.from(p10.subarray(128, 132)).toString('latin1') !== 'DICM')
    throw new Error('not a DICOM Part 10 object');
  const view = new DataView(p10.buffer, p10.byteOffset, p10.byteLength);
  const elements: Meta['elements'] = [];
  let pos = 132;
  while (pos + 8 <= p10.length && view.getUint16(pos, true) === 0x0002) {
    const tag = (view.getUint16(pos, true) << 16) | view.getUint16(pos + 2, true);
    const vr = String.fromCharCode(p10[pos + 4], p10[pos + 5]);
    let len: number;
    let head: number;
    if (LONG_VR.has(vr)) {
      len = view.getUint32(pos + 8, true);
      head = 12;
    } else {
      len = view.getUint16(pos + 6, true);
      head = 8;
    }
    elements.push({ tag, vr, value: p10.subarray(pos + head, pos + head + len) });
    pos += head + len;
  }
  return { elements, end: pos };
}

/** A Part 10 object with the same File Meta Information but another transfer syntax and data set bytes. */
function withDataSet(meta: Meta, p10: Uint8Array, ts: string, dataSet: Uint8Array): Buffer {
  const chunks: Buffer[] = [];
  for (const e of meta.elements) {
    if (e.tag === 0x00020000) continue;
    let value = Buffer.from(e.value);
    if (e.tag === 0x00020010) value = Buffer.from(ts.length % 2 ? `${ts}\0` : ts, 'latin1');
    const long = LONG_VR.has(e.vr);
    const head = Buffer.alloc(long ? 12 : 8);
    head.writeUInt16LE(e.tag >>> 16, 0);
    head.writeUInt16LE(e.tag & 0xffff, 2);
    head.write(e.vr, 4, 'latin1');
    if (long) head.writeUInt32LE(value.length, 8);
    else head.writeUInt16LE(value.length, 6);
    chunks.push(head, value);
  }
  const body = Buffer.concat(chunks);
  const groupLength = Buffer.alloc(12);
  groupLength.writeUInt16LE(0x0002, 0);
  groupLength.writeUInt16LE(0x0000, 2);
  groupLength.write('UL', 4, 'latin1');
  groupLength.writeUInt16LE(4, 6);
  groupLength.writeUInt32LE(body.length, 8);
  return Buffer.concat([Buffer.from(p10.subarray(0, 132)), groupLength, body, Buffer.from(dataSet)]);
}

function transferSyntaxOf(meta: Meta): string {
  const e = meta.elements.find((x) => x.tag === 0x00020010);
  return e
    ? Buffer.from(e.value)
        .toString('latin1')
        .replace(/[\0 ]+$/, '')
    : '';
}

/**
 * JPEG syntaxes dcmjs-codecs' Transcoder does not name, and the one it handles that reads the same
 * codestreams: its JPEG decoder (IJG 8/12/16-bit) reads every sequential DCT and lossless process.
 */
const DECODE_AS: Record<string, string> = {
  '1.2.840.10008.1.2.4.51': '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.53': '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.55': '1.2.840.10008.1.2.4.50',
  '1.2.840.10008.1.2.4.57': '1.2.840.10008.1.2.4.70',
};
/** JPEG Extended from 8-bit samples is what the Baseline encoder writes (a sequential DCT Huffman codestream). */
const ENCODE_AS: Record<string, string> = { '1.2.840.10008.1.2.4.51': '1.2.840.10008.1.2.4.50' };

/** The same object with another Transfer Syntax UID in its File Meta Information (same data set bytes). */
function relabel(p10: Uint8Array, ts: string): Uint8Array {
  const meta = readMeta(p10);
  return withDataSet(meta, p10, ts, p10.subarray(meta.end));
}

/**
 * dcmjs-codecs writes the encapsulated Pixel Data of a 16-bit image with VR OW; PS3.5 A.4 gives
 * encapsulated Pixel Data VR OB, and strict readers refuse anything else. The VR is set right in place.
 */
function encapsulatedAsOB(p10: Uint8Array): Uint8Array {
  const scanner = new Part10Scanner();
  scanner.push(p10);
  const pixels = scanner.end().dataset.find((e) => e.tag === '7FE00010');
  // The value starts after the 12-byte header: tag, VR, 2 reserved bytes, the undefined length.
  const vr = pixels?.fragments ? pixels.offset - 8 : -1;
  if (vr > 0 && p10[vr] === 0x4f && p10[vr + 1] === 0x57) p10[vr + 1] = 0x42; // "OW" -> "OB"
  return p10;
}

/** The Part 10 object `p10` in transfer syntax `to`. */
export function transcodeInstance(p10: Uint8Array, to: string): Uint8Array {
  let input = p10;
  let meta = readMeta(input);
  if (transferSyntaxOf(meta) === DEFLATED) {
    input = withDataSet(meta, input, EVRLE, inflateRawSync(input.subarray(meta.end)));
    meta = readMeta(input);
  }
  if (transferSyntaxOf(meta) === to) return input;
  const alias = DECODE_AS[transferSyntaxOf(meta)];
  if (alias) {
    input = relabel(input, alias);
    meta = readMeta(input);
  }
  if (ENCODE_AS[to]) {
    const out = transcodeInstance(input, ENCODE_AS[to]);
    return relabel(out, to);
  }
  const target = to === DEFLATED ? EVRLE : to;
  let out: Uint8Array = input;
  if (transferSyntaxOf(meta) !== target) {
    const copy = new Uint8Array(input);
    const transcoder = new lib.Transcoder(copy.buffer);
    transcoder.transcode(target);
    out = encapsulatedAsOB(new Uint8Array(transcoder.getDicomPart10()));
  }
  if (to !== DEFLATED) return out;
  const outMeta = readMeta(out);
  return withDataSet(outMeta, out, DEFLATED, deflateRawSync(out.subarray(outMeta.end)));
}

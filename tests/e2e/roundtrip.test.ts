/**
 * Round trip of every sample file: STOW-RS, find by QIDO-RS, retrieve by WADO-RS byte for byte, metadata
 * agrees with the file (read independently with dicom-parser), uncompressed frames equal the pixel data.
 * Files that share a SOP Instance UID (one image in several transfer syntaxes) go in separate rounds.
 * Runs on every storage combination (folder + SQLite, S3 + PostgreSQL).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import pako from 'pako';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listFiles,
  SAMPLES,
  SAMPLES_MISSING,
  samplesPresent,
  startServer,
  stow,
  type TestServer,
} from '../helpers/server';
import { STORAGE_CONFIGS, type StorageBackends } from '../helpers/storage-configs';
import { getJson, getMultipart, type Json, value } from './dicomweb';

interface Sample {
  file: string;
  bytes: Buffer;
  ds: dicomParser.DataSet;
  sop: string;
  study: string;
  series: string;
  ts: string;
}

const NATIVE = ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2'];

function parse(bytes: Buffer): dicomParser.DataSet {
  return dicomParser.parseDicom(new Uint8Array(bytes), {
    inflater: (arr: Uint8Array, pos: number) => {
      const inflated = pako.inflateRaw(arr.subarray(pos));
      const out = new Uint8Array(pos + inflated.length);
      out.set(arr.subarray(0, pos));
      out.set(inflated, pos);
      return out;
    },
  } as dicomParser.ParseDicomOptions);
}

/**
 * Sample files that are not storable, with why: STOW-RS carries DICOM Part 10 files (PS3.18 8.7.3.4), and an
 * instance needs its SOP Class, SOP Instance, Study and Series UIDs to be filed.
 */
interface Unstorable {
  file: string;
  bytes: Buffer;
  why: RegExp;
}

const REQUIRED = ['x00080016', 'x00080018', 'x0020000d', 'x0020000e'];

async function loadSamples(): Promise<{ samples: Sample[]; unstorable: Unstorable[] }> {
  const files = (await listFiles(SAMPLES)).filter(
    (f) =>
      !f.includes(`${path.sep}malformed${path.sep}`) && !f.includes('LICENSES') && !/\.(tsv|md|txt)$/.test(f),
  );
  const unstorable: Unstorable[] = [];
  const samples: Sample[] = [];
  for (const file of files) {
    const bytes = await readFile(file);
    const rel = path.relative(SAMPLES, file);
    if (bytes.subarray(128, 132).toString('latin1') !== 'DICM') {
      // Without the preamble: refused, unless it starts with File Meta Information (then its UIDs decide).
      unstorable.push({ file: rel, bytes, why: /not a DICOM Part 10 file|is missing/ });
      continue;
    }
    const ds = parse(bytes);
    if (REQUIRED.some((t) => !ds.string(t))) {
      unstorable.push({ file: rel, bytes, why: /UID \(0008,0016\) is missing|is missing/ });
      continue;
    }
    samples.push(sample(rel, bytes, ds));
  }
  return { samples, unstorable };
}

function sample(file: string, bytes: Buffer, ds: dicomParser.DataSet): Sample {
  return {
    file,
    bytes,
    ds,
    sop: ds.string('x00080018')!,
    study: ds.string('x0020000d')!,
    series: ds.string('x0020000e')!,
    ts: ds.string('x00020010')!,
  };
}

/** Rounds in which every SOP Instance UID occurs once. */
function rounds(samples: Sample[]): Sample[][] {
  const seen = new Map<string, number>();
  const out: Sample[][] = [];
  for (const s of samples) {
    const n = seen.get(s.sop) ?? 0;
    seen.set(s.sop, n + 1);
    if (!out[n]) out[n] = [];
    out[n].push(s);
  }
  return out;
}

if (!samplesPresent) console.warn(SAMPLES_MISSING);

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe.skipIf(!samplesPresent).each(STORAGE_CONFIGS)(
  'round trip of every sample file on $name',
  (storage) => {
    let backends: StorageBackends;
    let server: TestServer;
    let samples: Sample[];
    let unstorable: Unstorable[];
    beforeAll(async () => {
      backends = await storage.start();
      server = await startServer({ env: backends.env });
      ({ samples, unstorable } = await loadSamples());
    });
    afterAll(async () => {
      await server?.close();
      await backends?.close();
    });

    it('refuses, with the reason, the few sample files that cannot be filed (no Part 10 header, no UIDs)', async () => {
      // Checked with dcmtk: the first four have no preamble/"DICM"/File Meta Information (raw data sets);
      // the others lack StudyInstanceUID and SeriesInstanceUID (and the charset ones every UID).
      expect(unstorable.map((u) => u.file).sort()).toEqual([
        'charsets/chrSQEncoding.dcm',
        'charsets/chrSQEncoding1.dcm',
        'charsets/empty_charset_LEI.dcm',
        'cr-dx/CR-MONO1-10-chest.dcm',
        'sr-pdf-seg/rtstruct.dcm',
        'transfer-syntaxes/HTJ2KLossless_08_RGB.dcm',
        'transfer-syntaxes/HTJ2K_08_RGB.dcm',
        'transfer-syntaxes/JLSL_RGB_ILV1.dcm',
        'transfer-syntaxes/JLSN_RGB_ILV0.dcm',
        'transfer-syntaxes/JPEGLSNearLossless_16.dcm',
      ]);
      for (const u of unstorable) {
        const res = await stow(server.baseUrl, [u.bytes]);
        expect(res.status, u.file).toBe(409);
        const failure = res.json['00081198']?.Value?.[0];
        expect(failure?.['00081197']?.Value?.[0], u.file).toBe(0xc000);
        expect(String(failure?.['0040A160']?.Value?.[0]), u.file).toMatch(u.why);
      }
      expect((await getJson(`${server.dicomweb}/instances`)).json).toEqual([]);
    });

    it('stores, finds, retrieves byte for byte, and serves metadata and frames that agree with each file', async () => {
      expect(samples.length).toBeGreaterThan(250);
      const all = rounds(samples);
      for (const [r, round] of all.entries()) {
        for (let i = 0; i < round.length; i += 25) {
          const batch = round.slice(i, i + 25);
          const res = await stow(
            server.baseUrl,
            batch.map((s) => s.bytes),
          );
          const failures = res.json['00081198']?.Value ?? [];
          expect(failures.map((f) => f['0040A160']?.Value?.[0])).toEqual([]);
          expect(res.status).toBe(200);
          const refs = (res.json['00081199']?.Value ?? []).map((x) => x['00081155']?.Value?.[0]);
          expect(refs).toEqual(batch.map((s) => s.sop));
        }
        for (const s of round) await checkSample(server.dicomweb, s);
        // Make room for the next round's copies of the same SOP Instance UIDs.
        for (const s of all[r + 1] ?? []) {
          const del = await fetch(
            `${server.dicomweb}/studies/${s.study}/series/${s.series}/instances/${s.sop}`,
            {
              method: 'DELETE',
            },
          );
          expect(del.status).toBe(204);
        }
      }
    });
  },
);

async function checkSample(root: string, s: Sample) {
  const where = `(${s.file})`;
  const inst = `${root}/studies/${s.study}/series/${s.series}/instances/${s.sop}`;
  // QIDO-RS finds it, with the right hierarchy.
  const q = await getJson(`${root}/instances?SOPInstanceUID=${s.sop}&includefield=all`);
  expect(q.status, where).toBe(200);
  expect(q.json.length, where).toBe(1);
  expect(value(q.json[0], '0020000D'), where).toBe(s.study);
  expect(value(q.json[0], '0020000E'), where).toBe(s.series);

  // WADO-RS returns exactly the stored bytes.
  const w = await getMultipart(inst, 'multipart/related; type="application/dicom"; transfer-syntax=*');
  expect(w.status, `${where} ${w.text}`).toBe(200);
  expect(w.parts.length, where).toBe(1);
  expect(sha(w.parts[0].body), where).toBe(sha(s.bytes));

  // Metadata agrees with the file.
  const m = await getJson(`${inst}/metadata`);
  expect(m.status, where).toBe(200);
  const md = m.json[0] as Json;
  expect(value(md, '00080016'), where).toBe(s.ds.string('x00080016'));
  expect(value(md, '00083002'), where).toBe(s.ts);
  for (const tag of ['00080060', '00100020', '00080020', '00200011', '00200013']) {
    const raw = s.ds.string(`x${tag.toLowerCase()}`);
    if (raw === undefined || raw === '') continue;
    const got = value(md, tag);
    expect(String(got), `${where} ${tag}`).toBe(
      String(/^[0-9+\-. ]+$/.test(raw) && tag > '00200000' ? Number(raw) : raw),
    );
  }
  const rows = s.ds.uint16('x00280010');
  if (rows !== undefined) expect(value(md, '00280010'), where).toBe(rows);
  const pixel = s.ds.elements.x7fe00010;
  if (!pixel) return;
  expect(md['7FE00010']?.BulkDataURI, where).toMatch(/^http:\/\/.+\/bulkdata\/7FE00010$/);

  const frames = Number(s.ds.string('x00280008') ?? 1);
  const list = Array.from({ length: frames }, (_, i) => i + 1).join(',');
  if (NATIVE.includes(s.ts)) {
    const bits = s.ds.uint16('x00280100') ?? 16;
    if (bits === 1) return;
    const f = await getMultipart(
      `${inst}/frames/${list}`,
      'multipart/related; type="application/octet-stream"',
    );
    expect(f.status, `${where} ${f.text}`).toBe(200);
    expect(f.parts.length, where).toBe(frames);
    f.parts.forEach((p, i) => {
      expect(p.headers['content-location'], where).toBe(`${inst}/frames/${i + 1}`);
      expect(p.headers['content-length'], where).toBe(String(p.body.length));
    });
    const got = Buffer.concat(f.parts.map((p) => p.body));
    if (frames === 1) {
      // The same pixels as bulk data: its part says where it comes from and how long it is.
      const uri = md['7FE00010'].BulkDataURI as string;
      const bulk = await getMultipart(uri, 'multipart/related; type="application/octet-stream"');
      expect(bulk.status, where).toBe(200);
      expect(bulk.parts[0].headers['content-location'], where).toBe(uri);
      expect(bulk.parts[0].headers['content-length'], where).toBe(String(bulk.parts[0].body.length));
    }
    let expected = s.bytes.subarray(pixel.dataOffset, pixel.dataOffset + got.length);
    if (s.ts === '1.2.840.10008.1.2.2' && bits > 8) expected = swap(expected, bits);
    expect(got.length, where).toBeGreaterThan(0);
    expect(got.length, where).toBeLessThanOrEqual(pixel.length);
    expect(sha(got), where).toBe(sha(expected));
  } else if (s.ts !== '1.2.840.10008.1.2.1.99') {
    // Compressed: served as stored when the client accepts any transfer syntax; decoded to Explicit VR
    // Little Endian (PS3.18 default for application/octet-stream) otherwise.
    const f = await getMultipart(
      `${inst}/frames/${list}`,
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    );
    expect(f.status, `${where} ${f.text}`).toBe(200);
    expect(f.parts.length, where).toBe(frames);
    for (const p of f.parts) expect(p.body.length, where).toBeGreaterThan(0);
    const decoded = await fetch(`${inst}/frames/1`, {
      headers: { Accept: 'multipart/related; type="application/octet-stream"' },
    });
    expect(decoded.status, where).toBe(200);
    expect(decoded.headers.get('content-type'), where).not.toMatch(/transfer-syntax/);
    const rows = s.ds.uint16('x00280010') ?? 0;
    const cols = s.ds.uint16('x00280011') ?? 0;
    const spp = s.ds.uint16('x00280002') ?? 1;
    const bytes = Math.ceil((s.ds.uint16('x00280100') ?? 16) / 8);
    const body = Buffer.from(await decoded.arrayBuffer());
    expect(body.length, where).toBeGreaterThan(rows * cols * spp * bytes);
  }
}

function swap(b: Buffer, bits: number): Buffer {
  const out = Buffer.from(b);
  if (bits === 16) out.swap16();
  else if (bits === 32) out.swap32();
  return out;
}

/**
 * PACS_INGEST_HTJ2K=true: after STOW, a lossless HTJ2K copy of each instance's pixel data is made in the
 * worker pool and kept beside the original blob. The original stays byte for byte; HTJ2K frame requests
 * (and transfer-syntax=* for an uncompressed instance) are served from the copy, whose frames decode to
 * the very pixels of the original; lossy or unreadable instances get no copy and STOW still succeeds;
 * deleting an instance deletes both blobs; fsck and reindex know copies from instances.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageInfo } from '../../dicomweb/transfer-syntax';
import { autoTranscodeWorkers, loadConfig } from '../../server/config';
import { fsck, reindex } from '../../server/maintenance';
import { htj2kCopiesDone } from '../../server/transcode/copies';
import { transcoder } from '../../server/transcode/pool';
import {
  listFiles,
  SAMPLES_MISSING,
  samplesPresent,
  startServer,
  stow,
  type TestServer,
} from '../helpers/server';
import { type SampleObject, sampleObject } from '../samples';
import { getJson, getMultipart, type Json } from './dicomweb';

const EVRLE = '1.2.840.10008.1.2.1';
const HTJ2K = '1.2.840.10008.1.2.4.201';
const HTJ2K_ACCEPT = `multipart/related; type="application/octet-stream"; transfer-syntax=${HTJ2K}`;
const ANY_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const NATIVE_ACCEPT = 'multipart/related; type="application/octet-stream"';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const instanceUrl = (root: string, s: SampleObject) =>
  `${root}/studies/${s.study}/series/${s.series}/instances/${s.sop}`;
const allFrames = (s: SampleObject) => Array.from({ length: s.frames }, (_, i) => i + 1).join(',');

/** Copies with uncompressed, JPEG-LS lossless and multi-frame RGB RLE originals; none for lossy or corrupt ones. */
const COPIED = [
  'ct-series/philips-ingenuity-phantom-S2010/I10',
  'ct-series/philips-ingenuity-phantom-S2010/I20',
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm',
  'transfer-syntaxes/SC_rgb_rle_2frame.dcm',
  'mr/emri_small.dcm', // 10 frames, uncompressed
];
const NOT_COPIED = [
  'transfer-syntaxes/cornerstone-CTImage/CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm',
  'malformed/JPEG2000-embedded-sequence-delimiter.dcm', // corrupt codestream: the copy fails, STOW does not
];

if (!samplesPresent) console.warn(SAMPLES_MISSING);

/** Runs fn and checks that the server used no codec meanwhile (the process's worker pool got no job). */
async function withoutCodec<T>(fn: () => Promise<T>): Promise<T> {
  const pool = transcoder();
  const run = pool.run;
  let jobs = 0;
  pool.run = (...args) => {
    jobs++;
    return run.apply(pool, args);
  };
  try {
    const out = await fn();
    expect(jobs, 'codec jobs while serving from the copy').toBe(0);
    return out;
  } finally {
    pool.run = run;
  }
}

describe.skipIf(!samplesPresent)('PACS_INGEST_HTJ2K: HTJ2K copies made at ingest', () => {
  let server: TestServer;
  let running = false;
  let dataDir: string;
  let blobDir: string;
  // Read at collection, which runs for a skipped suite too: only where the samples are.
  const copied = samplesPresent ? COPIED.map(sampleObject) : [];
  const notCopied = samplesPresent ? NOT_COPIED.map(sampleObject) : [];

  /** Blob files of the original and of its copy, found by their bytes. */
  async function blobsOf(s: SampleObject): Promise<{ original: string; copy: string }> {
    for (const f of await listFiles(blobDir)) {
      if (f.endsWith('.dcm') && sha(readFileSync(f)) === sha(s.bytes))
        return { original: f, copy: `${f}.htj2k` };
    }
    throw new Error(`no blob holds ${s.file}`);
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-htj2k-'));
    server = await startServer({ dataDir, env: { PACS_INGEST_HTJ2K: 'true', PACS_TRANSCODE_WORKERS: '1' } });
    running = true;
    blobDir = path.join(dataDir, 'blobs');
    const r = await stow(
      server.baseUrl,
      [...copied, ...notCopied].map((s) => s.bytes),
    );
    expect(r.status, JSON.stringify(r.json)).toBe(200); // a copy that cannot be made never fails the STOW
    await htj2kCopiesDone();
  });
  afterAll(async () => {
    if (running) await server.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps a copy beside each lossless original, none for lossy or unreadable ones, and the originals byte for byte', async () => {
    for (const s of copied) {
      const { original, copy } = await blobsOf(s);
      expect(existsSync(copy), `${s.file}: copy`).toBe(true);
      expect(readFileSync(copy).subarray(0, 8).toString('latin1')).toBe('PACSHTJ2');
      expect(sha(readFileSync(original))).toBe(sha(s.bytes));
      const res = await fetch(instanceUrl(server.dicomweb, s), { headers: { Accept: 'application/dicom' } });
      expect(res.status).toBe(200);
      expect(sha(Buffer.from(await res.arrayBuffer())), `${s.file}: retrieved as stored`).toBe(sha(s.bytes));
    }
    for (const s of notCopied) {
      const { copy } = await blobsOf(s);
      expect(existsSync(copy), `${s.file}: no copy`).toBe(false);
    }
  });

  it('serves HTJ2K frames from the copy: the same pixels as the original', async () => {
    for (const s of copied) {
      const url = `${instanceUrl(server.dicomweb, s)}/frames/${allFrames(s)}`;
      const htj2k = await withoutCodec(() => getMultipart(url, HTJ2K_ACCEPT));
      expect(htj2k.status, `${s.file}: ${htj2k.text}`).toBe(200);
      expect(htj2k.parts.length).toBe(s.frames);
      // The bytes are the copy's (read, not encoded again).
      const copy = readFileSync((await blobsOf(s)).copy);
      for (const p of htj2k.parts) {
        expect(p.headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${HTJ2K}`);
        expect(copy.includes(p.body), `${s.file}: frame bytes from the copy`).toBe(true);
      }
      // Decoded, they are the pixels the server gives in Explicit VR Little Endian (from the original).
      const native = await getMultipart(url, NATIVE_ACCEPT);
      expect(native.status).toBe(200);
      const image = imageInfo(
        (await getJson<Json[]>(`${instanceUrl(server.dicomweb, s)}/metadata`)).json[0] as never,
      )!;
      for (const [i, p] of htj2k.parts.entries()) {
        const back = await transcoder().run({
          op: 'transcode',
          from: HTJ2K,
          to: EVRLE,
          image,
          frame: p.body,
        });
        expect(Buffer.compare(Buffer.from(back), native.parts[i].body), `${s.file} frame ${i + 1}`).toBe(0);
      }
    }
  });

  it('answers transfer-syntax=* with the copy for uncompressed instances, as stored for compressed ones', async () => {
    const [ct, , jls] = copied;
    const any = await withoutCodec(() =>
      getMultipart(`${instanceUrl(server.dicomweb, ct)}/frames/1`, ANY_ACCEPT),
    );
    expect(any.status).toBe(200);
    expect(any.parts[0].headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${HTJ2K}`);
    expect(any.parts[0].body.length).toBeLessThan(512 * 512 * 2);
    // The viewer's Accept (single part first).
    const single = await fetch(`${instanceUrl(server.dicomweb, ct)}/frames/1`, {
      headers: { Accept: `application/octet-stream; transfer-syntax=*, ${ANY_ACCEPT}` },
    });
    expect(single.status).toBe(200);
    expect(single.headers.get('content-type')).toBe(`application/octet-stream; transfer-syntax=${HTJ2K}`);
    const stored = await getMultipart(`${instanceUrl(server.dicomweb, jls)}/frames/1`, ANY_ACCEPT);
    expect(stored.parts[0].headers['content-type']).toBe(
      'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.80',
    );
    // Asking for the uncompressed pixels still gives them, from the original.
    const native = await getMultipart(`${instanceUrl(server.dicomweb, ct)}/frames/1`, NATIVE_ACCEPT);
    const px = dicomParser.parseDicom(new Uint8Array(ct.bytes)).elements.x7fe00010;
    expect(
      Buffer.compare(native.parts[0].body, ct.bytes.subarray(px.dataOffset, px.dataOffset + px.length)),
    ).toBe(0);
  });

  it('serves the pixel data bulk data in HTJ2K from the copy, with the same negotiation as frames', async () => {
    const rgb = copied[3];
    const url = `${instanceUrl(server.dicomweb, rgb)}/bulkdata/7FE00010`;
    const htj2k = await withoutCodec(() => getMultipart(url, HTJ2K_ACCEPT));
    expect(htj2k.status, htj2k.text).toBe(200);
    expect(htj2k.parts.length).toBe(2);
    const copy = readFileSync((await blobsOf(rgb)).copy);
    for (const p of htj2k.parts) expect(copy.includes(p.body)).toBe(true);
    const refused = await fetch(url, {
      headers: { Accept: `application/octet-stream; transfer-syntax=${HTJ2K}` },
    });
    expect(refused.status).toBe(406); // two frames in one single part
    // Uncompressed, 10 frames: '*' in parts is the copy, frame by frame; '*' in one part the stored value.
    const mr = copied[4];
    const mrUrl = `${instanceUrl(server.dicomweb, mr)}/bulkdata/7FE00010`;
    const parts = await withoutCodec(() => getMultipart(mrUrl, ANY_ACCEPT));
    expect(parts.parts.length).toBe(10);
    expect(parts.parts[0].headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${HTJ2K}`);
    const whole = await fetch(mrUrl, { headers: { Accept: 'application/octet-stream; transfer-syntax=*' } });
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toBe(`application/octet-stream; transfer-syntax=${EVRLE}`);
    const px = dicomParser.parseDicom(new Uint8Array(mr.bytes)).elements.x7fe00010;
    expect(sha(Buffer.from(await whole.arrayBuffer()))).toBe(
      sha(mr.bytes.subarray(px.dataOffset, px.dataOffset + px.length)),
    );
  });

  it('deletes the copy with its instance', async () => {
    const s = copied[1];
    const { original, copy } = await blobsOf(s);
    const res = await fetch(instanceUrl(server.dicomweb, s), { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect(existsSync(original)).toBe(false);
    expect(existsSync(copy)).toBe(false);
  });

  it('fsck and reindex tell copies from instances; fsck --repair removes a copy whose original is gone', async () => {
    const { original, copy } = await blobsOf(copied[0]);
    const others = await Promise.all(copied.slice(2).map(blobsOf));
    await server.close(); // maintenance runs with the server stopped; the data folder stays
    running = false;
    const config = loadConfig({ PACS_DATA_DIR: dataDir });
    const clean = await fsck(config, { repair: false });
    expect(clean.orphans).toEqual([]);
    expect(clean.missing).toEqual([]);
    const re = await reindex(config);
    expect(re.skipped).toEqual([]);
    expect(re.indexed).toBe(COPIED.length - 1 + NOT_COPIED.length);
    // The original of one instance lost (a restored older blob store): its row and its copy go.
    await rm(original);
    const repaired = await fsck(config, { repair: true });
    expect(repaired.missing.length).toBe(1);
    expect(repaired.orphans.map((k) => path.join(blobDir, k))).toEqual([copy]);
    expect(existsSync(copy)).toBe(false);
    for (const o of others) expect(existsSync(o.copy)).toBe(true);
  });
});

describe('configuration', () => {
  it('reads PACS_INGEST_HTJ2K and PACS_TRANSCODE_WORKERS', () => {
    const defaults = loadConfig({});
    expect(defaults.ingestHtj2k).toBe(false);
    expect(defaults.transcodeWorkers).toBe(autoTranscodeWorkers());
    expect([1, 2, 4, 8].map((cores) => autoTranscodeWorkers(cores))).toEqual([1, 1, 3, 4]);
    expect(loadConfig({ PACS_INGEST_HTJ2K: 'true', PACS_TRANSCODE_WORKERS: '3' })).toMatchObject({
      ingestHtj2k: true,
      transcodeWorkers: 3,
    });
    expect(() => loadConfig({ PACS_INGEST_HTJ2K: 'yes', PACS_TRANSCODE_WORKERS: '0' })).toThrow(
      /PACS_TRANSCODE_WORKERS=0[\s\S]*PACS_INGEST_HTJ2K=yes|PACS_INGEST_HTJ2K=yes[\s\S]*PACS_TRANSCODE_WORKERS=0/,
    );
  });
});

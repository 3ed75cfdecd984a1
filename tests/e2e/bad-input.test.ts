/**
 * Bad input gets a clear failure and leaves no trace; the server keeps serving. Also the duplicate
 * policy (same SOP Instance UID sent again, with the same or with different bytes).
 */
import { connect } from 'node:net';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileMetaInformation, readFileMeta } from '../../server/dimse/part10';
import { syntheticSeries } from '../../server/synthetic';
import {
  multipartBody,
  SAMPLES,
  SAMPLES_MISSING,
  samplesPresent,
  startServer,
  stow,
  type TestServer,
} from '../helpers/server';
import { getJson, getMultipart } from './dicomweb';

if (!samplesPresent) console.warn(SAMPLES_MISSING);

const FAILURE_REASON = '00081197';

async function blobCount(dataDir: string): Promise<number> {
  let n = 0;
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(path.join(dir, e.name));
      else n++;
    }
  };
  await walk(path.join(dataDir, 'blobs'));
  return n;
}

async function instanceCount(root: string): Promise<number> {
  const r = await getJson(`${root}/instances?limit=100000`);
  return r.json.length;
}

/** Replaces every occurrence of an ASCII value (UIDs) by another of at most the same length, NUL-padded. */
function patchAscii(bytes: Uint8Array, from: string, to: string): Uint8Array {
  const out = Buffer.from(bytes);
  const padded = Buffer.alloc(from.length, 0);
  padded.write(to, 'latin1');
  let at = out.indexOf(from, 0, 'latin1');
  while (at !== -1) {
    padded.copy(out, at);
    at = out.indexOf(from, at + from.length, 'latin1');
  }
  return out;
}

/** Renames element (0008,0018) SOPInstanceUID of the data set to (0008,0019), so it is missing. */
function dropSopInstanceUID(bytes: Uint8Array): Uint8Array {
  const out = Buffer.from(bytes);
  const tag = Buffer.from([0x08, 0x00, 0x18, 0x00, 0x55, 0x49]);
  const at = out.indexOf(tag, 132 + 12 + 100);
  if (at === -1) throw new Error('SOPInstanceUID not found');
  out[at + 2] = 0x19;
  return out;
}

function uidOf(bytes: Uint8Array, tagBytes: number[]): string {
  const b = Buffer.from(bytes);
  const at = b.indexOf(Buffer.from([...tagBytes, 0x55, 0x49]), 132 + 100);
  const len = b.readUInt16LE(at + 6);
  return b
    .subarray(at + 8, at + 8 + len)
    .toString('latin1')
    .replace(/\0+$/, '');
}

/** Synthetic 32×32 CT instances of one series (small: for what is about requests, not pixels). */
function smallSeries(
  patientName: string,
  patientId: string,
  instances: number,
  opts: { seed?: number } = {},
): Uint8Array[] {
  return [...syntheticSeries({ patientName, patientId, instances, rows: 32, columns: 32, ...opts })];
}

/**
 * Opens a STOW request on a raw connection and sends the first `sent` bytes of its body (Content-Length
 * is the whole body's): a sender whose upload is still under way. `end()` abandons it (the connection
 * is closed mid-body).
 */
async function partialStow(baseUrl: string, body: Buffer, contentType: string, sent: number) {
  const { hostname, port } = new URL(baseUrl);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => {});
  socket.write(
    `POST /dicomweb/studies HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`,
  );
  socket.write(body.subarray(0, sent));
  let received = '';
  socket.on('data', (d: Buffer) => {
    received += d.toString('latin1');
  });
  return { end: () => socket.destroy(), received: () => received };
}

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('bad input', () => {
  let server: TestServer;
  let root: string;
  let good: Uint8Array[];
  beforeAll(async () => {
    server = await startServer({
      env: { PACS_MAX_STOW_BYTES: String(8 * 1024 * 1024), PACS_MAX_INSTANCE_BYTES: String(2 * 1024 * 1024) },
    });
    root = server.dicomweb;
    good = [
      ...syntheticSeries({
        patientName: 'Test^Bad Input',
        patientId: 'BAD1',
        instances: 4,
        rows: 64,
        columns: 64,
      }),
    ];
  });
  afterAll(async () => server?.close());

  async function expectNoTrace<T>(action: () => Promise<T>): Promise<T> {
    const blobs = await blobCount(server.dataDir);
    const instances = await instanceCount(root);
    const result = await action();
    expect(await blobCount(server.dataDir)).toBe(blobs);
    expect(await instanceCount(root)).toBe(instances);
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    return result;
  }

  const post = (body: Uint8Array, contentType: string, url = `${root}/studies`) =>
    fetch(url, { method: 'POST', headers: { 'Content-Type': contentType }, body: new Uint8Array(body) });

  it.skipIf(!samplesPresent)(
    'every malformed sample is refused with a reason, or stored byte for byte',
    async () => {
      const dir = path.join(SAMPLES, 'malformed');
      for (const name of (await readdir(dir)).sort()) {
        const bytes = await readFile(path.join(dir, name));
        const blobs = await blobCount(server.dataDir);
        const r = await stow(server.baseUrl, [bytes]);
        expect([200, 409], name).toContain(r.status);
        if (r.status === 409) {
          const failed = r.json['00081198']?.Value?.[0];
          expect(failed?.[FAILURE_REASON]?.Value?.[0], name).toBeGreaterThan(0);
          expect(String(failed?.['0040A160']?.Value?.[0]), name).toMatch(/\w{4}/);
          expect(await blobCount(server.dataDir), name).toBe(blobs);
        } else {
          const url = r.json['00081199']?.Value?.[0]?.['00081190']?.Value?.[0] as string;
          const back = await getMultipart(
            url,
            'multipart/related; type="application/dicom"; transfer-syntax=*',
          );
          expect(Buffer.compare(back.parts[0].body, bytes), name).toBe(0);
        }
        expect((await fetch(`${server.baseUrl}/healthz`)).status, name).toBe(200);
      }
    },
  );

  it('refuses a part that is not DICOM', async () => {
    const r = await expectNoTrace(() =>
      stow(server.baseUrl, [Buffer.from('this is a text file, not an image\n'.repeat(20))]),
    );
    expect(r.status).toBe(409);
    expect(r.json['00081198']?.Value?.[0]?.[FAILURE_REASON]?.Value?.[0]).toBe(0xc000);
  });

  it('names a truncated instance by the UIDs read before its end', async () => {
    const half = good[2].subarray(0, Math.floor(good[2].length / 2));
    const r = await expectNoTrace(() => stow(server.baseUrl, [half]));
    expect(r.status).toBe(409);
    expect(r.json['00081190']).toEqual({ vr: 'UR' }); // Type 2: present, empty (no study in the URL)
    const failed = r.json['00081198']?.Value?.[0];
    expect(failed?.[FAILURE_REASON]?.Value?.[0]).toBe(0xc000);
    expect(String(failed?.['0040A160']?.Value?.[0])).toMatch(/truncated/);
    expect(failed?.['00081155']?.Value?.[0]).toBe(uidOf(good[2], [0x08, 0x00, 0x18, 0x00]));
    expect(failed?.['00081150']?.Value?.[0]).toBe(uidOf(good[2], [0x08, 0x00, 0x16, 0x00]));
  });

  it('keeps the good instances of a request and reports the bad ones (202)', async () => {
    const r = await stow(server.baseUrl, [good[0], Buffer.from('not dicom')]);
    expect(r.status).toBe(202);
    expect(r.json['00081199']?.Value?.length).toBe(1);
    expect(r.json['00081198']?.Value?.length).toBe(1);
  });

  it('refuses missing and malformed UIDs, including path-like values', async () => {
    const sop = uidOf(good[1], [0x08, 0x00, 0x18, 0x00]);
    const study = uidOf(good[1], [0x20, 0x00, 0x0d, 0x00]);
    for (const bad of ['../x', '../../etc/passwd'.slice(0, sop.length), '1.2.abc', '']) {
      const r = await expectNoTrace(() => stow(server.baseUrl, [patchAscii(good[1], sop, bad)]));
      expect(r.status, bad).toBe(409);
      expect(r.json['00081198']?.Value?.[0]?.[FAILURE_REASON]?.Value?.[0], bad).toBe(0xc000);
    }
    const badStudy = await expectNoTrace(() =>
      stow(server.baseUrl, [patchAscii(good[1], study, '1.2/../3')]),
    );
    expect(badStudy.status).toBe(409);
    const missing = await expectNoTrace(() => stow(server.baseUrl, [dropSopInstanceUID(good[1])]));
    expect(missing.status).toBe(409);
    expect(String(missing.json['00081198']?.Value?.[0]?.['0040A160']?.Value?.[0])).toMatch(/SOPInstanceUID/);
    for (const url of [`${root}/studies/..%2Fx`, `${root}/studies/1.2.3/series/abc/metadata`]) {
      expect((await fetch(url)).status, url).toBe(400);
    }
  });

  it('refuses an instance whose study differs from the study in the URL', async () => {
    const r = await expectNoTrace(() => stow(server.baseUrl, [good[2]], '1.2.3.4.5'));
    expect(r.status).toBe(409);
    expect(r.json['00081198']?.Value?.[0]?.[FAILURE_REASON]?.Value?.[0]).toBe(0xc409);
  });

  it('refuses truncated bodies, wrong or missing boundaries and other media types, keeping nothing', async () => {
    const { body, contentType } = multipartBody([good[3]]);
    const truncated = body.subarray(0, body.length - 200);
    expect((await expectNoTrace(() => post(truncated, contentType))).status).toBe(400);
    // Truncated after a complete first part: the first part is not kept either.
    const two = multipartBody([good[3], good[2]]);
    expect(
      (await expectNoTrace(() => post(two.body.subarray(0, two.body.length - 300), two.contentType))).status,
    ).toBe(400);
    const wrong = contentType.replace('testBoundary', 'otherBoundary');
    expect((await expectNoTrace(() => post(body, wrong))).status).toBe(400);
    expect(
      (await expectNoTrace(() => post(body, 'multipart/related; type="application/dicom"'))).status,
    ).toBe(400);
    expect((await expectNoTrace(() => post(body, 'application/dicom'))).status).toBe(415);
    const r = await expectNoTrace(() =>
      post(body, contentType.replace('application/dicom', 'application/dicom+xml')),
    );
    expect(r.status).toBe(415);
    expect(((await r.json()) as { message: string }).message).toMatch(/not supported/);
  });

  it('refuses oversize bodies and oversize instances', async () => {
    const big = new Uint8Array(9 * 1024 * 1024);
    const { body, contentType } = multipartBody([big]);
    expect((await expectNoTrace(() => post(body, contentType))).status).toBe(413);
    const large = [
      ...syntheticSeries({
        patientName: 'Big^Instance',
        patientId: 'BIG',
        instances: 1,
        rows: 1100,
        columns: 1100,
      }),
    ][0];
    const r = await expectNoTrace(() => stow(server.baseUrl, [large]));
    expect(r.status).toBe(409);
    expect(r.json['00081198']?.Value?.[0]?.[FAILURE_REASON]?.Value?.[0]).toBe(0xa700);
  });

  it('names the instance refused because its series is filed under another study', async () => {
    const [x, y] = smallSeries('Series^Moved', 'MOVED1', 2, { seed: 12 });
    const study = uidOf(x, [0x20, 0x00, 0x0d, 0x00]);
    const otherStudy = `${study.slice(0, -1)}${study.endsWith('9') ? '8' : '9'}`;
    expect((await stow(server.baseUrl, [x])).status).toBe(200);
    const moved = patchAscii(y, study, otherStudy);
    const r = await expectNoTrace(() => stow(server.baseUrl, [moved]));
    expect(r.status).toBe(409);
    const failed = r.json['00081198']?.Value?.[0];
    expect(failed?.[FAILURE_REASON]?.Value?.[0]).toBe(0x0110);
    expect(String(failed?.['0040A160']?.Value?.[0])).toMatch(/already belongs to study/);
    expect(failed?.['00081155']?.Value?.[0]).toBe(uidOf(y, [0x08, 0x00, 0x18, 0x00]));
    expect(failed?.['00081150']?.Value?.[0]).toBe(uidOf(y, [0x08, 0x00, 0x16, 0x00]));
  });

  it('a broken request never takes away an instance another sender was told is stored', async () => {
    const [x, y] = smallSeries('Race^Abandoned', 'RACE1', 2, { seed: 11 });
    const sop = uidOf(x, [0x08, 0x00, 0x18, 0x00]);
    const { body, contentType } = multipartBody([x, y]);
    const secondPart = body.indexOf('--testBoundary', 10);
    const blobs = await blobCount(server.dataDir);
    // Sender A: the first instance complete, the second under way.
    const a = await partialStow(server.baseUrl, body, contentType, secondPart + 300);
    await eventually(async () => (await blobCount(server.dataDir)) > blobs, "A's first instance on disk");
    // Until A's request has arrived whole, nothing of it is seen.
    expect((await getJson(`${root}/instances?SOPInstanceUID=${sop}`)).json.length).toBe(0);
    // Sender B stores the same instance and is told it is stored.
    const b = await stow(server.baseUrl, [x]);
    expect(b.status).toBe(200);
    // A's connection then drops: its request is refused, and B's instance stays.
    a.end();
    await eventually(async () => (await blobCount(server.dataDir)) === blobs + 1, "A's blob deleted");
    expect((await getJson(`${root}/instances?SOPInstanceUID=${sop}`)).json.length).toBe(1);
    const url = b.json['00081199']?.Value?.[0]?.['00081190']?.Value?.[0] as string;
    const back = await getMultipart(url, 'multipart/related; type="application/dicom"; transfer-syntax=*');
    expect(Buffer.compare(back.parts[0].body, Buffer.from(x))).toBe(0);
  });

  it('is idempotent for the same bytes and refuses different bytes under the same SOP Instance UID', async () => {
    const [a] = smallSeries('Dup^Test', 'DUP', 1, { seed: 7 });
    expect((await stow(server.baseUrl, [a])).status).toBe(200);
    const again = await expectNoTrace(() => stow(server.baseUrl, [a]));
    expect(again.status).toBe(200);
    const sop = uidOf(a, [0x08, 0x00, 0x18, 0x00]);
    expect((await getJson(`${root}/instances?SOPInstanceUID=${sop}`)).json.length).toBe(1);
    const changed = Buffer.from(a);
    changed[changed.length - 1] ^= 0xff; // one pixel differs
    const conflict = await expectNoTrace(() => stow(server.baseUrl, [changed]));
    expect(conflict.status).toBe(409);
    expect(conflict.json['00081198']?.Value?.[0]?.[FAILURE_REASON]?.Value?.[0]).toBe(0x0111);

    // The same data set behind another File Meta Information (a modality sends through a gateway
    // what was first imported from a CD): already stored, and the stored bytes stay the first ones.
    const meta = readFileMeta(a)!;
    const rewrapped = Buffer.concat([
      fileMetaInformation({
        MediaStorageSOPClassUID: meta.MediaStorageSOPClassUID!,
        MediaStorageSOPInstanceUID: meta.MediaStorageSOPInstanceUID!,
        TransferSyntaxUID: meta.TransferSyntaxUID!,
        ImplementationClassUID: '1.2.826.0.1.3680043.10.99',
        SourceApplicationEntityTitle: 'CT_GATEWAY',
      }),
      a.subarray(meta.datasetOffset),
    ]);
    expect(Buffer.compare(rewrapped, Buffer.from(a))).not.toBe(0);
    const same = await expectNoTrace(() => stow(server.baseUrl, [rewrapped]));
    expect(same.status).toBe(200);
    const url = same.json['00081199']?.Value?.[0]?.['00081190']?.Value?.[0] as string;
    const back = await getMultipart(url, 'multipart/related; type="application/dicom"; transfer-syntax=*');
    expect(Buffer.compare(back.parts[0].body, Buffer.from(a))).toBe(0);
  });
});

/**
 * The instance re-encoded in Deflated Explicit VR Little Endian, with `padding` zero bytes of Data Set
 * Trailing Padding (FFFC,FFFC) at its end: zeros deflate about 1,000 to 1.
 */
function deflated(bytes: Uint8Array, padding: number): Uint8Array {
  const meta = readFileMeta(bytes)!;
  const head = Buffer.alloc(12);
  head.writeUInt32LE(0xfffcfffc, 0);
  head.write('OB', 4, 'latin1');
  head.writeUInt32LE(padding, 8);
  const dataset = Buffer.concat([bytes.subarray(meta.datasetOffset), head, Buffer.alloc(padding)]);
  return Buffer.concat([
    fileMetaInformation({
      MediaStorageSOPClassUID: meta.MediaStorageSOPClassUID!,
      MediaStorageSOPInstanceUID: meta.MediaStorageSOPInstanceUID!,
      TransferSyntaxUID: '1.2.840.10008.1.2.1.99',
      ImplementationClassUID: '1.2.826.0.1.3680043.10.1',
    }),
    deflateRawSync(dataset, { level: 1 }),
  ]);
}

describe('deflated data sets', () => {
  it('stores a deflated instance, and refuses one that inflates beyond 256 MiB (a deflate bomb), keeping nothing', async () => {
    const server = await startServer();
    try {
      const [a, b] = smallSeries('Deflate^Bomb', 'DFL1', 2);
      const small = deflated(a, 1024 * 1024);
      const ok = await stow(server.baseUrl, [small]);
      expect(ok.status).toBe(200);
      const bomb = deflated(b, 257 * 1024 * 1024);
      expect(bomb.length).toBeLessThan(2 * 1024 * 1024);
      const blobs = await blobCount(server.dataDir);
      const r = await stow(server.baseUrl, [bomb]);
      expect(r.status).toBe(409);
      const failed = r.json['00081198']?.Value?.[0];
      expect(failed?.[FAILURE_REASON]?.Value?.[0]).toBe(0xa700);
      expect(String(failed?.['0040A160']?.Value?.[0])).toMatch(/inflates to more than 268435456 bytes/);
      expect(await blobCount(server.dataDir)).toBe(blobs);
      expect(await instanceCount(server.dicomweb)).toBe(1);
    } finally {
      await server.close();
    }
  });
});

describe('frame lists', () => {
  it('refuses a list of more frames than the instance has, for frames and rendered frames', async () => {
    const server = await startServer();
    try {
      const [a] = smallSeries('Frame^List', 'FL1', 1);
      const r = await stow(server.baseUrl, [a]);
      const url = r.json['00081199']?.Value?.[0]?.['00081190']?.Value?.[0] as string;
      // One request naming the single frame thousands of times would otherwise read (or render) it as
      // many times and hold every copy in memory.
      const many = Array.from({ length: 5000 }, () => '1').join(',');
      for (const [path, accept] of [
        [`frames/${many}`, 'multipart/related; type="application/octet-stream"'],
        ['frames/1,1', 'multipart/related; type="application/octet-stream"'],
        [`frames/${many}/rendered`, 'multipart/related; type="image/png"'],
      ]) {
        const res = await fetch(`${url}/${path}`, { headers: { Accept: accept } });
        expect(res.status, path.slice(0, 20)).toBe(400);
        expect(((await res.json()) as { message: string }).message).toMatch(
          /names \d+ frames; the instance has 1 frame$/,
        );
      }
      const one = await getMultipart(`${url}/frames/1`, 'multipart/related; type="application/octet-stream"');
      expect(one.parts).toHaveLength(1);
      expect(one.parts[0].headers['content-length']).toBe(String(32 * 32 * 2));
      expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('attributes that disagree with the pixel data', () => {
  it('answers 404 with a reason for a frame the stored pixel data does not hold', async () => {
    const server = await startServer();
    try {
      const [a] = [
        ...syntheticSeries({
          patientName: 'Frame^Short',
          patientId: 'FS1',
          instances: 1,
          rows: 16,
          columns: 16,
          frames: 3,
        }),
      ];
      // NumberOfFrames (0028,0008) says 9; the pixel data holds 3 frames. Stored as sent.
      const b = Buffer.from(a);
      const at = b.indexOf(Buffer.from([0x28, 0x00, 0x08, 0x00, 0x49, 0x53]), 132);
      expect(b.subarray(at + 8, at + 9).toString('latin1')).toBe('3');
      b.write('9', at + 8, 'latin1');
      const r = await stow(server.baseUrl, [b]);
      expect(r.status).toBe(200);
      const url = r.json['00081199']?.Value?.[0]?.['00081190']?.Value?.[0] as string;
      const accept = 'multipart/related; type="application/octet-stream"';
      const two = await getMultipart(`${url}/frames/2`, accept);
      expect(two.parts[0].body.length).toBe(16 * 16 * 2);
      const res = await fetch(`${url}/frames/5`, { headers: { Accept: accept } });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { message: string }).message).toMatch(
        /frame 5 is not in the pixel data .* say 9 frames, its pixel data holds 3/,
      );
      expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('a sender that stalls', () => {
  it('gets 408 once its body stops arriving for PACS_STOW_IDLE_SECONDS, and nothing of it is kept', async () => {
    const server = await startServer({ env: { PACS_STOW_IDLE_SECONDS: '1' } });
    try {
      const [x, y] = smallSeries('Stalled^Sender', 'STALL1', 2, { seed: 13 });
      const { body, contentType } = multipartBody([x, y]);
      const a = await partialStow(
        server.baseUrl,
        body,
        contentType,
        body.indexOf('--testBoundary', 10) + 300,
      );
      await eventually(async () => a.received().length > 0, 'the answer to the stalled request');
      expect(a.received()).toMatch(/^HTTP\/1\.1 408 /);
      expect(a.received()).toMatch(/no part of the request body arrived for 1 s/);
      a.end();
      expect(await blobCount(server.dataDir)).toBe(0);
      expect(await instanceCount(server.dicomweb)).toBe(0);
      // A sender that keeps sending is not cut off.
      expect((await stow(server.baseUrl, [x, y])).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('duplicate policy "overwrite"', () => {
  it('replaces the stored bytes and keeps one instance', async () => {
    const server = await startServer({ env: { PACS_DUPLICATE_POLICY: 'overwrite' } });
    try {
      const [a] = smallSeries('Dup^Over', 'DUP2', 1, { seed: 9 });
      const changed = Buffer.from(a);
      changed[changed.length - 1] ^= 0xff;
      expect((await stow(server.baseUrl, [a])).status).toBe(200);
      const r = await stow(server.baseUrl, [changed]);
      expect(r.status).toBe(200);
      const url = r.json['00081199']?.Value?.[0]?.['00081190']?.Value?.[0] as string;
      const back = await getMultipart(url, 'multipart/related; type="application/dicom"');
      expect(Buffer.compare(back.parts[0].body, changed)).toBe(0);
      expect(await blobCount(server.dataDir)).toBe(1);
      // A broken request (truncated after its first part) replaces nothing: the stored bytes stay.
      const { body, contentType } = multipartBody([a, changed]);
      const truncated = await fetch(`${server.dicomweb}/studies`, {
        method: 'POST',
        headers: { 'Content-Type': contentType },
        body: new Uint8Array(body.subarray(0, body.length - 300)),
      });
      expect(truncated.status).toBe(400);
      const still = await getMultipart(url, 'multipart/related; type="application/dicom"');
      expect(Buffer.compare(still.parts[0].body, changed)).toBe(0);
      expect(await blobCount(server.dataDir)).toBe(1);
    } finally {
      await server.close();
    }
  });
});

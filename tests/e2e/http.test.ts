/** What a browser on a weak link and an operator see over HTTP: readiness, compression, the viewer's routes. */
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { get, type IncomingMessage } from 'node:http';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { viewerPagePreload } from '../../server/app';
import { loadConfig } from '../../server/config';
import { createLogger } from '../../server/log';
import { syntheticSeries } from '../../server/synthetic';
import { rawGet } from '../helpers/http';
import { REPO, startServer, stow, type TestServer } from '../helpers/server';

/** A raw GET (fetch would decompress and hide Content-Encoding). */
describe('HTTP behaviour', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
    await fetch(`${server.baseUrl}/api/demo`, { method: 'POST' });
  });
  afterAll(async () => server?.close());

  /** The first frame of an instance of the demo study (loaded if it is not yet). */
  async function demoFrameUrl(): Promise<string> {
    await fetch(`${server.baseUrl}/api/demo`, { method: 'POST' });
    const [inst] = (await (await fetch(`${server.dicomweb}/instances?limit=1`)).json()) as Record<
      string,
      { Value: string[] }
    >[];
    return `${inst['00081190'].Value[0]}/frames/1`;
  }

  it('answers /healthz when ready', async () => {
    const r = await fetch(`${server.baseUrl}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ok' });
  });

  it('gzips QIDO and metadata JSON for clients that accept it, but not pixel data', async () => {
    const plain = await rawGet(`${server.dicomweb}/instances?limit=50`, {});
    const gz = await rawGet(`${server.dicomweb}/instances?limit=50`, { 'Accept-Encoding': 'gzip' });
    expect(plain.bytes, 'uncompressed size').toBeGreaterThan(1024);
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(gz.bytes).toBeLessThan(plain.bytes);
    const [study] = (await (await fetch(`${server.dicomweb}/studies`)).json()) as Record<
      string,
      { Value: string[] }
    >[];
    const uid = study['0020000D'].Value[0];
    const md = await rawGet(`${server.dicomweb}/studies/${uid}/metadata`, { 'Accept-Encoding': 'gzip' });
    expect(md.headers['content-encoding']).toBe('gzip');
    const inst = await rawGet(`${server.dicomweb}/studies/${uid}`, { 'Accept-Encoding': 'gzip' });
    expect(inst.headers['content-encoding']).toBeUndefined();
    // With the Accept headers the viewer sends: its JSON is gzipped, its frames come as they are, and a
    // frame that is not there is answered.
    const json = await rawGet(`${server.dicomweb}/instances?limit=50`, {
      'Accept-Encoding': 'gzip',
      Accept: 'application/dicom+json',
    });
    expect(json.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(json.body).toString('utf8'))).toEqual(
      JSON.parse(plain.body.toString('utf8')),
    );
    const frameAccept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
    const frame = await rawGet(await demoFrameUrl(), { 'Accept-Encoding': 'gzip', Accept: frameAccept });
    expect(frame.status).toBe(200);
    expect(frame.headers['content-encoding']).toBeUndefined();
    expect(frame.bytes).toBeGreaterThan(100_000);
    const missing = await rawGet(
      `${server.dicomweb}/studies/1.2.3.999/series/1.2.3/instances/1.2.3/frames/1`,
      {
        'Accept-Encoding': 'gzip',
        Accept: frameAccept,
      },
    );
    expect(missing.status).toBe(404);
  });

  it('serves the viewer for its own routes, precompressed assets, and 404s in words for unknown API paths', async () => {
    const page = await fetch(`${server.baseUrl}/viewer/1.2.3.4`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    // A study's address preloads the image viewer's code (named by the build's manifest); the study
    // list prefetches it (fetched at low priority, not run), so the first study opened on a slow link
    // does not wait for it; the administration pages do neither.
    const preload = /^<\/(assets\/viewer-page-[\w-]+\.js)>; rel=modulepreload$/.exec(
      page.headers.get('link') ?? '',
    );
    expect(preload, String(page.headers.get('link'))).not.toBeNull();
    expect((await fetch(`${server.baseUrl}/${preload![1]}`)).status).toBe(200);
    for (const list of ['/', '/?PatientName=X'])
      expect((await fetch(`${server.baseUrl}${list}`)).headers.get('link'), list).toBe(
        `</${preload![1]}>; rel=prefetch`,
      );
    expect((await fetch(`${server.baseUrl}/admin/users`)).headers.get('link')).toBeNull();
    const assets = path.join(REPO, 'viewer/dist/assets');
    const compressed = existsSync(assets) ? readdirSync(assets).filter((f) => f.endsWith('.gz')) : [];
    expect(compressed.length, 'the viewer build writes .gz assets').toBeGreaterThan(3);
    for (const gz of compressed) {
      const r = await rawGet(`${server.baseUrl}/assets/${gz.slice(0, -3)}`, {
        'Accept-Encoding': 'gzip, br',
      });
      expect(r.status, gz).toBe(200);
      expect(r.headers['content-encoding'], gz).toBe('gzip');
      // The compressed asset is the built file itself, byte for byte.
      expect(gunzipSync(r.body).equals(readFileSync(path.join(assets, gz.slice(0, -3)))), gz).toBe(true);
    }
    const missing = await fetch(`${server.dicomweb}/nothing/here`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { message: string }).message).toMatch(/no DICOMweb resource/);
  });

  it('answers 406 with the reason for media types it cannot produce', async () => {
    const [study] = (await (await fetch(`${server.dicomweb}/studies`)).json()) as Record<
      string,
      { Value: string[] }
    >[];
    const uid = study['0020000D'].Value[0];
    for (const [url, accept] of [
      [`${server.dicomweb}/studies/${uid}/metadata`, 'application/dicom+xml'],
      [`${server.dicomweb}/studies/${uid}`, 'image/png'],
      [`${server.dicomweb}/studies`, 'text/html'],
    ]) {
      const r = await fetch(url, { headers: { Accept: accept } });
      expect(r.status, accept).toBe(406);
      expect(((await r.json()) as { message: string }).message, accept).toMatch(
        /available as|cannot produce/,
      );
    }
  });

  it('serves the best accepted media type it can produce, and takes the accept query parameter first', async () => {
    const [inst] = (await (await fetch(`${server.dicomweb}/instances?limit=1`)).json()) as Record<
      string,
      { Value: string[] }
    >[];
    const url = inst['00081190'].Value[0];
    const stored = await fetch(url, {
      headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
    });
    const storedBody = Buffer.from(await stored.arrayBuffer());
    // The demo's 16-bit CT cannot be sent as 8-bit JPEG baseline: the next choice, as stored, is served.
    const ranked = await fetch(url, {
      headers: {
        Accept:
          'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50, multipart/related; type="application/dicom"; transfer-syntax=*;q=0.5',
      },
    });
    expect(ranked.status).toBe(200);
    const rankedBody = Buffer.from(await ranked.arrayBuffer());
    expect(rankedBody.length).toBe(storedBody.length); // same parts, another boundary
    const only = await fetch(url, {
      headers: {
        Accept: 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
      },
    });
    expect(only.status).toBe(406);
    // accept= in the query (a link cannot set headers) wins over the Accept header.
    const meta = await fetch(`${url}/metadata?accept=${encodeURIComponent('application/dicom+json')}`, {
      headers: { Accept: 'text/html' },
    });
    expect(meta.status).toBe(200);
    expect(meta.headers.get('content-type')).toMatch(/^application\/dicom\+json/);
    const frames = await fetch(
      `${url}/frames/1?accept=${encodeURIComponent('multipart/related; type="application/octet-stream"')}`,
      { headers: { Accept: 'text/html' } },
    );
    expect(frames.status).toBe(200);
    expect(frames.headers.get('content-type')).toMatch(
      /^multipart\/related; type="application\/octet-stream"/,
    );
    const search = await fetch(`${server.dicomweb}/studies?accept=application/json&limit=1`, {
      headers: { Accept: 'text/html' },
    });
    expect(search.status).toBe(200);
    expect(search.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('DELETE of a study removes it from the index and the blob store', async () => {
    const [study] = (await (await fetch(`${server.dicomweb}/studies`)).json()) as Record<
      string,
      { Value: string[] }
    >[];
    const uid = study['0020000D'].Value[0];
    expect((await fetch(`${server.dicomweb}/studies/${uid}`, { method: 'DELETE' })).status).toBe(204);
    expect(await (await fetch(`${server.dicomweb}/studies`)).json()).toEqual([]);
    expect((await fetch(`${server.dicomweb}/studies/${uid}/metadata`)).status).toBe(404);
    expect((await fetch(`${server.dicomweb}/studies/${uid}`, { method: 'DELETE' })).status).toBe(404);
    const files = readdirSync(path.join(server.dataDir, 'blobs'), {
      recursive: true,
      withFileTypes: true,
    }).filter((e) => e.isFile());
    expect(files).toEqual([]);
  });

  it('lets a browser revalidate frames it already has (ETag, 304)', async () => {
    const url = await demoFrameUrl();
    const accept = 'multipart/related; type="application/octet-stream"';
    const first = await fetch(url, { headers: { Accept: accept } });
    expect(first.status).toBe(200);
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^"[0-9a-f]{32}-[0-9a-f]{12}"$/);
    await first.arrayBuffer();
    const again = await fetch(url, { headers: { Accept: accept, 'If-None-Match': etag ?? '' } });
    expect(again.status).toBe(304);
    const changed = await fetch(url, { headers: { Accept: accept, 'If-None-Match': '"something-else"' } });
    expect(changed.status).toBe(200);
  });

  it('sends a single-part frame with its Content-Length, not chunked', async () => {
    const url = await demoFrameUrl();
    const res = await new Promise<IncomingMessage>((resolve, reject) =>
      get(url, { headers: { Accept: 'application/octet-stream; transfer-syntax=*' } }, resolve).on(
        'error',
        reject,
      ),
    );
    let length = 0;
    for await (const chunk of res) length += (chunk as Buffer).length;
    expect(res.statusCode).toBe(200);
    expect(res.headers['transfer-encoding']).toBeUndefined();
    expect(Number(res.headers['content-length'])).toBe(length);
    expect(length).toBeGreaterThan(1000);
  });
});

describe('what is written down, and forged Host headers', () => {
  it('keeps share-link tokens and searched-for patient data out of the log, and refuses a Host header that is not a host', async () => {
    const lines: string[] = [];
    const server = await startServer({ log: createLogger('debug', {}, (l) => lines.push(l)) });
    try {
      const token = 'Abc123secretToken.sig456';
      await fetch(`${server.dicomweb}/studies?PatientName=Nguy%E1%BB%85n*&PatientBirthDate=19800101&limit=5`);
      await fetch(`${server.baseUrl}/api/share-links/${token}`);
      await fetch(`${server.baseUrl}/s/${token}`);
      const requests = lines.map((l) => JSON.parse(l)).filter((e) => e.msg === 'request');
      expect(requests.map((e) => e.url)).toEqual([
        '/dicomweb/studies?PatientName=…&PatientBirthDate=…&limit=…',
        '/api/share-links/…',
        '/s/…',
      ]);
      const all = lines.join('');
      for (const secret of [token, 'Nguy', '19800101']) expect(all).not.toContain(secret);

      // The Host header is written into RetrieveURL and BulkDataURI: a forged one is refused.
      const forged = await rawGet(`${server.dicomweb}/studies`, { Host: 'evil"},"00100010":{"vr":"PN"}' });
      expect(forged.status).toBe(400);
      expect(JSON.parse(forged.body.toString()).message).toMatch(/Host header .* is not a host name/);
      const ok = await fetch(`${server.dicomweb}/studies`, { headers: { Host: '[::1]:8080' } });
      expect(ok.status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('viewer preload from the build manifest', () => {
  it('names the viewer page chunk and its imports, and follows a rebuild while the server runs', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pacs-manifest-'));
    try {
      const write = (hash: string, mtime: number) => {
        mkdirSync(path.join(dir, '.vite'), { recursive: true });
        const file = path.join(dir, '.vite', 'manifest.json');
        writeFileSync(
          file,
          JSON.stringify({
            'index.html': { file: 'assets/index-1.js', isEntry: true, imports: ['_shared.js'] },
            'src/features/viewer/viewer-page.tsx': {
              file: `assets/viewer-page-${hash}.js`,
              imports: ['index.html', '_shared.js'],
            },
            '_shared.js': { file: 'assets/shared-2.js' },
          }),
        );
        utimesSync(file, mtime, mtime);
      };
      expect(viewerPagePreload(dir)).toBeUndefined(); // no build
      write('aaa', 1000);
      expect(viewerPagePreload(dir)).toBe(
        '</assets/viewer-page-aaa.js>; rel=modulepreload, </assets/shared-2.js>; rel=modulepreload',
      );
      write('bbb', 2000); // rebuilt
      expect(viewerPagePreload(dir)).toMatch(/^<\/assets\/viewer-page-bbb\.js>/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('behind a reverse proxy (PACS_PUBLIC_URL)', () => {
  it('returns RetrieveURL and BulkDataURI on the public address, not the one the server listens on', async () => {
    const server = await startServer({ env: { PACS_PUBLIC_URL: 'https://pacs.benhvien.vn/' } });
    try {
      const [file] = syntheticSeries({
        patientName: 'Lý^Thường Kiệt',
        patientId: 'PX1',
        instances: 1,
        rows: 16,
        columns: 16,
        seed: 61,
      });
      const stored = await stow(server.baseUrl, [file]);
      expect(stored.status).toBe(200);
      const ref = stored.json['00081199']?.Value?.[0];
      const url = String(ref?.['00081190']?.Value?.[0]);
      expect(url).toMatch(
        /^https:\/\/pacs\.benhvien\.vn\/dicomweb\/studies\/[0-9.]+\/series\/[0-9.]+\/instances\/[0-9.]+$/,
      );
      const local = url.replace('https://pacs.benhvien.vn', server.baseUrl);
      const md = (await (await fetch(`${local}/metadata`)).json()) as Record<
        string,
        { BulkDataURI?: string }
      >[];
      expect(md[0]['7FE00010']?.BulkDataURI).toBe(`${url}/bulkdata/7FE00010`);
      const q = (await (await fetch(`${server.dicomweb}/studies?PatientID=PX1`)).json()) as Record<
        string,
        { Value?: string[] }
      >[];
      expect(q[0]['00081190']?.Value?.[0]).toMatch(/^https:\/\/pacs\.benhvien\.vn\/dicomweb\/studies\//);
    } finally {
      await server.close();
    }
  });

  it('refuses a PACS_PUBLIC_URL that is not an http(s) address', () => {
    expect(() => loadConfig({ PACS_PUBLIC_URL: 'pacs.benhvien.vn' })).toThrow(/PACS_PUBLIC_URL/);
  });
});

/**
 * The archive as a third-party viewer sees it: the npm `dicomweb-client` (dcmjs-org) stores, searches
 * and retrieves with the PS3.18 transaction names. It speaks XMLHttpRequest, provided here by xhr2.
 * Also: concurrent STOW of one study from several clients gives exact counts.
 */
import { api } from 'dicomweb-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error xhr2 ships no type declarations
import XMLHttpRequest from 'xhr2';
import { syntheticSeries } from '../../server/synthetic';
import { startServer, stow, type TestServer } from '../helpers/server';
import { getJson, type Json, value } from './dicomweb';

(globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest = XMLHttpRequest;

describe('dicomweb-client as the client', () => {
  let server: TestServer;
  let client: InstanceType<typeof api.DICOMwebClient>;
  const series = [
    ...syntheticSeries({
      patientName: 'Phạm^Minh Châu',
      patientId: 'DWC1',
      instances: 5,
      rows: 64,
      columns: 64,
      seed: 11,
    }),
  ];
  const uid = (bytes: Uint8Array, tag: number[]) => {
    const b = Buffer.from(bytes);
    const at = b.indexOf(Buffer.from([...tag, 0x55, 0x49]), 240);
    return b
      .subarray(at + 8, at + 8 + b.readUInt16LE(at + 6))
      .toString('latin1')
      .replace(/\0+$/, '');
  };
  const study = uid(series[0], [0x20, 0x00, 0x0d, 0x00]);
  const seriesUID = uid(series[0], [0x20, 0x00, 0x0e, 0x00]);
  const sops = series.map((b) => uid(b, [0x08, 0x00, 0x18, 0x00]));

  beforeAll(async () => {
    server = await startServer();
    client = new api.DICOMwebClient({ url: server.dicomweb, singlepart: '' } as never);
  });
  afterAll(async () => server?.close());

  it('storeInstances', async () => {
    await client.storeInstances({
      datasets: series.map((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)),
    } as never);
    const found = (await client.searchForInstances({ studyInstanceUID: study } as never)) as Json[];
    expect(found.map((d) => value(d, '00080018')).sort()).toEqual([...sops].sort());
  });

  it('searchForStudies with fuzzy matching, searchForSeries', async () => {
    const studies = (await client.searchForStudies({
      queryParams: { PatientName: 'pham minh chau', fuzzymatching: 'true' },
    } as never)) as Json[];
    expect(studies.length).toBe(1);
    expect(value(studies[0], '00100010').Alphabetic).toBe('Phạm^Minh Châu');
    expect(value(studies[0], '00201208')).toBe(5);
    const found = (await client.searchForSeries({ studyInstanceUID: study } as never)) as Json[];
    expect(value(found[0], '0020000E')).toBe(seriesUID);
  });

  it('retrieveSeriesMetadata, retrieveInstance, retrieveInstanceFrames, retrieveBulkData', async () => {
    const md = (await client.retrieveSeriesMetadata({
      studyInstanceUID: study,
      seriesInstanceUID: seriesUID,
    } as never)) as Json[];
    expect(md.length).toBe(5);
    expect(value(md[0], '00280010')).toBe(64);

    const inst = (await client.retrieveInstance({
      studyInstanceUID: study,
      seriesInstanceUID: seriesUID,
      sopInstanceUID: sops[0],
    } as never)) as ArrayBuffer;
    expect(Buffer.compare(Buffer.from(inst), Buffer.from(series[0]))).toBe(0);

    const frames = (await client.retrieveInstanceFrames({
      studyInstanceUID: study,
      seriesInstanceUID: seriesUID,
      sopInstanceUID: sops[0],
      frameNumbers: [1],
    } as never)) as ArrayBuffer[];
    expect(frames.length).toBe(1);
    expect(frames[0].byteLength).toBe(64 * 64 * 2);
    const pixels = Buffer.from(series[0]).subarray(series[0].length - 64 * 64 * 2);
    expect(Buffer.compare(Buffer.from(frames[0]), pixels)).toBe(0);

    const first = md.find((d) => value(d, '00080018') === sops[0])!;
    const bulk = (await client.retrieveBulkData({
      BulkDataURI: first['7FE00010'].BulkDataURI,
    } as never)) as ArrayBuffer[];
    expect(Buffer.compare(Buffer.from(bulk[0]), pixels)).toBe(0);
  });
});

describe('concurrent STOW of one study from several clients', () => {
  it('ends with exact series and instance counts', async () => {
    const server = await startServer();
    try {
      const studyUID = '2.25.1234567890123456789';
      const all = [1, 2, 3].flatMap((n) => [
        ...syntheticSeries({
          patientName: 'Concurrent^Test',
          patientId: 'CC1',
          studyInstanceUID: studyUID,
          seriesNumber: n,
          instances: 20,
          rows: 32,
          columns: 32,
        }),
      ]);
      // 6 clients, each with instances of every series, in batches of 5, all at once.
      const clients = Array.from({ length: 6 }, (_, c) => all.filter((_, i) => i % 6 === c));
      const results = await Promise.all(
        clients.map(async (files) => {
          const statuses: number[] = [];
          for (let i = 0; i < files.length; i += 5)
            statuses.push((await stow(server.baseUrl, files.slice(i, i + 5))).status);
          return statuses;
        }),
      );
      expect(results.flat().every((s) => s === 200)).toBe(true);
      const [st] = (await getJson(`${server.dicomweb}/studies?StudyInstanceUID=${studyUID}`)).json;
      expect(value(st, '00201206')).toBe(3);
      expect(value(st, '00201208')).toBe(60);
      const series = (await getJson(`${server.dicomweb}/studies/${studyUID}/series`)).json;
      expect(series.map((s) => value(s, '00201209'))).toEqual([20, 20, 20]);
    } finally {
      await server.close();
    }
  });
});

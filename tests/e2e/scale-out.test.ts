/**
 * Several servers: two archive processes on one bucket and one PostgreSQL database. What one stores the
 * other finds and serves; one study sent to both at once (overlapping, as a retrying gateway would) ends
 * with exact counts; a deletion through one is seen at once by the other (no stale state).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticSeries } from '../../server/synthetic';
import { type ArchiveProcess, startArchive } from '../../scripts/lib/archive-process';
import { S3_POSTGRES, type StorageBackends } from '../helpers/storage-configs';
import { multipartBody } from '../helpers/server';
import { getJson, getMultipart, type Json, value } from './dicomweb';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function stowTo(server: ArchiveProcess, files: Uint8Array[]): Promise<number> {
  const { body, contentType } = multipartBody(files);
  const res = await fetch(`${server.dicomweb}/studies`, {
    method: 'POST',
    headers: { 'Content-Type': contentType, Accept: 'application/dicom+json' },
    body: new Uint8Array(body),
  });
  await res.arrayBuffer();
  return res.status;
}

describe('two servers on one bucket and database', () => {
  let backends: StorageBackends;
  let a: ArchiveProcess;
  let b: ArchiveProcess;
  let dataDir: string;
  beforeAll(async () => {
    backends = await S3_POSTGRES.start();
    // Started together: both apply the schema migrations to the empty database at the same moment.
    dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-scale-out-'));
    const start = () => startArchive({ dataDir, env: backends.env });
    [a, b] = await Promise.all([start(), start()]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await backends?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves from one server what was stored through the other', async () => {
    const files = [
      ...syntheticSeries({
        patientName: 'Đặng^Thùy Trâm',
        patientId: 'SO1',
        instances: 6,
        rows: 64,
        columns: 64,
        seed: 41,
      }),
    ];
    expect(await stowTo(a, files)).toBe(200);
    const { json: studies } = await getJson(
      `${b.dicomweb}/studies?PatientName=dang%20thuy&fuzzymatching=true`,
    );
    expect(studies).toHaveLength(1);
    expect(value(studies[0], '00201208')).toBe(6);
    const study = value(studies[0], '0020000D') as string;
    const { json: instances } = await getJson(`${b.dicomweb}/studies/${study}/instances`);
    expect(instances).toHaveLength(6);
    for (const inst of instances) {
      const w = await getMultipart(
        value(inst, '00081190') as string,
        'multipart/related; type="application/dicom"; transfer-syntax=*',
      );
      expect(w.status).toBe(200);
      const sop = value(inst, '00080018') as string;
      const sent = files.find((f) => Buffer.from(f).includes(Buffer.from(sop)));
      expect(sent).toBeDefined();
      expect(sha(w.parts[0].body)).toBe(sha(sent!));
    }
    const md = await getJson(`${b.dicomweb}/studies/${study}/metadata`);
    expect(md.json).toHaveLength(6);
  });

  it('keeps exact counts when one study is sent to both servers at once', async () => {
    const study = '1.2.826.0.1.3680043.10.777.1';
    const series = [0, 1, 2].map((i) => `${study}.${i}`);
    const files = series.flatMap((se, i) => [
      ...syntheticSeries({
        patientName: 'Ngô^Bảo Châu',
        patientId: 'SO2',
        studyInstanceUID: study,
        seriesInstanceUID: se,
        modality: i === 2 ? 'MR' : 'CT',
        instances: 20,
        rows: 32,
        columns: 32,
        seed: 50 + i,
      }),
    ]);
    // Requests of 5 instances each, alternating between the servers; a third of them sent to both.
    const requests: Promise<number>[] = [];
    for (let i = 0; i < files.length; i += 5) {
      const batch = files.slice(i, i + 5);
      const n = i / 5;
      requests.push(stowTo(n % 2 ? a : b, batch));
      if (n % 3 === 0) requests.push(stowTo(n % 2 ? b : a, batch));
    }
    expect(new Set(await Promise.all(requests))).toEqual(new Set([200]));

    for (const server of [a, b]) {
      const { json } = await getJson(`${server.dicomweb}/studies?StudyInstanceUID=${study}`);
      expect(json).toHaveLength(1);
      expect(value(json[0], '00201206')).toBe(3);
      expect(value(json[0], '00201208')).toBe(60);
      expect((json[0] as Json)['00080061']?.Value).toEqual(['CT', 'MR']);
      const { json: se } = await getJson(`${server.dicomweb}/studies/${study}/series`);
      expect(se.map((s) => value(s, '00201209'))).toEqual([20, 20, 20]);
      const { json: inst } = await getJson(`${server.dicomweb}/studies/${study}/instances?limit=1000`);
      expect(inst).toHaveLength(60);
    }

    // A deletion through one server is seen at once through the other.
    const del = await fetch(`${a.dicomweb}/studies/${study}/series/${series[2]}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    const { json } = await getJson(`${b.dicomweb}/studies?StudyInstanceUID=${study}`);
    expect(value(json[0], '00201206')).toBe(2);
    expect(value(json[0], '00201208')).toBe(40);
    expect((json[0] as Json)['00080061']?.Value).toEqual(['CT']);
    const gone = await fetch(`${b.dicomweb}/studies/${study}/series/${series[2]}/metadata`);
    expect(gone.status).toBe(404);
  });
});

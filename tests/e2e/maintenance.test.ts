/**
 * npm run reindex rebuilds the index from the blobs alone; npm run fsck finds (and repairs) blobs that no
 * index row refers to, as a crash between writing a blob and indexing it would leave.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/config';
import { fsck, reindex } from '../../server/maintenance';
import { syntheticSeries } from '../../server/synthetic';
import { FsBlobStore } from '../../storage/fs-blob';
import { startServer, stow } from '../helpers/server';
import { getJson, type Json, value } from './dicomweb';

describe('reindex and fsck', () => {
  it('rebuild the same index from the blobs, and repair orphans', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-maintenance-'));
    const first = await startServer({ dataDir });
    const files = [
      ...syntheticSeries({
        patientName: 'Lê^Văn Tám',
        patientId: 'RX1',
        instances: 6,
        rows: 32,
        columns: 32,
        seed: 21,
      }),
      ...syntheticSeries({
        patientName: 'Võ^Thị Sáu',
        patientId: 'RX2',
        instances: 4,
        rows: 32,
        columns: 32,
        seed: 22,
      }),
    ];
    expect((await stow(first.baseUrl, files)).status).toBe(200);
    // URLs carry the server's port; compare what the archive knows, not where it listened.
    const unhosted = (x: unknown, base: string): Json[] =>
      JSON.parse(JSON.stringify(x).replaceAll(base, 'BASE'));
    const before = unhosted(
      (await getJson(`${first.dicomweb}/studies?includefield=all`)).json,
      first.baseUrl,
    );
    const study = value(before[0], '0020000D') as string;
    const metadataBefore = unhosted(
      (await getJson(`${first.dicomweb}/studies/${study}/metadata`)).json,
      first.baseUrl,
    );
    await first.close();

    const config = loadConfig({ PACS_DATA_DIR: dataDir });
    // The index is lost entirely; the blobs alone bring it back.
    await rm(path.join(dataDir, 'index.sqlite'), { force: true });
    const r = await reindex(config);
    expect(r).toMatchObject({ blobs: 10, indexed: 10, skipped: [] });

    // A crash between blob and index: one valid instance and one broken file that no row refers to.
    const blobs = await FsBlobStore.open(path.join(dataDir, 'blobs'));
    const [orphan] = [
      ...syntheticSeries({
        patientName: 'Orphan^Case',
        patientId: 'RX3',
        instances: 1,
        rows: 32,
        columns: 32,
        seed: 23,
      }),
    ];
    await blobs.put('ff/orphan-valid.dcm', [orphan] as unknown as AsyncIterable<Uint8Array>);
    await blobs.put('ff/orphan-broken.dcm', [
      new TextEncoder().encode('half an upload'),
    ] as unknown as AsyncIterable<Uint8Array>);
    const check = await fsck(config, { repair: false });
    expect(check.orphans.sort()).toEqual(['ff/orphan-broken.dcm', 'ff/orphan-valid.dcm']);
    expect(check.missing).toEqual([]);
    const repaired = await fsck(config, { repair: true });
    expect(repaired.indexed).toBe(1);
    expect(repaired.deleted).toEqual(['ff/orphan-broken.dcm']);
    expect((await fsck(config, { repair: false })).orphans).toEqual([]);

    const again = await startServer({ dataDir });
    try {
      const after = unhosted(
        (await getJson(`${again.dicomweb}/studies?includefield=all`)).json,
        again.baseUrl,
      );
      expect(after.length).toBe(before.length + 1);
      for (const ds of before) {
        const same = after.find((a) => value(a, '0020000D') === value(ds, '0020000D'));
        expect(same).toEqual(ds);
      }
      const metadataAfter = (await getJson(`${again.dicomweb}/studies/${study}/metadata`)).json;
      expect(unhosted(metadataAfter, again.baseUrl)).toEqual(metadataBefore);
      expect((await getJson(`${again.dicomweb}/studies?PatientID=RX3`)).json.length).toBe(1);
    } finally {
      await again.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

/**
 * npm run reindex rebuilds the index from the blobs alone; npm run fsck finds (and repairs) blobs that no
 * index row refers to, as a crash between writing a blob and indexing it would leave, and index rows
 * whose blob is gone. On every storage combination (folder + SQLite, S3 + PostgreSQL).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Config, loadConfig, storageOptions } from '../../server/config';
import { fsck, reindex } from '../../server/maintenance';
import { syntheticSeries } from '../../server/synthetic';
import { openStorage } from '../../storage/open';
import { startServer, stow } from '../helpers/server';
import { STORAGE_CONFIGS, type StorageBackends } from '../helpers/storage-configs';
import { getJson, type Json, value } from './dicomweb';

/** The PostgreSQL index lost entirely: its tables dropped, so the archive starts from an empty schema. */
async function wipeIndex(config: Config): Promise<void> {
  const client = new pg.Client({ connectionString: config.databaseUrl });
  await client.connect();
  try {
    await client.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
  } finally {
    await client.end();
  }
}

describe.each(STORAGE_CONFIGS)('reindex and fsck on $name', (storage) => {
  let backends: StorageBackends;
  beforeAll(async () => {
    backends = await storage.start();
  });
  afterAll(async () => {
    await backends?.close();
  });

  it('rebuild the same index from the blobs, and repair orphans and rows without blobs', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-maintenance-'));
    const env = backends.env;
    const first = await startServer({ dataDir, env });
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

    const config = loadConfig({ PACS_DATA_DIR: dataDir, ...env });
    // The index is lost entirely; the blobs alone bring it back.
    if (!config.databaseUrl) await rm(path.join(dataDir, 'index.sqlite'), { force: true });
    else await wipeIndex(config);
    const r = await reindex(config);
    expect(r).toMatchObject({ blobs: 10, indexed: 10, skipped: [] });

    // A crash between blob and index: one valid instance and one broken file that no row refers to.
    const opened = await openStorage(storageOptions(config));
    const blobs = opened.blobs;
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
    // And a row whose blob was lost (a disk or bucket restored from an older copy).
    const lost = (await opened.index.indexedBlobs()).find((b) => b.StudyInstanceUID !== study)!;
    await blobs.delete(lost.blobKey);
    await opened.close();

    const check = await fsck(config, { repair: false });
    expect(check.orphans.sort()).toEqual(['ff/orphan-broken.dcm', 'ff/orphan-valid.dcm']);
    expect(check.missing).toEqual([lost.blobKey]);
    const repaired = await fsck(config, { repair: true });
    expect(repaired.indexed).toBe(1);
    expect(repaired.deleted).toEqual(['ff/orphan-broken.dcm']);
    expect(repaired.removedRows).toEqual([`${lost.SOPInstanceUID} (study ${lost.StudyInstanceUID})`]);
    expect(await fsck(config, { repair: false })).toMatchObject({ orphans: [], missing: [] });

    const again = await startServer({ dataDir, env });
    try {
      const after = unhosted(
        (await getJson(`${again.dicomweb}/studies?includefield=all`)).json,
        again.baseUrl,
      );
      expect(after.length).toBe(before.length + 1);
      for (const ds of before) {
        const same = after.find((a) => value(a, '0020000D') === value(ds, '0020000D'));
        if (value(ds, '0020000D') === lost.StudyInstanceUID) {
          // The lost instance is no longer listed: one fewer in its study.
          expect(value(same!, '00201208')).toBe((value(ds, '00201208') as number) - 1);
        } else expect(same).toEqual(ds);
      }
      const gone = await fetch(
        `${again.dicomweb}/studies/${lost.StudyInstanceUID}/series/${lost.SeriesInstanceUID}/instances/${lost.SOPInstanceUID}/metadata`,
      );
      expect(gone.status).toBe(404);
      const metadataAfter = (await getJson(`${again.dicomweb}/studies/${study}/metadata`)).json;
      expect(unhosted(metadataAfter, again.baseUrl)).toEqual(metadataBefore);
      expect((await getJson(`${again.dicomweb}/studies?PatientID=RX3`)).json.length).toBe(1);
    } finally {
      await again.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

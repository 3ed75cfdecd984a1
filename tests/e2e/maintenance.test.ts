/**
 * npm run reindex rebuilds the index from the blobs alone; npm run fsck finds (and repairs) blobs that no
 * index row refers to, as a crash between writing a blob and indexing it would leave, and index rows
 * whose blob is gone. On every storage combination (folder + SQLite, S3 + PostgreSQL).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Config, loadConfig, storageOptions } from '../../server/config';
import { fsck, reindex } from '../../server/maintenance';
import { syntheticSeries } from '../../server/synthetic';
import { AccessStore } from '../../storage/access';
import { openStorage } from '../../storage/open';
import { runTs } from '../helpers/process';
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

  it('reindex keeps the accounts, API tokens, share links, settings and audit trail of the database', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-maintenance-'));
    const env = backends.env;
    try {
      const server = await startServer({ dataDir, env });
      const files = [
        ...syntheticSeries({
          patientName: 'Giữ^Lại',
          patientId: 'KEEP1',
          instances: 2,
          rows: 16,
          columns: 16,
        }),
      ];
      const stored = await stow(server.baseUrl, files);
      expect(stored.status).toBe(200);
      const url = String(stored.json['00081199']?.Value?.[0]?.['00081190']?.Value?.[0]);
      const study = url.match(/studies\/([0-9.]+)/)![1];
      await server.close();

      const config = loadConfig({ PACS_DATA_DIR: dataDir, ...env });
      const security = async () => {
        const opened = await openStorage(storageOptions(config));
        try {
          const access = new AccessStore(opened.index.sql());
          return {
            users: (await access.listUsers()).map((u) => u.username).sort(),
            tokens: (await access.listTokens()).map((t) => t.id),
            shares: (await access.listShares()).map((s) => s.id),
            audit: (await access.queryAudit({ limit: 1000 })).length,
            instances: (await opened.index.indexedBlobs()).length,
          };
        } finally {
          await opened.close();
        }
      };
      const opened = await openStorage(storageOptions(config));
      const access = new AccessStore(opened.index.sql());
      const now = Date.now();
      await access.createUser({
        username: 'drkeep',
        role: 'radiologist',
        displayName: null,
        referringName: null,
        oidcSubject: null,
        passwordHash: 'x',
        mustChangePassword: false,
        disabled: false,
      });
      await access.createToken({
        id: 'tok1',
        username: 'drkeep',
        label: 'pacs',
        expiresAt: null,
        tokenHash: 'h'.repeat(64),
      });
      await access.createShare({
        id: 'share1',
        studyInstanceUID: study,
        createdBy: 'drkeep',
        createdAt: now,
        expiresAt: now + 86_400_000,
        verify: 'none',
        pinHash: null,
        grantee: null,
      });
      await access.appendAudit([
        {
          time: now,
          username: 'drkeep',
          role: 'radiologist',
          action: 'search',
          studyInstanceUID: study,
          patientID: 'KEEP1',
          status: 200,
          source: '127.0.0.1',
          detail: null,
        },
      ]);
      await opened.close();
      const before = await security();
      expect(before.users).toContain('drkeep');

      const r = await reindex(config);
      expect(r.skipped).toEqual([]);
      expect(r.indexed).toBe(r.blobs); // the blob store of S3 + PostgreSQL also holds the test above's
      expect(await security()).toEqual(before);
      if (!config.databaseUrl) {
        // The complete database before the reindex, beside the index.
        expect(r.copy).toMatch(/index\.sqlite\.before-reindex-/);
        expect((await stat(r.copy!)).size).toBeGreaterThan(0);
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('maintenance under a running server', () => {
  const repo = path.resolve(import.meta.dirname, '../..');
  const maintenance = async (dataDir: string, ...args: string[]) => {
    const r = await runTs('scripts/maintenance.ts', args, {
      env: { ...process.env, PACS_DATA_DIR: dataDir, PACS_AUTH: 'off' },
    });
    return { code: r.code ?? -1, out: r.output };
  };

  it('reindex and fsck --repair refuse while a server of this host runs on the data folder', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-maintenance-'));
    const server = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
      cwd: repo,
      env: { ...process.env, PACS_DATA_DIR: dataDir, PACS_AUTH: 'off', PORT: '0', LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => server.once('exit', resolve));
    try {
      const pidFile = path.join(dataDir, 'run', `${server.pid}.pid`);
      await expect
        .poll(
          () =>
            stat(pidFile).then(
              () => true,
              () => false,
            ),
          { timeout: 30_000 },
        )
        .toBe(true);
      for (const args of [['reindex'], ['fsck', '--repair']]) {
        const r = await maintenance(dataDir, ...args);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.out).toContain(
          `an archive server is running on ${dataDir} (process ${server.pid}); stop it first`,
        );
      }
      // Only reading: allowed.
      expect((await maintenance(dataDir, 'fsck')).code).toBe(0);
      server.kill('SIGTERM');
      await exited;
      await expect(stat(pidFile)).rejects.toThrow();
      // A file left by a process that died is recognised and removed.
      const stale = path.join(dataDir, 'run', '999999.pid');
      await writeFile(stale, '{}\n');
      // A maintenance run in progress (a process running scripts/maintenance.ts, registered): the
      // archive does not start under it.
      const busy = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'scripts/maintenance.ts'], {
        stdio: 'ignore',
      });
      try {
        await writeFile(path.join(dataDir, 'run', `${busy.pid}.pid`), '{"kind":"maintenance"}\n');
        const refused = await runTs('server/main.ts', [], {
          env: { ...process.env, PACS_DATA_DIR: dataDir, PACS_AUTH: 'off', PORT: '0' },
        });
        expect(refused.code).toBe(1);
        expect(refused.output).toContain(
          `The archive did not start: maintenance (npm run reindex or fsck --repair) is running on ${dataDir} (process ${busy.pid})`,
        );
      } finally {
        busy.kill('SIGKILL');
      }
      const r = await maintenance(dataDir, 'reindex');
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/the database before the reindex: .*index\.sqlite\.before-reindex-/);
      await expect(stat(stale)).rejects.toThrow();
    } finally {
      server.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

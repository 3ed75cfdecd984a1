/**
 * PACS_AUDIT_RETENTION_DAYS: the archive deletes audit events older than the retention soon after it
 * starts, keeps the newer ones, and records the deletion as an event of its own.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { loadConfig, storageOptions } from '../../server/config';
import { AccessStore, type AuditEvent } from '../../storage/access';
import { openStorage } from '../../storage/open';
import { type SecureArchive, startSecureArchive } from './setup';

interface AuditRow {
  time: string;
  user: string | null;
  role: string | null;
  action: string;
  detail: string | null;
}

const DAY = 86_400_000;
let env: SecureArchive | undefined;
let dir: string | undefined;

afterAll(async () => {
  await env?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('audit retention', () => {
  it('deletes events older than PACS_AUDIT_RETENTION_DAYS, keeps the rest, and records the deletion', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pacs-audit-'));
    // An archive that has been running for a while: events from 400, 100 and 10 days ago.
    const storage = await openStorage(storageOptions(loadConfig({ PACS_DATA_DIR: dir, PACS_AUTH: 'off' })));
    const now = Date.now();
    const event = (daysAgo: number, i: number): AuditEvent => ({
      time: now - daysAgo * DAY,
      username: 'drhoa',
      role: 'radiologist',
      action: 'retrieve-frames',
      studyInstanceUID: '1.2.3',
      patientID: 'PID-OLD',
      status: 200,
      source: '10.0.0.7',
      detail: `GET /dicomweb/studies/1.2.3 (${daysAgo} days ago, #${i})`,
    });
    try {
      await new AccessStore(storage.index.sql()).appendAudit([
        ...Array.from({ length: 25 }, (_, i) => event(400, i)),
        ...Array.from({ length: 5 }, (_, i) => event(100, i)),
        ...Array.from({ length: 3 }, (_, i) => event(10, i)),
      ]);
    } finally {
      await storage.close();
    }

    env = await startSecureArchive({ PACS_AUDIT_RETENTION_DAYS: '90' }, dir);
    const admin = env.admin;
    const audit = async (filter: string) =>
      (await admin.json<{ events: AuditRow[] }>(`/api/audit?limit=1000&${filter}`)).events;

    const [pruned] = await vi.waitFor(
      async () => {
        const rows = await audit('action=prune-audit');
        if (rows.length === 0) throw new Error('no prune-audit event yet');
        return rows;
      },
      { timeout: 20_000, interval: 250 },
    );
    expect(pruned.role).toBe('system');
    expect(pruned.detail).toMatch(/^30 events before \S+ deleted \(PACS_AUDIT_RETENTION_DAYS=90\)$/);

    const kept = await audit('user=drhoa');
    expect(kept.map((e) => e.detail).sort()).toEqual(
      [...Array.from({ length: 3 }, (_, i) => `GET /dicomweb/studies/1.2.3 (10 days ago, #${i})`)].sort(),
    );
    expect(await audit(`to=${new Date(now - 90 * DAY).toISOString()}`)).toEqual([]);
    // The archive's own events since it started (the studies loaded by the test setup) are all there.
    expect((await audit('action=store')).length).toBeGreaterThan(0);
  }, 60_000);
});

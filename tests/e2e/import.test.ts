/**
 * `npm run import` of a folder as a patient CD holds it: DICOM files in sub-folders, a DICOMDIR,
 * a text file, a damaged file without the Part 10 preamble and a truncated file, then data sets stored
 * without their Part 10 header (sent with one added), sent to the real server
 * over STOW-RS. Checks the summary counts, idempotent re-import, the CLI exit codes and that QIDO
 * finds the imported studies. The importer is run as users run it, as a CLI (tests import no scripts).
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import dcmjs from 'dcmjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listFiles,
  REPO,
  SAMPLES,
  SAMPLES_MISSING,
  samplesPresent,
  startServer,
  type TestServer,
} from '../helpers/server';
import { freePort } from '../../scripts/lib/net';
import { getJson, getMultipart, value } from './dicomweb';

if (!samplesPresent) console.warn(SAMPLES_MISSING);

/** A minimal DICOMDIR (Media Storage Directory Storage) so the importer must recognise and skip it. */
function minimalDicomdir(): Uint8Array {
  const { DicomDict } = (dcmjs as any).data;
  const sopInstanceUID = '2.25.123456789012345678901234567890';
  const dict = new DicomDict({
    '00020001': { vr: 'OB', Value: [Uint8Array.of(0, 1).buffer] },
    '00020002': { vr: 'UI', Value: ['1.2.840.10008.1.3.10'] },
    '00020003': { vr: 'UI', Value: [sopInstanceUID] },
    '00020010': { vr: 'UI', Value: ['1.2.840.10008.1.2.1'] },
    '00020012': { vr: 'UI', Value: ['2.25.1'] },
  });
  dict.dict = {
    '00041130': { vr: 'CS', Value: ['TESTCD'] }, // FileSetID
    '00041200': { vr: 'UL', Value: [0] }, // Offset of the First Directory Record of the Root Directory Entity
    '00041202': { vr: 'UL', Value: [0] }, // Offset of the Last Directory Record of the Root Directory Entity
    '00041212': { vr: 'US', Value: [0] }, // File-set Consistency Flag
    '00041220': { vr: 'SQ', Value: [] }, // Directory Record Sequence
  };
  return new Uint8Array(dict.write());
}

async function studyUid(file: string): Promise<string> {
  const ds = dicomParser.parseDicom(new Uint8Array(await readFile(file)), { untilTag: 'x0020000e' });
  return ds.string('x0020000d')!;
}

function runCli(
  args: string[],
  env: Record<string, string> = {},
  script = 'scripts/import.ts',
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(REPO, script), ...args],
      {
        cwd: REPO,
        env: { ...process.env, PACS_URL: '', PACS_TOKEN: '', ...env },
        timeout: 120_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

interface Summary {
  folder: string;
  scanned: number;
  stored: { path: string; sopInstanceUID?: string }[];
  warnings: { path: string; reason: string }[];
  failed: { path: string; reason: string; failureReason?: number }[];
  skippedNonDicom: string[];
  skippedDicomdir: string[];
  headerAdded: { path: string; missing: string }[];
}

async function importJson(args: string[]): Promise<{ code: number; summary: Summary }> {
  const r = await runCli([...args, '--quiet', '--json']);
  try {
    return { code: r.code, summary: JSON.parse(r.stdout) as Summary };
  } catch {
    throw new Error(`import printed no JSON summary (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

describe.skipIf(!samplesPresent)('npm run import (STOW-RS of a folder)', () => {
  let server: TestServer;
  let dir: string;
  let good: string[];
  const TRUNCATED = 'EXTRA/TRUNCATED.DCM';

  beforeAll(async () => {
    server = await startServer();
    dir = await mkdtemp(path.join(tmpdir(), 'pacs-import-'));
    // Layout of a typical patient CD: DICOMDIR at the top, images in nested folders with bare names.
    const viet = (await listFiles(path.join(SAMPLES, 'vietnamese'))).filter((f) =>
      /nguyen-van-an-nfc-\d/.test(f),
    );
    const ct = (await listFiles(path.join(SAMPLES, 'ct-series'))).slice(0, 5);
    const charset = path.join(SAMPLES, 'charsets/chrFren.dcm');
    good = [];
    const put = async (src: string, rel: string) => {
      const dst = path.join(dir, rel);
      await mkdir(path.dirname(dst), { recursive: true });
      await copyFile(src, dst);
      return dst;
    };
    for (const [i, f] of viet.entries()) good.push(await put(f, `DICOM/PAT1/IM${i}`));
    for (const [i, f] of ct.entries()) good.push(await put(f, `DICOM/PAT2/SER1/IM${i}`));
    good.push(await put(charset, 'DICOM/PAT3/IM0'));
    await put(path.join(SAMPLES, 'malformed/rtplan_truncated.dcm'), TRUNCATED);
    await put(path.join(SAMPLES, 'malformed/no_meta.dcm'), 'EXTRA/NOPREAMBLE');
    await writeFile(path.join(dir, 'README.TXT'), 'Patient CD produced by a modality export.\n');
    await writeFile(path.join(dir, 'DICOMDIR'), minimalDicomdir());
  });

  afterAll(async () => {
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('stores the DICOM files, reports the truncated one and skips the rest', async () => {
    // Given the DICOMDIR, the importer takes its folder.
    const { code, summary: s } = await importJson([
      path.join(dir, 'DICOMDIR'),
      '--url',
      server.baseUrl,
      '--batch',
      '3',
      '--concurrency',
      '2',
    ]);
    expect(code).toBe(1); // one file failed
    expect(s.folder).toBe(dir);
    expect(s.scanned).toBe(good.length + 4);
    expect(s.stored.length + s.warnings.length).toBe(good.length);
    expect(new Set([...s.stored, ...s.warnings].map((x) => x.path))).toEqual(new Set(good));
    expect(s.failed.map((f) => path.relative(dir, f.path))).toEqual([TRUNCATED]);
    expect(s.failed[0].reason).toMatch(/\S/);
    expect(s.skippedNonDicom.map((f) => path.relative(dir, f)).sort()).toEqual([
      'EXTRA/NOPREAMBLE',
      'README.TXT',
    ]);
    expect(s.skippedDicomdir.map((f) => path.relative(dir, f))).toEqual(['DICOMDIR']);
  });

  it('sends a data set stored without its Part 10 header with one added, its own bytes unchanged', async () => {
    // Old equipment and some CD writers store bare data sets, or drop the preamble and "DICM".
    const disc = await mkdtemp(path.join(tmpdir(), 'pacs-import-raw-'));
    try {
      const raw = path.join(SAMPLES, 'cr-dx/CR-MONO1-10-chest.dcm'); // Implicit VR LE data set, no header
      const mr = await readFile(path.join(SAMPLES, 'mr/MR_small.dcm'));
      await copyFile(raw, path.join(disc, 'IM0'));
      await writeFile(path.join(disc, 'IM1'), mr.subarray(132)); // the meta group without the preamble
      // No SOP Instance UID anywhere (a meta group with only the transfer syntax): cannot be stored.
      await copyFile(path.join(SAMPLES, 'transfer-syntaxes/JLSL_RGB_ILV1.dcm'), path.join(disc, 'IM2'));
      await copyFile(path.join(SAMPLES, 'malformed/ExplVR_BigEndNoMeta.dcm'), path.join(disc, 'IM3'));

      const { code, summary: s } = await importJson([disc, '--url', server.baseUrl]);
      expect(code).toBe(1);
      const rel = (p: string) => path.relative(disc, p);
      expect(s.stored.map((x) => rel(x.path))).toEqual(['IM0', 'IM1']);
      expect(s.headerAdded.map((h) => [rel(h.path), h.missing])).toEqual([
        ['IM0', 'file meta'],
        ['IM1', 'preamble'],
      ]);
      expect(s.failed.map((f) => [rel(f.path), f.reason])).toEqual([
        ['IM2', expect.stringMatching(/without a Part 10 header.*SOP Instance UID/)],
        ['IM3', expect.stringMatching(/big-endian.*dcmconv/)],
      ]);
      expect(s.skippedNonDicom).toEqual([]);

      // What the archive keeps: a Part 10 file whose data set is the file's bytes, byte for byte.
      const rawBytes = new Uint8Array(await readFile(raw));
      const rawSet = dicomParser.parseDicom(rawBytes, { TransferSyntaxUID: '1.2.840.10008.1.2' });
      const stored = await retrieveInstance(rawSet.string('x0020000d')!, rawSet.string('x00080018')!);
      const meta = dicomParser.parseDicom(stored, { untilTag: 'x00020010' });
      expect(meta.string('x00020010')).toBe('1.2.840.10008.1.2');
      expect(meta.string('x00020002')).toBe(rawSet.string('x00080016'));
      expect(meta.string('x00020003')).toBe(rawSet.string('x00080018'));
      expect(Buffer.from(stored.subarray(stored.length - rawBytes.length)).equals(rawBytes)).toBe(true);
      const metaEnd = 132 + 12 + meta.uint32('x00020000')!;
      expect(stored.length).toBe(metaEnd + rawBytes.length);

      // The header made is the same each time: sent again, the same bytes are a success that changes
      // nothing, not a different instance under the same UID (refused with 0x0111).
      const again = (await importJson([disc, '--url', server.baseUrl])).summary;
      expect([...again.stored, ...again.warnings].map((x) => rel(x.path)).sort()).toEqual(['IM0', 'IM1']);
      expect(again.failed.map((f) => rel(f.path))).toEqual(['IM2', 'IM3']);

      const mrSet = dicomParser.parseDicom(new Uint8Array(mr));
      const mrStored = await retrieveInstance(mrSet.string('x0020000d')!, mrSet.string('x00080018')!);
      expect(Buffer.from(mrStored.subarray(128)).equals(mr.subarray(128))).toBe(true);
    } finally {
      await rm(disc, { recursive: true, force: true });
    }
  });

  async function retrieveInstance(study: string, sop: string): Promise<Uint8Array> {
    const { json } = await getJson(`${server.dicomweb}/studies/${study}/instances?SOPInstanceUID=${sop}`);
    expect(json, `instance ${sop} is in the archive`).toHaveLength(1);
    const series = value(json[0], '0020000E');
    const { status, parts } = await getMultipart(
      `${server.dicomweb}/studies/${study}/series/${series}/instances/${sop}`,
      'multipart/related; type="application/dicom"',
    );
    expect(status).toBe(200);
    expect(parts).toHaveLength(1);
    return new Uint8Array(parts[0].body);
  }

  it('QIDO finds the imported studies with their instance counts', async () => {
    const byStudy = new Map<string, number>();
    for (const f of good) {
      const uid = await studyUid(f);
      byStudy.set(uid, (byStudy.get(uid) ?? 0) + 1);
    }
    for (const [uid, count] of byStudy) {
      const res = await fetch(`${server.dicomweb}/studies?StudyInstanceUID=${uid}`, {
        headers: { Accept: 'application/dicom+json' },
      });
      expect(res.status).toBe(200);
      const list = (await res.json()) as Record<string, { Value?: unknown[] }>[];
      expect(list).toHaveLength(1);
      expect(list[0]['00201208']?.Value?.[0]).toBe(count); // NumberOfStudyRelatedInstances
    }
  });

  it('re-importing is idempotent: nothing new fails and counts do not change', async () => {
    const { summary: s } = await importJson([dir, '--url', server.baseUrl]);
    // The archive answers an instance it already holds with the same bytes with a plain success (no
    // WarningReason): the importer counts it as stored, and says so (README, Quick start).
    expect(s.warnings).toEqual([]);
    expect(s.stored.map((x) => x.path).sort()).toEqual([...good].sort());
    expect(s.failed).toHaveLength(1);
    const uid = await studyUid(good[0]);
    const res = await fetch(`${server.dicomweb}/studies/${uid}/instances`, {
      headers: { Accept: 'application/dicom+json' },
    });
    const sameStudy = (await Promise.all(good.map(studyUid))).filter((u) => u === uid).length;
    expect(((await res.json()) as unknown[]).length).toBe(sameStudy);
  });

  it('the CLI prints the summary and exits 1 when a file failed, 2 when the server is unreachable', async () => {
    const r = await runCli([dir, '--url', server.baseUrl, '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/stored:\s+\d+ \(including any already held with the same bytes\)/);
    expect(r.stdout).toMatch(/stored with a warning:\s+0\n/);
    expect(r.stdout).toMatch(/failed:\s+1/);
    expect(r.stdout).toContain(TRUNCATED);
    expect(r.stdout).toMatch(/skipped, not DICOM:\s+2/);

    const ok = await mkdtemp(path.join(tmpdir(), 'pacs-import-ok-'));
    try {
      await copyFile(good[0], path.join(ok, 'IM0'));
      const r0 = await runCli([ok, '--url', server.baseUrl, '--quiet']);
      expect(r0.code, r0.stderr).toBe(0);
      const port = await freePort();
      const r2 = await runCli([ok, '--url', `http://127.0.0.1:${port}`, '--quiet']);
      expect(r2.code).toBe(2);
      expect(r2.stderr).toMatch(/cannot reach/);

      // An archive with sign-in on refuses an importer without a valid token: it says so once, with the
      // archive's reason, and stops (exit 2) instead of listing every file as failed.
      const guarded = await startServer({ env: { PACS_AUTH: 'on' } });
      try {
        for (let i = 1; i < good.length; i++) await copyFile(good[i], path.join(ok, `IM${i}`));
        const none = await runCli([ok, '--url', guarded.baseUrl, '--quiet', '--batch', '2']);
        expect(none.code).toBe(2);
        expect(none.stdout).toBe('');
        expect(none.stderr).toMatch(/refused the import \(HTTP 401: sign in, or send an API token/);
        expect(none.stderr).toMatch(/PACS_TOKEN is not set\. An administrator makes one with: npm run user/);
        const wrong = await runCli([ok, '--url', guarded.baseUrl, '--quiet'], {
          PACS_TOKEN: 'pacs_notAToken0000000000000000000000000000000000',
        });
        expect(wrong.code).toBe(2);
        expect(wrong.stderr).toMatch(/HTTP 401: .*PACS_TOKEN was refused: .*not revoked\? An administrator/);
        expect((await getJson(`${guarded.dicomweb}/studies`)).status).toBe(401); // nothing was stored
      } finally {
        await guarded.close();
      }
    } finally {
      await rm(ok, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!samplesPresent)('npm run import of the whole sample corpus', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startServer();
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Each file's outcome: 'stored', or its failure reason. */
  const outcomes = (s: Summary) =>
    new Map<string, string>([
      ...[...s.stored, ...s.warnings].map((x) => [path.relative(SAMPLES, x.path), 'stored'] as const),
      ...s.failed.map((f) => [path.relative(SAMPLES, f.path), f.reason] as const),
    ]);

  it('stores files whose header names another SOP Instance UID than their data set, and exits 0', async () => {
    // badVR.dcm and chrJapMulti.dcm: (0002,0003) differs from (0008,0018); the archive answers with the
    // data set's. With CT slices in the same request, the response must be matched by that UID.
    const fresh = await startServer();
    const dir = await mkdtemp(path.join(tmpdir(), 'pacs-import-uids-'));
    try {
      const files = [
        'malformed/badVR.dcm',
        'charsets/chrJapMulti.dcm',
        ...(await listFiles(path.join(SAMPLES, 'ct-series')))
          .slice(0, 3)
          .map((f) => path.relative(SAMPLES, f)),
      ];
      for (const [i, f] of files.entries()) await copyFile(path.join(SAMPLES, f), path.join(dir, `IM${i}`));
      const { code, summary: s } = await importJson([dir, '--url', fresh.baseUrl]);
      expect(s.failed).toEqual([]);
      expect(code).toBe(0);
      expect(s.stored.map((x) => path.basename(x.path)).sort()).toEqual(['IM0', 'IM1', 'IM2', 'IM3', 'IM4']);
      const badVR = s.stored.find((x) => path.basename(x.path) === 'IM0');
      expect(badVR?.sopInstanceUID).toBe('1.9.999.999.99.9.9999.9999.20030818153516'); // the data set's
      const r = await runCli([dir, '--url', fresh.baseUrl, '--quiet']);
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toMatch(/stored:\s+5\b/);
    } finally {
      await fresh.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives every file its own outcome: the same in requests of 10 as one by one, and what QIDO finds', async () => {
    const run = await runCli([SAMPLES, '--url', server.baseUrl, '--json']);
    const batched = { code: run.code, summary: JSON.parse(run.stdout) as Summary };
    const s = batched.summary;
    expect(batched.code).toBe(1); // the malformed files cannot be stored
    // The progress counts each file once, also those sent again on their own: it ends at its totals.
    const last = run.stderr.trim().split('\n').pop() ?? '';
    expect(last).toMatch(/^import 100% (\d+)\/\1 files, ([\d.]+ [KMG]?B)\/\2, /);
    expect(s.failed.filter((f) => /not listed/.test(f.reason))).toEqual([]);
    const outcome = outcomes(s);
    expect(outcome.get('malformed/meta_missing_tsyntax.dcm')).toMatch(/no Transfer Syntax UID/);
    expect(outcome.get('malformed/MR_truncated.dcm')).toMatch(/truncated/);
    // Same data set UID, different content: one of each pair is stored, the other refused (0x0111).
    for (const pair of [
      ['malformed/badVR.dcm', 'sr-pdf-seg/rtdose.dcm'],
      ['charsets/chrJapMulti.dcm', 'charsets/chrJapMultiExplicitIR6.dcm'],
    ]) {
      const got = pair.map((p) => outcome.get(p));
      expect(
        got.filter((o) => o === 'stored'),
        `${pair}: ${got}`,
      ).toHaveLength(1);
      expect(got.filter((o) => /^0x0111 .*\.20030818153516|^0x0111 .*\.17462/.test(o ?? ''))).toHaveLength(1);
    }

    // Stored instances are what the archive holds.
    const { json: studies } = await getJson(`${server.dicomweb}/studies`);
    const held = studies.reduce((n, st) => n + Number(value(st, '00201208')), 0);
    expect(held).toBe(s.stored.length + s.warnings.length);

    // One by one, each answer is unambiguously the file's own: sent again, every file has the outcome it
    // had in a request of 10 (a stored file is stored again unchanged, a refused one refused again).
    const single = await importJson([SAMPLES, '--url', server.baseUrl, '--batch', '1', '--concurrency', '1']);
    expect(Object.fromEntries(outcomes(single.summary))).toEqual(Object.fromEntries(outcome));
    const { json: after } = await getJson(`${server.dicomweb}/studies`);
    expect(after.reduce((n, st) => n + Number(value(st, '00201208')), 0)).toBe(held);
  });
});

describe('npm run demo', () => {
  const demo = (args: string[], env: Record<string, string> = {}) => runCli(args, env, 'scripts/demo.ts');

  it('stores the demo study in the archive named by --url (or PACS_URL), and refuses unknown arguments', async () => {
    const server = await startServer();
    const other = await startServer();
    try {
      const studies = async (s: TestServer) => (await getJson(`${s.dicomweb}/studies`)).json;
      // --url wins over PACS_URL, as for the importer.
      const r = await demo(['--url', server.baseUrl], { PACS_URL: other.baseUrl });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${server.baseUrl}/viewer/`);
      const stored = await studies(server);
      expect(stored).toHaveLength(1);
      expect(Number(value(stored[0], '00201208'))).toBe(150);
      expect(await studies(other)).toEqual([]);
      const study = value(stored[0], '0020000D');

      const env = await demo([], { PACS_URL: `${other.baseUrl}/dicomweb/` });
      expect(env.code, env.stderr).toBe(0);
      expect(env.stdout).toContain(`${other.baseUrl}/viewer/${study}`);
      expect(await studies(other)).toHaveLength(1);

      for (const args of [['--ur', server.baseUrl], [server.baseUrl], ['--url']]) {
        const bad = await demo(args);
        expect(bad.code, args.join(' ')).toBe(2);
        expect(bad.stderr).toMatch(/usage: npm run demo -- \[--url /);
        expect(bad.stdout).toBe('');
      }
      const help = await demo(['--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/--url .*PACS_URL/);

      const port = await freePort();
      const down = await demo(['--url', `http://127.0.0.1:${port}`]);
      expect(down.code).toBe(1);
      expect(down.stderr).toContain(`No archive answers at http://127.0.0.1:${port}`);
    } finally {
      await server.close();
      await other.close();
    }
  });
});

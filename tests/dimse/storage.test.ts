/**
 * C-STORE SCP against dcmtk storescu: every storable sample file, several per association and four
 * associations in parallel, each proposed in its own transfer syntax. Each instance is then found by
 * QIDO-RS and retrieved by WADO-RS with its data set byte for byte as sent, behind our File Meta
 * Information (transfer syntax as received, calling AE as SourceApplicationEntityTitle).
 * One image stored in 15 transfer syntaxes (one SOP Instance UID) is sent one variant at a time.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import pako from 'pako';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJson, type Json, value } from '../e2e/dicomweb';
import { SAMPLES, SAMPLES_MISSING, samplesPresent, sampleFiles } from '../samples';
import {
  type Archive,
  DCMTK_MISSING,
  datasetOf,
  dcmtkPresent,
  eventually,
  metaOf,
  type RecordingProxy,
  retrieveInstance,
  run,
  startArchive,
  startRecordingProxy,
  storescuConfig,
} from './helpers';

interface Sample {
  file: string;
  bytes: Uint8Array;
  sopClass: string;
  sop: string;
  study: string;
  series: string;
  ts: string;
}

/** Transfer syntaxes dcmtk 3.6.7 cannot read (HTJ2K came in 3.6.8): those files go by our own SCU. */
const NOT_IN_DCMTK = new Set([
  '1.2.840.10008.1.2.4.201',
  '1.2.840.10008.1.2.4.202',
  '1.2.840.10008.1.2.4.203',
]);

function parse(bytes: Uint8Array): dicomParser.DataSet | undefined {
  try {
    return dicomParser.parseDicom(bytes, {
      inflater: (arr: Uint8Array, pos: number) => {
        const inflated = pako.inflateRaw(arr.subarray(pos));
        const out = new Uint8Array(pos + inflated.length);
        out.set(arr.subarray(0, pos));
        out.set(inflated, pos);
        return out;
      },
    } as dicomParser.ParseDicomOptions);
  } catch {
    return undefined;
  }
}

/** Sample files that can be stored: Part 10 (DICM at 128) with the four UIDs an instance is filed by. */
async function storableSamples(): Promise<Sample[]> {
  const out: Sample[] = [];
  for (const rel of sampleFiles()) {
    if (rel.startsWith('malformed/')) continue;
    const file = path.join(SAMPLES, rel);
    const bytes = new Uint8Array(await readFile(file));
    if (Buffer.from(bytes.subarray(128, 132)).toString('latin1') !== 'DICM') continue;
    const ds = parse(bytes);
    const s = (tag: string) => ds?.string(tag)?.replace(/\0/g, '').trim() || undefined;
    const [sopClass, sop, study, series, ts] = [
      s('x00080016'),
      s('x00080018'),
      s('x0020000d'),
      s('x0020000e'),
      s('x00020010'),
    ];
    if (!sopClass || !sop || !study || !series || !ts) continue;
    out.push({ file, bytes, sopClass, sop, study, series, ts });
  }
  return out;
}

const hasDcmtk = await dcmtkPresent();

describe.skipIf(!samplesPresent || !hasDcmtk)('C-STORE SCP (dcmtk storescu)', () => {
  let archive: Archive;
  let proxy: RecordingProxy;
  let samples: Sample[];
  let config: string;
  let configDir: string | undefined;

  beforeAll(async () => {
    if (!samplesPresent) console.warn(SAMPLES_MISSING);
    if (!hasDcmtk) console.warn(DCMTK_MISSING);
    archive = await startArchive();
    proxy = await startRecordingProxy(archive.dimsePort);
    samples = await storableSamples();
    configDir = await mkdtemp(path.join(tmpdir(), 'pacs-storescu-'));
    config = await storescuConfig(
      configDir,
      samples.map((s) => [s.sopClass, s.ts] as [string, string]),
    );
  });
  afterAll(async () => {
    await proxy?.close();
    await archive?.close();
    if (configDir) await rm(configDir, { recursive: true, force: true });
  });

  const storescu = (aet: string, files: string[], extra: string[] = []) =>
    run('storescu', [
      '-v',
      '-nh',
      '-xf',
      config,
      'Samples',
      '-aet',
      aet,
      '-aec',
      'PACS',
      ...extra,
      '127.0.0.1',
      String(proxy.port),
      ...files,
    ]);

  /**
   * The instance is found by QIDO and its WADO-RS data set is, byte for byte, what went over the wire
   * (recorded by the proxy). dcmtk re-encodes some files while sending: `sameAsFile` tells whether the
   * wire bytes were also the file's.
   */
  async function expectStoredAsSent(s: Sample, aet: string): Promise<{ sameAsFile: boolean }> {
    const { json } = await getJson<Json[]>(`${archive.dicomweb}/instances?SOPInstanceUID=${s.sop}`);
    expect(json.length, `${s.file}: found by QIDO`).toBe(1);
    expect(value(json[0], '0020000D')).toBe(s.study);
    const stored = await retrieveInstance(archive.dicomweb, s.study, s.series, s.sop);
    expect(stored, `${s.file}: retrieved by WADO-RS`).toBeDefined();
    const got = Buffer.from(datasetOf(new Uint8Array(stored!)));
    const sent = proxy.datasets.get(s.sop);
    expect(sent, `${s.file}: seen on the wire`).toBeDefined();
    expect(Buffer.compare(got, sent!), `${s.file}: stored data set = sent data set`).toBe(0);
    const meta = metaOf(new Uint8Array(stored!));
    expect(meta.TransferSyntaxUID).toBe(s.ts);
    expect(meta.MediaStorageSOPInstanceUID).toBe(s.sop);
    const logged = (l: Record<string, unknown>) =>
      /^instance (stored|already stored)/.test(String(l.msg)) &&
      l.sopInstanceUID === s.sop &&
      l.callingAETitle === aet;
    expect(archive.logs.some(logged), `${s.file}: logged with the calling AE ${aet}`).toBe(true);
    return { sameAsFile: Buffer.compare(got, Buffer.from(datasetOf(s.bytes))) === 0 };
  }

  it('stores every sample file: four associations in parallel, many instances each, data sets byte for byte', async () => {
    const first = new Map<string, Sample>();
    for (const s of samples) if (!first.has(s.sop)) first.set(s.sop, s);
    const unique = [...first.values()];
    const byDcmtk = unique.filter((s) => !NOT_IN_DCMTK.has(s.ts));
    expect(byDcmtk.length).toBeGreaterThan(200);
    const lanes: Sample[][] = [[], [], [], []];
    for (const [i, s] of byDcmtk.entries()) lanes[i % 4].push(s);
    const results = await Promise.all(
      lanes.map((lane, i) =>
        storescu(
          `MODALITY${i + 1}`,
          lane.map((s) => s.file),
        ),
      ),
    );
    for (const r of results) {
      expect(r.code, r.output.slice(-2000)).toBe(0);
      expect(r.output).not.toMatch(/Store Failed|Unknown Status|Error/);
    }
    const ended = () =>
      archive.logs.filter(
        (l) => l.msg === 'association ended' && String(l.callingAETitle).startsWith('MODALITY'),
      );
    expect(await eventually(() => ended().length === 4)).toBe(true);
    expect(ended().every((a) => a.outcome === 'released' && a.storeFailed === 0)).toBe(true);
    expect(ended().reduce((n, a) => n + Number(a.stored), 0)).toBe(byDcmtk.length);
    // storescu re-encodes about half of the files on the way (group lengths, padding, sequence lengths):
    // the archive must keep what it received, which the proxy recorded.
    for (const [i, lane] of lanes.entries())
      for (const s of lane) await expectStoredAsSent(s, `MODALITY${i + 1}`);
    // Each C-STORE is in the audit trail, with the calling AE title, the study and the outcome.
    const audited = async () => {
      const r = await fetch(`${archive.baseUrl}/api/audit?user=AE:MODALITY1&action=store&limit=1000`);
      return ((await r.json()) as { events: { status: number; study: string | null }[] }).events;
    };
    expect(await eventually(async () => (await audited()).length === lanes[0].length)).toBe(true);
    expect((await audited()).every((e) => e.status === 200 && e.study)).toBe(true);

    // HTJ2K: dcmtk 3.6.7 cannot read these files; our own C-STORE SCU (npm run dimse -- send) sends them.
    const rest = unique.filter((s) => NOT_IN_DCMTK.has(s.ts));
    if (rest.length > 0) {
      const cli = await run('node', [
        '--import',
        'tsx',
        'scripts/dimse.ts',
        'send',
        ...rest.map((s) => s.file),
        `PACS@127.0.0.1:${proxy.port}`,
        '--aet',
        'OURSCU',
        '--quiet',
      ]);
      expect(cli.code, cli.output).toBe(0);
      for (const s of rest) expect((await expectStoredAsSent(s, 'OURSCU')).sameAsFile).toBe(true);
    }
  });

  it('one SOP Instance in 15 transfer syntaxes: a different resend is refused (0x0111), each stored as sent', async () => {
    const groups = new Map<string, Sample[]>();
    for (const s of samples) groups.set(s.sop, [...(groups.get(s.sop) ?? []), s]);
    const variants = [...groups.values()].filter((g) => g.length > 1).flat();
    expect(variants.length).toBeGreaterThanOrEqual(15);
    // Stored already (first variant) by the test above; a different variant of it is a duplicate.
    const dup = variants.find((s) => !NOT_IN_DCMTK.has(s.ts) && groups.get(s.sop)![0] !== s)!;
    const refused = await storescu('MODALITY1', [dup.file]);
    expect(refused.output).toMatch(/Store Response \((?:Unknown Status: 0x111|.*Duplicate)/);
    expect(archive.logs.some((l) => l.msg === 'C-STORE failed' && l.status === '0x0111')).toBe(true);
    // The same bytes again: success, nothing changes.
    const original = groups.get(dup.sop)![0];
    if (!NOT_IN_DCMTK.has(original.ts)) {
      const again = await storescu('MODALITY1', [original.file]);
      expect(again.output).toMatch(/Received Store Response \(Success\)/);
      await expectStoredAsSent(original, 'MODALITY1');
    }
    for (const s of variants.filter((v) => !NOT_IN_DCMTK.has(v.ts))) {
      const del = await fetch(
        `${archive.dicomweb}/studies/${s.study}/series/${s.series}/instances/${s.sop}`,
        {
          method: 'DELETE',
        },
      );
      expect([204, 404]).toContain(del.status);
      const r = await storescu('MODALITY2', [s.file]);
      expect(r.output, s.file).toMatch(/Received Store Response \(Success\)/);
      await expectStoredAsSent(s, 'MODALITY2');
    }
  });
});

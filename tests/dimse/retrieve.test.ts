/**
 * C-MOVE and C-GET SCP against dcmtk movescu and getscu, into a dcmtk storescp started here (C-MOVE)
 * or getscu itself (C-GET), both writing what they receive bit for bit (+B). The received data sets
 * equal the stored ones byte for byte (transfer syntax unchanged), for instances stored by C-STORE and
 * by STOW-RS alike. Unknown and unreachable destinations get their failure statuses.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJson, type Json, value } from '../e2e/dicomweb';
import { loadSamples } from '../helpers/server';
import { freePort } from '../../scripts/lib/net';
import { SAMPLES, SAMPLES_MISSING, samplesPresent } from '../samples';
import {
  type Archive,
  DCMTK_MISSING,
  datasetOf,
  dcmtkPresent,
  receivedBySop,
  metaOf,
  retrieveInstance,
  run,
  type StoreScp,
  startArchive,
  startStorescp,
} from './helpers';

const hasDcmtk = await dcmtkPresent();
const sample = (...p: string[]) => path.join(SAMPLES, ...p);

interface Stored {
  study: string;
  series: string;
  sop: string;
  ts: string;
  dataset: Buffer;
}

describe.skipIf(!samplesPresent || !hasDcmtk)(
  'C-MOVE and C-GET SCP (dcmtk movescu, getscu, storescp)',
  () => {
    let archive: Archive;
    let scp: StoreScp;
    /** Study stored by C-STORE (storescu), study stored by STOW-RS, and one JPEG 2000 instance (STOW-RS). */
    let byCStore: Stored[];
    let byStow: Stored[];
    let j2k: Stored;

    async function instancesOf(query: string): Promise<Stored[]> {
      const { json } = await getJson<Json[]>(`${archive.dicomweb}/instances?${query}&includefield=all`);
      const out: Stored[] = [];
      for (const ds of json) {
        const [study, series, sop] = [value(ds, '0020000D'), value(ds, '0020000E'), value(ds, '00080018')];
        const file = new Uint8Array((await retrieveInstance(archive.dicomweb, study, series, sop))!);
        out.push({
          study,
          series,
          sop,
          ts: metaOf(file).TransferSyntaxUID!,
          dataset: Buffer.from(datasetOf(file)),
        });
      }
      return out;
    }

    function expectReceived(files: Map<string, Uint8Array>, stored: Stored[]) {
      for (const s of stored) {
        const f = files.get(s.sop);
        expect(f, `${s.sop} received`).toBeDefined();
        expect(metaOf(f!).TransferSyntaxUID).toBe(s.ts);
        expect(
          Buffer.compare(Buffer.from(datasetOf(f!)), s.dataset),
          `${s.sop}: data set byte for byte`,
        ).toBe(0);
      }
    }

    beforeAll(async () => {
      if (!samplesPresent) console.warn(SAMPLES_MISSING);
      if (!hasDcmtk) console.warn(DCMTK_MISSING);
      scp = await startStorescp('STORESCP');
      const down = await freePort();
      archive = await startArchive({
        PACS_DIMSE_REMOTE_AES: `STORESCP@127.0.0.1:${scp.port},DOWN@127.0.0.1:${down}`,
      });
      const dang = ['1', '2', '3'].map((n) => sample('vietnamese', `dang-thu-thao-${n}.dcm`));
      const r = await run('storescu', ['-aec', 'PACS', '127.0.0.1', String(archive.dimsePort), ...dang]);
      expect(r.code, r.output).toBe(0);
      await loadSamples(archive.baseUrl, [
        ...['1', '2', '3'].map((n) => sample('vietnamese', `le-hoang-nam-${n}.dcm`)),
        sample('cr-dx', 'RG3_J2KR.dcm'),
      ]);
      byCStore = await instancesOf('PatientName=dang*&fuzzymatching=true');
      byStow = await instancesOf('PatientName=le hoang nam&fuzzymatching=true');
      [j2k] = await instancesOf('SOPClassUID=1.2.840.10008.5.1.4.1.1.1&Modality=CR');
      expect(byCStore).toHaveLength(3);
      expect(byStow).toHaveLength(3);
      expect(j2k.ts).toBe('1.2.840.10008.1.2.4.90');
    });
    afterAll(async () => {
      await archive?.close();
      await scp?.close();
    });

    const movescu = (model: '-P' | '-S', dest: string, keys: string[]) =>
      run('movescu', [
        '-v',
        model,
        '-aet',
        'VIEWER',
        '-aec',
        'PACS',
        '-aem',
        dest,
        '127.0.0.1',
        String(archive.dimsePort),
        ...keys.flatMap((k) => ['-k', k]),
      ]);

    it('C-MOVE of a study stored by C-STORE, study root: storescp receives every instance byte for byte', async () => {
      const r = await movescu('-S', 'STORESCP', [
        'QueryRetrieveLevel=STUDY',
        `StudyInstanceUID=${byCStore[0].study}`,
      ]);
      expect(r.code, r.output).toBe(0);
      expect(r.output).toMatch(/Received Final Move Response \(Success\)/);
      expect((r.output.match(/Received Move Response \d+ \(Pending\)/g) ?? []).length).toBe(3);
      expectReceived(await receivedBySop(scp.dir), byCStore);
      const log = archive.logs.find((l) => l.msg === 'C-MOVE' && l.destination === 'STORESCP');
      expect(log).toMatchObject({ callingAETitle: 'VIEWER', instances: 3, completed: 3, failed: 0 });
    });

    it('C-MOVE of a patient stored by STOW-RS (patient root), and of one JPEG 2000 image, unchanged', async () => {
      const pid = (await getJson<Json[]>(`${archive.dicomweb}/studies?StudyInstanceUID=${byStow[0].study}`))
        .json[0];
      const r = await movescu('-P', 'STORESCP', [
        'QueryRetrieveLevel=PATIENT',
        `PatientID=${value(pid, '00100020')}`,
      ]);
      expect(r.output).toMatch(/Received Final Move Response \(Success\)/);
      const image = await movescu('-S', 'STORESCP', [
        'QueryRetrieveLevel=IMAGE',
        `StudyInstanceUID=${j2k.study}`,
        `SeriesInstanceUID=${j2k.series}`,
        `SOPInstanceUID=${j2k.sop}`,
      ]);
      expect(image.output).toMatch(/Received Final Move Response \(Success\)/);
      expectReceived(await receivedBySop(scp.dir), [...byStow, j2k]);
    });

    it('C-GET on the same association: getscu receives studies stored by STOW-RS and by C-STORE byte for byte', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'pacs-getscu-'));
      try {
        for (const study of [byStow[0].study, byCStore[0].study]) {
          const r = await run('getscu', [
            '-v',
            '+B',
            '-S',
            '-aet',
            'VIEWER',
            '-aec',
            'PACS',
            '-od',
            dir,
            '127.0.0.1',
            String(archive.dimsePort),
            '-k',
            'QueryRetrieveLevel=STUDY',
            '-k',
            `StudyInstanceUID=${study}`,
          ]);
          expect(r.code, r.output).toBe(0);
          expect(r.output).toMatch(
            /Received C-GET Response \(Success\)|Number of Completed Suboperations : 3/,
          );
          expect(r.output).toMatch(/Number of Failed Suboperations\s+: 0/);
        }
        // A compressed instance, by SOP Instance UID alone (relational), when getscu proposes its syntax.
        const r = await run('getscu', [
          '+B',
          '+xv',
          '-S',
          '-aec',
          'PACS',
          '-od',
          dir,
          '127.0.0.1',
          String(archive.dimsePort),
          '-k',
          'QueryRetrieveLevel=IMAGE',
          '-k',
          `SOPInstanceUID=${j2k.sop}`,
        ]);
        expect(r.code, r.output).toBe(0);
        expectReceived(await receivedBySop(dir), [...byStow, ...byCStore, j2k]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('refuses an unknown move destination (0xA801) and reports an unreachable one as failed sub-operations', async () => {
      const unknown = await movescu('-S', 'NOBODY', [
        'QueryRetrieveLevel=STUDY',
        `StudyInstanceUID=${byStow[0].study}`,
      ]);
      expect(unknown.output).toMatch(/Final Move Response \(Refused: MoveDestinationUnknown\)/);
      const down = await movescu('-S', 'DOWN', [
        'QueryRetrieveLevel=STUDY',
        `StudyInstanceUID=${byStow[0].study}`,
      ]);
      expect(down.output).not.toMatch(/Final Move Response \(Success\)/);
      expect(archive.logs.find((l) => l.msg === 'C-MOVE' && l.destination === 'DOWN')).toMatchObject({
        instances: 3,
        completed: 0,
        failed: 3,
      });
      const noKey = await movescu('-S', 'STORESCP', ['QueryRetrieveLevel=STUDY']);
      expect(noKey.output).not.toMatch(/Final Move Response \(Success\)/);
      // Still serving.
      const echo = await run('echoscu', ['-aec', 'PACS', '127.0.0.1', String(archive.dimsePort)]);
      expect(echo.code).toBe(0);
    });
  },
);

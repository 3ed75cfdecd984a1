/**
 * The outbound C-STORE SCU: "send study to AE" (POST /api/studies/{study}/send) and
 * `npm run dimse -- send <folder> <AET@host:port>`, into a dcmtk storescp: every instance arrives with
 * its data set byte for byte as stored (or as in the file), in its own transfer syntax. Errors: unknown
 * AE or study, an AE that does not answer.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJson, type Json, value } from '../e2e/dicomweb';
import { loadSamples } from '../helpers/server';
import { cstoreDataset } from '../../scripts/lib/bench-dimse';
import { freePort } from '../../scripts/lib/net';
import { dimse } from '../../server/dimse/library';
import { VERIFICATION } from '../../server/dimse/negotiation';
import {
  isStored,
  onAssociation,
  READ_AHEAD_MAX_BYTES,
  singleContextAssociation,
  storeInstances,
} from '../../server/dimse/scu';
import { SAMPLES, SAMPLES_MISSING, samplesPresent } from '../samples';
import {
  type Archive,
  DCMTK_MISSING,
  datasetOf,
  dcmtkPresent,
  expectReceivedAsStored,
  receivedBySop,
  metaOf,
  run,
  type StoreScp,
  startArchive,
  startStorescp,
} from './helpers';

const hasDcmtk = await dcmtkPresent();
const TS_FOLDER = path.join(SAMPLES, 'transfer-syntaxes');

describe.skipIf(!samplesPresent || !hasDcmtk)(
  'C-STORE SCU: send a study to an AE, npm run dimse -- send',
  () => {
    let archive: Archive;
    let scp: StoreScp;

    beforeAll(async () => {
      if (!samplesPresent) console.warn(SAMPLES_MISSING);
      if (!hasDcmtk) console.warn(DCMTK_MISSING);
      scp = await startStorescp('FORWARD');
      archive = await startArchive({
        PACS_DIMSE_REMOTE_AES: `FORWARD@127.0.0.1:${scp.port},DOWN@127.0.0.1:${await freePort()}`,
      });
      await loadSamples(
        archive.baseUrl,
        ['1', '2', '3'].map((n) => path.join(SAMPLES, 'vietnamese', `nguyen-van-an-nfc-${n}.dcm`)),
      );
    });
    afterAll(async () => {
      await archive?.close();
      await scp?.close();
    });

    const send = (study: string, body: unknown) =>
      fetch(`${archive.baseUrl}/api/studies/${study}/send`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });

    it('POST /api/studies/{study}/send {"aet"} forwards the study byte for byte', async () => {
      const { json } = await getJson<Json[]>(
        `${archive.dicomweb}/instances?PatientName=nguyen van an&fuzzymatching=true`,
      );
      expect(json).toHaveLength(3);
      const study = value(json[0], '0020000D');
      const res = await send(study, { aet: 'FORWARD' });
      const body = (await res.json()) as Record<string, unknown>;
      expect(res.status, JSON.stringify(body)).toBe(200);
      expect(body).toMatchObject({
        StudyInstanceUID: study,
        aet: 'FORWARD',
        instances: 3,
        sent: 3,
        failed: 0,
      });
      await expectReceivedAsStored(archive.dicomweb, study, json, await receivedBySop(scp.dir));
      expect((await (await fetch(`${archive.baseUrl}/api/dimse`)).json()) as unknown).toMatchObject({
        aeTitle: 'PACS',
        remoteAEs: [{ aet: 'FORWARD', host: '127.0.0.1', port: scp.port }, { aet: 'DOWN' }],
      });
    });

    it('answers 400 for an unknown AE or a missing body, 404 for an unknown study, 502 when the AE is down', async () => {
      const { json } = await getJson<Json[]>(`${archive.dicomweb}/studies`);
      const study = value(json[0], '0020000D');
      expect((await send(study, { aet: 'NOBODY' })).status).toBe(400);
      expect((await send(study, {})).status).toBe(400);
      expect((await send('1.2.3.4.5.404', { aet: 'FORWARD' })).status).toBe(404);
      const down = await send(study, { aet: 'DOWN' });
      expect(down.status).toBe(502);
      const body = (await down.json()) as { failed: number; message: string };
      expect(body.failed).toBe(3);
      expect(body.message).toMatch(/DOWN@127\.0\.0\.1/);
    });

    it('npm run dimse -- send <folder> AET@host:port: every file, in its own transfer syntax, data set as in the file', async () => {
      const cli = await startStorescp('CLI');
      try {
        const inputs = [
          path.join(SAMPLES, 'vietnamese'),
          ...['MR_small_bigendian.dcm', 'image_dfl.dcm', 'JPGExtended.dcm'].map((f) =>
            path.join(TS_FOLDER, f),
          ),
          path.join(SAMPLES, 'us-multiframe', 'OBXXXX1A_rle_2frame.dcm'),
        ];
        const r = await run('node', [
          ...['--import', 'tsx', 'scripts/dimse.ts', 'send', ...inputs],
          ...[`CLI@127.0.0.1:${cli.port}`, '--json', '--associations', '2', '--aet', 'ARCHIVE'],
        ]);
        expect(r.code, r.output).toBe(0);
        const summary = JSON.parse(r.output.slice(r.output.indexOf('{'))) as {
          stored: { path: string; SOPInstanceUID: string }[];
          failed: unknown[];
        };
        expect(summary.failed).toEqual([]);
        expect(summary.stored.length).toBe(20);
        const received = await receivedBySop(cli.dir);
        for (const s of summary.stored) {
          const file = new Uint8Array(
            await readFile(path.isAbsolute(s.path) ? s.path : path.join(process.cwd(), s.path)),
          );
          const got = received.get(s.SOPInstanceUID);
          expect(got, s.path).toBeDefined();
          expect(metaOf(got!).TransferSyntaxUID).toBe(metaOf(file).TransferSyntaxUID);
          const sent = Buffer.from(datasetOf(file));
          // An odd-length (deflated) data set travels with its pad byte (P-DATA fragments are even).
          const expected = sent.length % 2 ? Buffer.concat([sent, Buffer.alloc(1)]) : sent;
          expect(Buffer.compare(Buffer.from(datasetOf(got!)), expected), s.path).toBe(0);
        }
      } finally {
        await cli.close();
      }
      const echo = await run('node', [
        '--import',
        'tsx',
        'scripts/dimse.ts',
        'echo',
        `FORWARD@127.0.0.1:${scp.port}`,
      ]);
      expect(echo.output).toMatch(/C-ECHO FORWARD@127\.0\.0\.1:\d+: success/);
      const unreachable = await run('node', [
        ...[
          '--import',
          'tsx',
          'scripts/dimse.ts',
          'send',
          TS_FOLDER,
          `DOWN@127.0.0.1:${await freePort()}`,
          '--quiet',
        ],
      ]);
      expect(unreachable.code).toBe(2);
      expect(unreachable.output).toMatch(/^cannot send to DOWN@127\.0\.0\.1:\d+: (?!DOWN@)/m);
    });
  },
);

describe.skipIf(!hasDcmtk)('C-STORE SCU: a long association', () => {
  it('sends the last of 1,500 instances as fast as the first ones', async () => {
    if (!hasDcmtk) console.warn(DCMTK_MISSING);
    // storescp --ignore: a real peer that answers each C-STORE at once, so that our side shows.
    const sink = await startStorescp('SINK', ['--ignore'], { TCP_NODELAY: '1' });
    try {
      const instances = cstoreDataset(1500, 4_200_000, 'LONG', 16);
      const at: number[] = [];
      const results = await storeInstances(
        { aet: 'SINK', host: '127.0.0.1', port: sink.port, tls: false },
        instances,
        { callingAETitle: 'PACS', onResult: () => at.push(performance.now()) },
      );
      expect(results.filter((r) => !isStored(r))).toEqual([]);
      // Milliseconds per instance between the n-th and the m-th result.
      const perInstance = (n: number, m: number) => (at[m - 1] - at[n - 1]) / (m - n);
      const start = perInstance(50, 250);
      const end = perInstance(1300, 1500);
      expect(
        end,
        `${start.toFixed(2)} ms per instance from the 50th, ${end.toFixed(2)} from the 1,300th`,
      ).toBeLessThan(Math.max(2 * start, start + 2));
    } finally {
      await sink.close();
    }
  });

  it('reads each data set while the instance before it is in flight, unless it is very large', async () => {
    const sink = await startStorescp('SINK', ['--ignore'], { TCP_NODELAY: '1' });
    try {
      const events: string[] = [];
      const instances = cstoreDataset(20, 4_300_000, 'AHEAD', 16).map((inst, n) => ({
        ...inst,
        // The 12th declares a stored size above the read-ahead limit.
        size: n === 11 ? READ_AHEAD_MAX_BYTES + 1 : inst.size,
        dataset: () => {
          events.push(`read ${n}`);
          return inst.dataset();
        },
      }));
      let done = 0;
      const results = await storeInstances(
        { aet: 'SINK', host: '127.0.0.1', port: sink.port, tls: false },
        instances,
        { callingAETitle: 'PACS', onResult: () => events.push(`stored ${done++}`) },
      );
      expect(results.filter((r) => !isStored(r))).toEqual([]);
      const at = (e: string) => events.indexOf(e);
      for (let n = 1; n < 20; n++) {
        if (n === 11) expect(at('read 11'), events.join(', ')).toBeGreaterThan(at('stored 10'));
        else expect(at(`read ${n}`), events.join(', ')).toBeLessThan(at(`stored ${n - 1}`));
      }
    } finally {
      await sink.close();
    }
  });

  it('gets an answer to each of 66,000 requests on one association (Message IDs wrap after 65,535)', async () => {
    const sink = await startStorescp('SINK', ['--ignore'], { TCP_NODELAY: '1' });
    try {
      const remote = { aet: 'SINK', host: '127.0.0.1', port: sink.port, tls: false };
      const { assoc } = singleContextAssociation('PACS', 'SINK', VERIFICATION);
      const answered = await onAssociation(remote, assoc, async (conn) => {
        let n = 0;
        const deadline = Date.now() + 100_000;
        while (n < 66_000 && Date.now() < deadline) {
          // A request whose response never comes stops the count, not the test.
          const status = await Promise.race([
            conn.request(new dimse.requests.CEchoRequest()),
            new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5000)),
          ]);
          if (status !== 0) break;
          n++;
        }
        return n;
      });
      expect(answered).toBe(66_000);
    } finally {
      await sink.close();
    }
  }, 150_000);
});

/**
 * Who may use the DICOM listener, with sign-in on (PACS_AUTH=on, the default): the server does not start
 * without PACS_DIMSE_ALLOWED_AES; `*` accepts any calling AE (with a warning); otherwise an AE title not
 * listed, or listed with another address than the caller's, is refused (A-ASSOCIATE-RJ, calling AE title
 * not recognized), logged and audited, while the same AE title from its own address is accepted.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/net';
import { runTs } from '../helpers/process';
import { syntheticSeries } from '../../server/synthetic';
import {
  type Archive,
  DCMTK_MISSING,
  dcmtkPresent,
  eventually,
  filesUnder,
  findResponses,
  run,
  type StoreScp,
  startArchive,
  startStorescp,
} from './helpers';
import { associateRQ, RawPeer, releaseRQ } from './pdu';

const hasDcmtk = await dcmtkPresent();

const ADMIN_PASSWORD = 'admin-password-for-dimse-tests';
const ADMIN_TOKEN = 'dimse-access-admin-token-0123456789abcdef';
const SIGNED_IN = { PACS_AUTH: 'on', PACS_ADMIN_PASSWORD: ADMIN_PASSWORD, PACS_ADMIN_TOKEN: ADMIN_TOKEN };
const VERIFICATION = [
  { id: 1, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: ['1.2.840.10008.1.2'] },
];

const echo = (archive: Archive, aet: string) =>
  run('echoscu', ['-v', '-aet', aet, '-aec', 'PACS', '127.0.0.1', String(archive.dimsePort)]);

/** The first PDU the archive answers an A-ASSOCIATE-RQ from `calling` with, sent from localAddress. */
async function associateFrom(archive: Archive, calling: string, localAddress: string) {
  const peer = await RawPeer.connect(archive.dimsePort, localAddress);
  try {
    peer.send(associateRQ(calling, 'PACS', VERIFICATION));
    const answer = await peer.nextPDU();
    if (answer?.type === 0x02) {
      peer.send(releaseRQ());
      await peer.nextPDU();
    }
    return answer;
  } finally {
    peer.destroy();
  }
}

/** A dcmtk query/retrieve tool (study root, STUDY level) with these keys, as `aet`; `extra`: its own options. */
const qrscu = (
  tool: 'findscu' | 'movescu' | 'getscu',
  archive: Archive,
  aet: string,
  keys: string[],
  extra: string[] = [],
) =>
  run(tool, [
    '-v',
    '-S',
    '-aet',
    aet,
    '-aec',
    'PACS',
    ...extra,
    ...['QueryRetrieveLevel=STUDY', ...keys].flatMap((k) => ['-k', k]),
    '127.0.0.1',
    String(archive.dimsePort),
  ]);

type AuditEvent = { user: string; status: number; source: string; detail: string };

/** The association refusals in an archive's audit trail, read as an administrator. */
async function refusals(archive: Archive): Promise<AuditEvent[]> {
  const r = await fetch(`${archive.baseUrl}/api/audit?action=dimse-associate&limit=1000`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { events: AuditEvent[] }).events;
}

describe('DIMSE access: server start', () => {
  it('refuses to start with PACS_DIMSE_PORT and PACS_AUTH on but no PACS_DIMSE_ALLOWED_AES', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-dimse-access-'));
    try {
      const env: Record<string, string | undefined> = { ...process.env };
      for (const k of Object.keys(env)) if (k.startsWith('PACS_')) delete env[k];
      const { code, output } = await runTs('server/main.ts', [], {
        timeoutMs: 30_000,
        env: {
          ...env,
          HOST: '127.0.0.1',
          PORT: String(await freePort()),
          PACS_DATA_DIR: dataDir,
          PACS_DIMSE_PORT: String(await freePort()),
          PACS_ADMIN_PASSWORD: ADMIN_PASSWORD,
        },
      });
      expect(code, output).toBe(2);
      expect(output).toMatch(
        /PACS_DIMSE_ALLOWED_AES: required with PACS_DIMSE_PORT \(the DICOM listener has no sign-in; PACS_AUTH does not cover it\)/,
      );
      expect(output).not.toMatch(/"listening"/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 40_000);
});

describe.skipIf(!hasDcmtk)('DIMSE access with PACS_AUTH=on (echoscu, findscu, raw peers)', () => {
  let listed: Archive;
  let open: Archive;

  beforeAll(async () => {
    if (!hasDcmtk) console.warn(DCMTK_MISSING);
    listed = await startArchive({
      ...SIGNED_IN,
      PACS_DIMSE_ALLOWED_AES: 'CT1@127.0.0.1, FINDSCU, RAW@127.0.0.1',
    });
    open = await startArchive({ ...SIGNED_IN, PACS_DIMSE_ALLOWED_AES: '*' });
  });
  afterAll(async () => {
    await listed?.close();
    await open?.close();
  });

  it('PACS_DIMSE_ALLOWED_AES=*: any calling AE is accepted, and the start says so', async () => {
    for (const aet of ['ANYBODY', 'SOME_WORKSTATION']) {
      const r = await echo(open, aet);
      expect(r.code, r.output).toBe(0);
      expect(r.output).toMatch(/Received Echo Response \(Success\)/);
    }
    expect(
      open.logs.some(
        (l) => l.level === 'warn' && /accepts any calling AE .*PACS_DIMSE_ALLOWED_AES=\*/.test(String(l.msg)),
      ),
    ).toBe(true);
  });

  it('accepts listed AEs and refuses an unlisted one, for C-ECHO and C-FIND alike', async () => {
    const ok = await echo(listed, 'CT1');
    expect(ok.code, ok.output).toBe(0);
    expect(ok.output).toMatch(/Received Echo Response \(Success\)/);
    const intruder = await echo(listed, 'INTRUDER');
    expect(intruder.code).not.toBe(0);
    expect(intruder.output).toMatch(/Association Rejected[\s\S]*Calling AE Title Not Recognized/);
    const find = (aet: string) => qrscu('findscu', listed, aet, ['PatientName']);
    const allowedFind = await find('FINDSCU');
    expect(allowedFind.code, allowedFind.output).toBe(0);
    const refusedFind = await find('INTRUDER');
    expect(refusedFind.code).not.toBe(0);
    expect(refusedFind.output).toMatch(/Association Rejected[\s\S]*Calling AE Title Not Recognized/);
    expect(refusedFind.output).not.toMatch(/Find Response/);
    expect(
      await eventually(
        async () => (await refusals(listed)).filter((e) => e.user === 'AE:INTRUDER').length === 2,
      ),
    ).toBe(true);
    expect((await refusals(listed)).find((e) => e.user === 'AE:INTRUDER')).toMatchObject({
      status: 403,
      source: '127.0.0.1',
      detail: 'association refused: calling AE title not in PACS_DIMSE_ALLOWED_AES',
    });
  });

  it('refuses a listed AE title calling from another address than its own, accepts it from its own', async () => {
    const elsewhere = await associateFrom(listed, 'RAW', '127.0.0.2');
    expect(elsewhere?.type).toBe(0x03); // A-ASSOCIATE-RJ
    // result 1 (rejected-permanent), source 1 (service user), reason 3 (calling AE title not recognized)
    expect([...elsewhere!.body.subarray(1, 4)]).toEqual([1, 1, 3]);
    const home = await associateFrom(listed, 'RAW', '127.0.0.1');
    expect(home?.type).toBe(0x02); // A-ASSOCIATE-AC
    const ct1Elsewhere = await associateFrom(listed, 'CT1', '127.0.0.3');
    expect(ct1Elsewhere?.type).toBe(0x03);

    const rejected = listed.logs.filter(
      (l) => l.msg === 'association rejected' && l.callingAETitle === 'RAW',
    );
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({
      level: 'warn',
      reason:
        'calling AE title RAW is allowed only from 127.0.0.1 (PACS_DIMSE_ALLOWED_AES), not from 127.0.0.2',
    });
    expect(String(rejected[0].dimse)).toMatch(/^127\.0\.0\.2:/);

    // The refusals are in the audit trail, with the caller's address.
    expect(await eventually(async () => (await refusals(listed)).some((e) => e.user === 'AE:CT1'))).toBe(
      true,
    );
    const events = await refusals(listed);
    expect(events.find((e) => e.user === 'AE:RAW')).toMatchObject({
      status: 403,
      source: '127.0.0.2',
      detail: expect.stringMatching(
        /association refused: calling AE title RAW is allowed only from 127\.0\.0\.1/,
      ),
    });
    expect(events.find((e) => e.user === 'AE:CT1')).toMatchObject({ status: 403, source: '127.0.0.3' });
  });
});

describe.skipIf(!hasDcmtk)('DIMSE connections before any association', () => {
  let bound: Archive;
  beforeAll(async () => {
    bound = await startArchive({ ...SIGNED_IN, PACS_DIMSE_ALLOWED_AES: 'RAW@127.0.0.1' });
  });
  afterAll(async () => bound?.close());

  /** Whether the archive closed the connection within ms, having sent nothing. */
  async function closedAtOnce(peer: RawPeer, ms = 3000): Promise<boolean> {
    const timer = new Promise<false>((resolve) => setTimeout(() => resolve(false), ms));
    return Promise.race([peer.closed.then(() => true as const), timer]);
  }

  it('closes a connection from an address no allowed AE may call from, before reading anything', async () => {
    const stranger = await RawPeer.connect(bound.dimsePort, '127.0.0.5');
    expect(await closedAtOnce(stranger)).toBe(true);
    expect((await associateFrom(bound, 'RAW', '127.0.0.1'))?.type).toBe(0x02);
    expect(bound.logs.some((l) => l.msg === 'DICOM connection refused' && l.source === '127.0.0.5')).toBe(
      true,
    );
  });

  it('closes a connection whose PDU declares more than it may, before gathering it', async () => {
    const peer = await RawPeer.connect(bound.dimsePort, '127.0.0.1');
    const header = Buffer.alloc(6);
    header[0] = 0x01; // A-ASSOCIATE-RQ of almost 4 GiB
    header.writeUInt32BE(0xfffffff0, 2);
    peer.send(Buffer.concat([header, Buffer.alloc(64 * 1024)]));
    expect(await closedAtOnce(peer)).toBe(true);
    expect(
      bound.logs.some(
        (l) => l.msg === 'DICOM connection closed' && /declares 4294967280 bytes/.test(String(l.reason)),
      ),
    ).toBe(true);
  });

  it('holds at most 32 connections from one address: idle ones cannot fill the listener', async () => {
    const idle: RawPeer[] = [];
    try {
      for (let i = 0; i < 32; i++) idle.push(await RawPeer.connect(bound.dimsePort, '127.0.0.1'));
      const extra = await RawPeer.connect(bound.dimsePort, '127.0.0.1');
      expect(await closedAtOnce(extra)).toBe(true);
      for (const p of idle.splice(0, 4)) p.destroy();
      await new Promise((r) => setTimeout(r, 200));
      expect((await associateFrom(bound, 'RAW', '127.0.0.1'))?.type).toBe(0x02);
    } finally {
      for (const p of idle) p.destroy();
    }
  });
});

describe.skipIf(!hasDcmtk)('DIMSE services per AE (PACS_DIMSE_ALLOWED_AES AET=services)', () => {
  let archive: Archive;
  let scp: StoreScp;
  let dir: string;
  let ct: string[];
  let ws: string[];

  beforeAll(async () => {
    scp = await startStorescp('DEST');
    archive = await startArchive({
      ...SIGNED_IN,
      // A modality that only stores, and a workstation that queries and pulls but may not store nor C-GET.
      PACS_DIMSE_ALLOWED_AES: 'CT1@127.0.0.1=store,WS1@127.0.0.1=find+move',
      PACS_DIMSE_REMOTE_AES: `DEST@127.0.0.1:${scp.port}`,
    });
    dir = await mkdtemp(path.join(tmpdir(), 'pacs-dimse-services-'));
    const write = async (name: string, files: Iterable<Uint8Array>) =>
      Promise.all(
        [...files].map(async (f, i) => {
          const file = path.join(dir, `${name}-${i}.dcm`);
          await writeFile(file, f);
          return file;
        }),
      );
    ct = await write(
      'ct',
      syntheticSeries({ patientName: 'Services^CT', patientId: 'SVC1', instances: 2, seed: 71 }),
    );
    ws = await write(
      'ws',
      syntheticSeries({ patientName: 'Services^WS', patientId: 'SVC2', instances: 1, seed: 72 }),
    );
  });
  afterAll(async () => {
    await archive?.close();
    await scp?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const port = () => String(archive.dimsePort);
  const instances = async () => {
    const r = await fetch(`${archive.dicomweb}/instances?limit=1000`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    return ((await r.json()) as unknown[]).length;
  };
  const find = (aet: string) => qrscu('findscu', archive, aet, ['PatientID=SVC1']);
  /** C-MOVE and C-GET name the study by its UID (the unique key of the study level). */
  let study = '';
  const move = (aet: string) =>
    qrscu('movescu', archive, aet, [`StudyInstanceUID=${study}`], ['-aem', 'DEST']);
  const refused = async (aet: string, action: string) => {
    const r = await fetch(
      `${archive.baseUrl}/api/audit?user=AE:${aet}&action=${action}&result=403&limit=100`,
      {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      },
    );
    return ((await r.json()) as { events: AuditEvent[] }).events;
  };

  it('a modality given =store stores, and may not search nor pull back (0x0124, audited)', async () => {
    const stored = await run('storescu', ['-v', '-aet', 'CT1', '-aec', 'PACS', '127.0.0.1', port(), ...ct]);
    expect(stored.code, stored.output).toBe(0);
    expect(await instances()).toBe(2);
    const r = await fetch(`${archive.dicomweb}/studies?PatientID=SVC1`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    study = ((await r.json()) as Record<string, { Value: string[] }>[])[0]['0020000D'].Value[0];

    const f = await find('CT1');
    expect(f.output).toMatch(/Final Find Response \((Unknown Status: 0x124|Refused: NotAuthorized)\)/);
    expect(findResponses(f.output)).toEqual([]);
    const m = await move('CT1');
    expect(m.output).toMatch(/Final Move Response \((Unknown Status: 0x124|Refused: NotAuthorized)\)/);
    expect(await scp.files()).toEqual([]);
    expect(archive.logs).toContainEqual(
      expect.objectContaining({
        msg: 'C-FIND refused',
        reason: 'CT1 may not find (PACS_DIMSE_ALLOWED_AES gives it store)',
      }),
    );
    expect(await eventually(async () => (await refused('CT1', 'search')).length === 1)).toBe(true);
    expect((await refused('CT1', 'retrieve'))[0]).toMatchObject({
      status: 403,
      detail: 'C-MOVE refused: CT1 may not move (PACS_DIMSE_ALLOWED_AES gives it store)',
    });
  });

  it('a workstation given =find+move searches and pulls, and may neither store nor C-GET', async () => {
    const f = await find('WS1');
    expect(f.code, f.output).toBe(0);
    expect(findResponses(f.output)).toHaveLength(1);
    const m = await move('WS1');
    expect(m.code, m.output).toBe(0);
    expect(m.output).toMatch(/Received Final Move Response \(Success\)/);
    expect(await eventually(async () => (await scp.files()).length === 2)).toBe(true);

    const s = await run('storescu', ['-v', '-aet', 'WS1', '-aec', 'PACS', '127.0.0.1', port(), ...ws]);
    expect(s.output).toMatch(/Store Response \((Unknown Status: 0x124|Refused: NotAuthorized)\)/);
    expect(await instances()).toBe(2); // nothing of WS1's was stored
    const getDir = await mkdtemp(path.join(tmpdir(), 'pacs-dimse-services-get-'));
    try {
      const g = await qrscu('getscu', archive, 'WS1', [`StudyInstanceUID=${study}`], ['-od', getDir]);
      expect(g.output).toMatch(/Received C-GET Response \((Unknown Status: 0x124|Refused: NotAuthorized)\)/);
      expect(await filesUnder(getDir)).toEqual([]);
    } finally {
      await rm(getDir, { recursive: true, force: true });
    }
    expect(await eventually(async () => (await refused('WS1', 'store')).length === 1)).toBe(true);
    expect((await refused('WS1', 'retrieve'))[0]).toMatchObject({
      status: 403,
      detail: 'C-GET refused: WS1 may not get (PACS_DIMSE_ALLOWED_AES gives it find+move)',
    });
  });
});

/**
 * Association handling: C-ECHO (echoscu), the allow-list of calling AE titles and the called AE title,
 * presentation context negotiation read off the wire (accepted, abstract syntax or transfer syntaxes not
 * supported), a C-STORE of an unsupported SOP Class (storescu), a data set the archive refuses, malformed
 * PDUs, and associations aborted in the middle of a data set: nothing half-stored, and the listener goes
 * on serving after each.
 */
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJson, type Json } from '../e2e/dicomweb';
import { SAMPLES, SAMPLES_MISSING, samplesPresent } from '../samples';
import {
  type Archive,
  DCMTK_MISSING,
  datasetOf,
  dcmtkPresent,
  eventually,
  filesUnder,
  retrieveInstance,
  run,
  startArchive,
  storescuConfig,
} from './helpers';
import { abortPDU, associateRQ, contextResults, cStoreCommand, pData, RawPeer, releaseRQ } from './pdu';

const hasDcmtk = await dcmtkPresent();

const CT = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';
const IMPLICIT = '1.2.840.10008.1.2';
const J2K_LOSSLESS = '1.2.840.10008.1.2.4.90';
const FILE = path.join(SAMPLES, 'vietnamese', 'le-hoang-nam-2.dcm');

describe.skipIf(!samplesPresent || !hasDcmtk)('DIMSE associations (echoscu, storescu, raw PDUs)', () => {
  let archive: Archive;
  let sop: string;
  let dataset: Buffer;

  beforeAll(async () => {
    if (!samplesPresent) console.warn(SAMPLES_MISSING);
    if (!hasDcmtk) console.warn(DCMTK_MISSING);
    archive = await startArchive({ PACS_DIMSE_ALLOWED_AES: 'ECHOSCU, STORESCU,RAWPEER' });
    const bytes = new Uint8Array(await readFile(FILE));
    dataset = Buffer.from(datasetOf(bytes));
    const dump = await run('dcmdump', ['+P', 'SOPInstanceUID', FILE]);
    sop = /\[([0-9.]+)\]/.exec(dump.output)![1];
  });
  afterAll(async () => {
    await archive?.close();
  });

  const echo = (aet: string, aec = 'PACS') =>
    run('echoscu', ['-v', '-aet', aet, '-aec', aec, '127.0.0.1', String(archive.dimsePort)]);

  async function stillServing() {
    const r = await echo('ECHOSCU');
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/Received Echo Response \(Success\)/);
  }

  async function associate(contexts: Parameters<typeof associateRQ>[2], calling = 'RAWPEER') {
    const peer = await RawPeer.connect(archive.dimsePort);
    peer.send(associateRQ(calling, 'PACS', contexts));
    const ac = await peer.nextPDU();
    return { peer, ac };
  }

  it('GET /api/dimse shows the port the listener is bound to (PACS_DIMSE_PORT=0: the one the OS picked), which answers C-ECHO', async () => {
    const gateway = (await (await fetch(`${archive.baseUrl}/api/dimse`)).json()) as Record<string, unknown>;
    expect(gateway).toMatchObject({ aeTitle: 'PACS', port: archive.dimsePort, tlsPort: null });
    expect(gateway.port).toBeGreaterThan(0);
    const r = await run('echoscu', ['-aet', 'ECHOSCU', '-aec', 'PACS', '127.0.0.1', String(gateway.port)]);
    expect(r.code, r.output).toBe(0);
  });

  it('answers C-ECHO; refuses a calling AE outside the allow-list and a wrong called AE', async () => {
    await stillServing();
    const intruder = await echo('INTRUDER');
    expect(intruder.code).not.toBe(0);
    expect(intruder.output).toMatch(/Association Rejected[\s\S]*Calling AE Title Not Recognized/);
    const wrongCalled = await echo('ECHOSCU', 'ANY-SCP');
    expect(wrongCalled.output).toMatch(/Association Rejected[\s\S]*Called AE Title Not Recognized/);
    const rejected = archive.logs.filter((l) => l.msg === 'association rejected');
    expect(rejected.map((l) => l.callingAETitle)).toEqual(['INTRUDER', 'ECHOSCU']);
    expect(
      await eventually(() =>
        archive.logs.some((l) => l.msg === 'association ended' && l.outcome === 'released'),
      ),
    ).toBe(true);
  });

  it('negotiates presentation contexts: accepts what it supports, rejects unknown SOP classes and transfer syntaxes', async () => {
    const { peer, ac } = await associate([
      { id: 1, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: [EXPLICIT] },
      { id: 3, abstractSyntax: CT, transferSyntaxes: [J2K_LOSSLESS, EXPLICIT] },
      { id: 5, abstractSyntax: CT, transferSyntaxes: ['1.2.840.10008.1.2.6.1', '1.2.3.4.5'] },
      { id: 7, abstractSyntax: '1.2.826.0.1.3680043.9.9999.1', transferSyntaxes: [EXPLICIT] },
      { id: 9, abstractSyntax: '1.2.840.10008.5.1.4.1.2.1.1', transferSyntaxes: [IMPLICIT] },
      { id: 11, abstractSyntax: '1.2.840.10008.5.1.4.31', transferSyntaxes: [EXPLICIT] },
    ]);
    expect(ac?.type).toBe(0x02);
    const results = contextResults(ac!.body);
    expect(results.get(1)).toEqual({ result: 0, transferSyntax: EXPLICIT });
    expect(results.get(3)).toEqual({ result: 0, transferSyntax: J2K_LOSSLESS }); // the proposer's first choice
    expect(results.get(5)?.result).toBe(4); // transfer syntaxes not supported
    expect(results.get(7)?.result).toBe(3); // abstract syntax not supported
    expect(results.get(9)).toEqual({ result: 0, transferSyntax: IMPLICIT });
    expect(results.get(11)?.result).toBe(3); // modality worklist: not offered
    // A C-STORE sent anyway on the refused context: its data set is discarded, 0x0122 (SOP Class not supported).
    peer.send(pData(7, true, true, cStoreCommand('1.2.826.0.1.3680043.9.9999.1', '1.2.3.4.5.6.7.9')));
    peer.send(pData(7, false, true, dataset));
    const rsp = await peer.nextPDU();
    expect(commandStatus(rsp!.body)).toBe(0x0122);
    // And one whose command names another SOP Class than its context's.
    peer.send(pData(3, true, true, cStoreCommand('1.2.840.10008.5.1.4.1.1.4', '1.2.3.4.5.6.7.9')));
    peer.send(pData(3, false, true, dataset));
    expect(commandStatus((await peer.nextPDU())!.body)).toBe(0x0122);
    peer.send(releaseRQ());
    expect((await peer.nextPDU())?.type).toBe(0x06);
    peer.destroy();
  });

  it('C-STORE of a private SOP Class (storescu): no presentation context, nothing stored', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pacs-private-'));
    try {
      const file = path.join(dir, 'private.dcm');
      await copyFile(FILE, file);
      const mod = await run('dcmodify', ['-nb', '-m', '(0008,0016)=1.2.826.0.1.3680043.9.9999.1', file]);
      expect(mod.code, mod.output).toBe(0);
      // storescu refuses unknown SOP classes itself unless a configuration file proposes them.
      const config = await storescuConfig(dir, [['1.2.826.0.1.3680043.9.9999.1', EXPLICIT]]);
      const r = await run('storescu', [
        ...['-v', '-xf', config, 'Samples', '-aec', 'PACS'],
        ...['127.0.0.1', String(archive.dimsePort), file],
      ]);
      expect(r.output).toMatch(/No presentation context for|No Acceptable Presentation Contexts/);
      const { json } = await getJson<Json[]>(`${archive.dicomweb}/instances?SOPInstanceUID=${sop}`);
      expect(json).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('data sets it refuses get a failure status (0xC000) and the association goes on', async () => {
    const { peer, ac } = await associate([{ id: 1, abstractSyntax: CT, transferSyntaxes: [EXPLICIT] }]);
    expect(contextResults(ac!.body).get(1)?.result).toBe(0);
    // Unreadable from its first bytes, followed by 5 MB more (beyond the receive buffer): the rest is
    // drained and the refusal comes once the data set has been received.
    peer.send(pData(1, true, true, cStoreCommand(CT, '1.2.3.4.5.6.7.8', 1)));
    peer.send(
      pData(1, false, false, Buffer.from([0x08, 0x00, 0x16, 0x00, 0x55, 0x49, 0x04, 0x00, 0x31, 0x2e])),
    );
    for (let i = 0; i < 320; i++) peer.send(pData(1, false, i === 319, Buffer.alloc(16_000, 0xab)));
    let rsp = await peer.nextPDU(20_000);
    expect(rsp?.type).toBe(0x04);
    expect(commandStatus(rsp!.body)).toBe(0xc000);
    // A readable data set whose SOP Instance UID is not the command's Affected SOP Instance UID.
    peer.send(pData(1, true, true, cStoreCommand(CT, '1.2.3.4.5.6.7.8', 2)));
    peer.send(pData(1, false, true, dataset));
    rsp = await peer.nextPDU();
    expect(commandStatus(rsp!.body)).toBe(0xc000);
    expect(
      archive.logs.some(
        (l) =>
          l.msg === 'C-STORE failed' && /does not match the Affected SOP Instance/.test(String(l.reason)),
      ),
    ).toBe(true);
    peer.send(releaseRQ());
    expect((await peer.nextPDU())?.type).toBe(0x06);
    peer.destroy();
  });

  it('malformed PDUs: the connection is dropped and the listener goes on serving', async () => {
    const valid = associateRQ('RAWPEER', 'PACS', [
      { id: 1, abstractSyntax: CT, transferSyntaxes: [EXPLICIT] },
    ]);
    const overrun = Buffer.from(valid);
    overrun.writeUInt16BE(0xfff0, 6 + 68 + 2); // the application context item claims 65,520 bytes
    const cases: [string, Buffer][] = [
      ['unknown PDU type', Buffer.from([0x09, 0, 0, 0, 0, 4, 1, 2, 3, 4])],
      ['A-ASSOCIATE-RQ with an item overrunning the PDU', overrun],
      ['P-DATA-TF before any association', pData(1, true, true, cStoreCommand(CT, '1.2.3'))],
      ['random bytes', Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 7919 + 13) % 251))],
    ];
    for (const [name, bytes] of cases) {
      const peer = await RawPeer.connect(archive.dimsePort);
      peer.send(bytes);
      const closed = await Promise.race([
        peer.closed.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
      ]);
      expect(closed, name).toBe(true);
      await stillServing();
    }
    // A PDU announcing 2 GB, then the peer goes away: nothing kept, still serving.
    const big = await RawPeer.connect(archive.dimsePort);
    big.send(Buffer.from([0x04, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0]));
    big.destroy();
    await stillServing();
  });

  it('an association aborted in the middle of a data set stores nothing; the same instance then stores fine', async () => {
    const half = dataset.subarray(0, Math.floor(dataset.length / 2));
    for (const end of ['A-ABORT', 'connection reset'] as const) {
      const { peer, ac } = await associate([{ id: 1, abstractSyntax: CT, transferSyntaxes: [EXPLICIT] }]);
      expect(contextResults(ac!.body).get(1)?.result).toBe(0);
      peer.send(pData(1, true, true, cStoreCommand(CT, sop)));
      for (let at = 0; at < half.length; at += 16_000)
        peer.send(pData(1, false, false, half.subarray(at, Math.min(half.length, at + 16_000))));
      await new Promise((r) => setTimeout(r, 200));
      if (end === 'A-ABORT') peer.send(abortPDU());
      peer.destroy();
      await peer.closed;
    }
    expect(
      await eventually(
        () =>
          archive.logs.filter((l) => l.msg === 'C-STORE not completed' && l.sopInstanceUID === sop).length ===
          2,
      ),
    ).toBe(true);
    const { json } = await getJson<Json[]>(`${archive.dicomweb}/instances?SOPInstanceUID=${sop}`);
    expect(json).toEqual([]);
    expect(await filesUnder(path.join(archive.dataDir, 'blobs'))).toEqual([]);
    await stillServing();

    const r = await run('storescu', ['-v', '-aec', 'PACS', '127.0.0.1', String(archive.dimsePort), FILE]);
    expect(r.output).toMatch(/Received Store Response \(Success\)/);
    const stored = await getJson<Json[]>(`${archive.dicomweb}/instances?SOPInstanceUID=${sop}`);
    expect(stored.json).toHaveLength(1);
    const v = (tag: string) => stored.json[0][tag]?.Value?.[0] as string;
    const got = await retrieveInstance(archive.dicomweb, v('0020000D'), v('0020000E'), sop);
    expect(Buffer.compare(Buffer.from(datasetOf(new Uint8Array(got!))), dataset)).toBe(0);
  });
});

/** Status (0000,0900) of the command in a P-DATA-TF body. */
function commandStatus(body: Buffer): number | undefined {
  const value = body.subarray(6, 4 + body.readUInt32BE(0));
  for (let pos = 0; pos + 8 <= value.length; ) {
    const element = value.readUInt16LE(pos + 2);
    const length = value.readUInt32LE(pos + 4);
    if (element === 0x0900) return value.readUInt16LE(pos + 8);
    pos += 8 + length;
  }
  return undefined;
}

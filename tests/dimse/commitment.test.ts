/**
 * Storage commitment with a requester that keeps its association open for the report (PS3.4 J.3.3: the
 * report then comes on that association), and with one that releases it but whose AE title the archive
 * cannot reach (not in PACS_DIMSE_REMOTE_AES: the report is not sent, and the log says why). The peer
 * is dcmjs-dimse's own client, an N-ACTION SCU that stays associated for a while after its last
 * response (Orthanc, which releases at once and takes the report on a new association, is covered by
 * tests/orthanc-dimse-peer.test.ts). One instance is stored first with dcmtk storescu. A request that
 * reuses the Transaction UID of one whose report is still to be sent fails with 0x0131 (PS3.3 C.14.1.1).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/net';
import { dimse } from '../../server/dimse/library';
import { SAMPLES, samplesPresent } from '../samples';
import { type Archive, dcmtkPresent, eventually, run, startArchive } from './helpers';

const hasDcmtk = await dcmtkPresent();

const SC = '1.2.840.10008.1.20.1';
const SC_INSTANCE = '1.2.840.10008.1.20.1.1';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const FILE = path.join(SAMPLES, 'transfer-syntaxes', 'MR_small_implicit.dcm');

interface Outcome {
  /** Status of the N-ACTION-RSP. */
  actionStatus?: number;
  /** The N-EVENT-REPORT-RQ received on the association, if any. */
  report?: { eventTypeId: number; elements: Record<string, unknown> };
}

/**
 * Asks for storage commitment as `aet` and stays associated lingerMs after the N-ACTION-RSP (the
 * client's association linger), answering an N-EVENT-REPORT that comes meanwhile.
 */
function requestCommitment(
  port: number,
  aet: string,
  elements: Record<string, unknown>,
  lingerMs: number,
): Promise<Outcome> {
  const outcome: Outcome = {};
  const client = new dimse.Client();
  const request = new dimse.requests.NActionRequest(SC, SC_INSTANCE, 1);
  request.setDataset(new dimse.Dataset(elements, '1.2.840.10008.1.2.1'));
  request.on('response', (r: { getStatus(): number }) => {
    outcome.actionStatus = r.getStatus();
  });
  client.addRequest(request);
  client.on('nEventReportRequest', (rq, respond) => {
    outcome.report = { eventTypeId: rq.getEventTypeId(), elements: rq.getDataset()?.getElements() ?? {} };
    const rsp = dimse.responses.NEventReportResponse.fromRequest(rq);
    rsp.setStatus(0);
    respond(rsp);
  });
  return new Promise((resolve, reject) => {
    client.on('closed', () => resolve(outcome));
    client.on('networkError', reject);
    client.send('127.0.0.1', port, aet, 'PACS', { associationLingerTimeout: lingerMs });
  });
}

describe.skipIf(!samplesPresent || !hasDcmtk)('storage commitment (dcmjs-dimse client as the SCU)', () => {
  let archive: Archive;
  let sop: string;

  beforeAll(async () => {
    archive = await startArchive({
      PACS_DIMSE_ALLOWED_AES: 'STORESCU,MODALITY,FORGOTTEN,LATE',
      // LATE takes its reports on a port where nothing listens: its report is tried again and again.
      PACS_DIMSE_REMOTE_AES: `LATE@127.0.0.1:${await freePort()}`,
    });
    const r = await run('storescu', [
      '-aet',
      'STORESCU',
      '-aec',
      'PACS',
      '127.0.0.1',
      String(archive.dimsePort),
      FILE,
    ]);
    expect(r.code, r.output).toBe(0);
    const dump = await run('dcmdump', ['+P', 'SOPInstanceUID', FILE]);
    sop = /\[([0-9.]+)\]/.exec(dump.output)?.[1] ?? '';
  });
  afterAll(async () => {
    await archive?.close();
  });

  it('a requester that keeps its association open gets the report on it', async () => {
    const outcome = await requestCommitment(
      archive.dimsePort,
      'MODALITY',
      {
        TransactionUID: '2.25.4242',
        ReferencedSOPSequence: [
          { ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop },
          { ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: '1.2.3.4.5.6.7.8.9' },
        ],
      },
      2_000,
    );
    expect(outcome.actionStatus).toBe(0);
    expect(outcome.report?.eventTypeId).toBe(2);
    expect(outcome.report?.elements).toMatchObject({
      TransactionUID: '2.25.4242',
      ReferencedSOPSequence: [
        { ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop, RetrieveAETitle: 'PACS' },
      ],
      FailedSOPSequence: [
        { ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: '1.2.3.4.5.6.7.8.9', FailureReason: 0x0112 },
      ],
    });
    expect(archive.logs).toContainEqual(
      expect.objectContaining({
        msg: 'storage commitment report sent',
        callingAETitle: 'MODALITY',
        transactionUID: '2.25.4242',
        association: 'same',
      }),
    );
  });

  it('a request without a Transaction UID is refused (0x0120); a requester the archive cannot call back is logged', async () => {
    const refused = await requestCommitment(
      archive.dimsePort,
      'MODALITY',
      { ReferencedSOPSequence: [{ ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop }] },
      0,
    );
    expect(refused).toEqual({ actionStatus: 0x0120 });
    expect(archive.logs).toContainEqual(
      expect.objectContaining({ msg: 'storage commitment request refused', status: '0x0120' }),
    );
    // FORGOTTEN releases its association at once and is not in PACS_DIMSE_REMOTE_AES.
    const released = await requestCommitment(
      archive.dimsePort,
      'FORGOTTEN',
      {
        TransactionUID: '2.25.4243',
        ReferencedSOPSequence: [{ ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop }],
      },
      0,
    );
    expect(released).toEqual({ actionStatus: 0 });
    const notSent = (l: Record<string, unknown>) =>
      l.transactionUID === '2.25.4243' && String(l.msg).startsWith('storage commitment report not sent');
    expect(await eventually(() => archive.logs.some(notSent))).toBe(true);
    expect(archive.logs.find(notSent)).toMatchObject({ level: 'error', callingAETitle: 'FORGOTTEN' });
    expect(String(archive.logs.find(notSent)?.msg)).toMatch(/FORGOTTEN is not in PACS_DIMSE_REMOTE_AES/);
  });

  it('a request reusing the Transaction UID of one not reported yet: every instance fails with 0x0131, the first goes on', async () => {
    const request = {
      TransactionUID: '2.25.4244',
      ReferencedSOPSequence: [{ ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop }],
    };
    expect(await requestCommitment(archive.dimsePort, 'LATE', request, 0)).toEqual({ actionStatus: 0 });
    // LATE's report cannot be delivered yet: its Transaction UID is still in use.
    const retrying = (l: Record<string, unknown>) =>
      l.msg === 'storage commitment report failed, trying again' && l.transactionUID === '2.25.4244';
    expect(await eventually(() => archive.logs.some(retrying))).toBe(true);
    const duplicate = await requestCommitment(archive.dimsePort, 'MODALITY', request, 2_000);
    // Received (0000); the refusal is in the report, as a Failure Reason.
    expect(duplicate.actionStatus).toBe(0);
    expect(duplicate.report?.eventTypeId).toBe(2);
    expect(duplicate.report?.elements).toMatchObject({
      TransactionUID: '2.25.4244',
      FailedSOPSequence: [
        { ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop, FailureReason: 0x0131 },
      ],
    });
    expect(duplicate.report?.elements.ReferencedSOPSequence).toBeUndefined();
    expect(archive.logs).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'storage commitment: Transaction UID already in use by a request not reported yet',
        callingAETitle: 'MODALITY',
        transactionUID: '2.25.4244',
      }),
    );
    const audit = await fetch(
      `${archive.baseUrl}/api/audit?action=storage-commitment&user=AE:MODALITY&limit=100`,
    );
    expect(((await audit.json()) as { events: { status: number; detail: string }[] }).events).toContainEqual(
      expect.objectContaining({ status: 409, detail: 'Storage commitment 2.25.4244: 0 committed, 1 failed' }),
    );
    // LATE's own transaction is still being reported, untouched.
    expect(
      archive.logs.filter(
        (l) =>
          String(l.msg).startsWith('storage commitment report not sent') && l.transactionUID === '2.25.4244',
      ),
    ).toEqual([]);
    // Once reported, a Transaction UID is no longer in use (PS3.4 J.3.3.1.2): nothing else is kept.
    const reported = { ...request, TransactionUID: '2.25.4245' };
    for (let i = 0; i < 2; i++)
      expect(await requestCommitment(archive.dimsePort, 'MODALITY', reported, 2_000)).toMatchObject({
        actionStatus: 0,
        report: { eventTypeId: 1, elements: { ReferencedSOPSequence: [{ ReferencedSOPInstanceUID: sop }] } },
      });
  });
});

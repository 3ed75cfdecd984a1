/**
 * Storage commitment with a requester that keeps its association open for the report (PS3.4 J.3.3: the
 * report then comes on that association), and with one that releases it but whose AE title the archive
 * cannot reach (not in PACS_DIMSE_REMOTE_AES: the report is not sent, and the log says why). The peer
 * is dcmjs-dimse's own client, an N-ACTION SCU that stays associated for a while after its last
 * response (Orthanc, which releases at once and takes the report on a new association, is covered by
 * tests/orthanc-dimse-peer.test.ts). One instance is stored first with dcmtk storescu. A request that
 * reuses the Transaction UID of one whose report is still to be sent fails with 0x0131 (PS3.3 C.14.1.1).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net, { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ArchiveProcess, startArchive as startArchiveProcess } from '../../scripts/lib/archive-process';
import { freePort } from '../../scripts/lib/net';
import { stowInstances, syntheticInstances } from '../../scripts/lib/reliability';
import { dimse } from '../../server/dimse/library';
import { CT_IMAGE_STORAGE } from '../../server/synthetic';
import { SAMPLES, samplesPresent } from '../samples';
import { type Archive, dcmtkPresent, eventually, run, startArchive, waitForPort } from './helpers';

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

/** Stores FILE into the archive's DICOM port with dcmtk's storescu, as STORESCU. */
async function storeFile(port: number): Promise<void> {
  const r = await run('storescu', ['-aet', 'STORESCU', '-aec', 'PACS', '127.0.0.1', String(port), FILE]);
  expect(r.code, r.output).toBe(0);
}

/**
 * A request reusing a Transaction UID still in use: received (0000), and its report fails the instance
 * with 0x0131 (Duplicate transaction UID) and commits nothing; the archive logs a warning.
 */
function expectDuplicateRefused(
  duplicate: Outcome,
  transactionUID: string,
  sop: string,
  logs: Record<string, unknown>[],
  callingAETitle?: string,
): void {
  expect(duplicate).toMatchObject({
    actionStatus: 0,
    report: {
      eventTypeId: 2,
      elements: {
        TransactionUID: transactionUID,
        FailedSOPSequence: [
          { ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop, FailureReason: 0x0131 },
        ],
      },
    },
  });
  expect(duplicate.report?.elements.ReferencedSOPSequence).toBeUndefined();
  expect(logs).toContainEqual(
    expect.objectContaining({
      level: 'warn',
      msg: 'storage commitment: Transaction UID already in use by a request not reported yet',
      transactionUID,
      ...(callingAETitle ? { callingAETitle } : {}),
    }),
  );
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
    await storeFile(archive.dimsePort);
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
    expectDuplicateRefused(duplicate, '2.25.4244', sop, archive.logs, 'MODALITY');
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

interface Report {
  eventTypeId: number;
  elements: Record<string, unknown>;
}

/**
 * The requester's own SCP, where it takes storage commitment reports on an association the archive
 * opens (Orthanc and most modalities): dcmjs-dimse's Server, accepting the Storage Commitment Push Model
 * and answering each N-EVENT-REPORT with success. roleSelection false: it returns no SCP/SCU Role
 * Selection item, so the archive stays in the default SCU role (PS3.7 D.3.3.4).
 */
async function startRequesterScp(
  port: number,
  opts: { roleSelection?: boolean } = {},
): Promise<{ reports: Report[]; close(): void }> {
  const reports: Report[] = [];
  class RequesterScp extends dimse.Scp {
    declare association: InstanceType<typeof dimse.association.Association> | undefined;
    constructor(socket: Socket, o: unknown) {
      super(socket, o as never);
      this.association = undefined;
    }
    override associationRequested(association: InstanceType<typeof dimse.association.Association>) {
      this.association = association;
      for (const { context } of association.getPresentationContexts()) {
        if (context.getAbstractSyntaxUid() === SC)
          context.setResult(
            dimse.constants.PresentationContextResult.Accept,
            context.getTransferSyntaxUids()[0],
          );
        else context.setResult(dimse.constants.PresentationContextResult.RejectAbstractSyntaxNotSupported);
        if (opts.roleSelection === false) {
          context.setUserRole(undefined as unknown as boolean);
          context.setProviderRole(undefined as unknown as boolean);
        }
      }
      this.sendAssociationAccept();
    }
    override nEventReportRequest(
      request: InstanceType<typeof dimse.requests.NEventReportRequest>,
      callback: (r: InstanceType<typeof dimse.responses.NEventReportResponse>) => void,
    ) {
      reports.push({
        eventTypeId: request.getEventTypeId(),
        elements: request.getDataset()?.getElements() ?? {},
      });
      const rsp = dimse.responses.NEventReportResponse.fromRequest(request);
      rsp.setStatus(0);
      callback(rsp);
    }
    override associationReleaseRequested() {
      this.sendAssociationReleaseResponse();
    }
  }
  const server = new dimse.Server(RequesterScp as never);
  server.listen(port);
  await waitForPort(port);
  return { reports, close: () => server.close() };
}

/** The pending storage commitment requests an archive's SQLite index holds. */
function pendingRows(dataDir: string): { transaction_uid: string; attempts: number; last_error: string }[] {
  const db = new Database(path.join(dataDir, 'index.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT * FROM commitments').all() as never;
  } finally {
    db.close();
  }
}

describe.skipIf(!samplesPresent || !hasDcmtk)('storage commitment reports kept until delivered', () => {
  const dirs: string[] = [];
  const open: { close(): unknown }[] = [];
  let sop: string;
  beforeAll(async () => {
    const dump = await run('dcmdump', ['+P', 'SOPInstanceUID', FILE]);
    sop = /\[([0-9.]+)\]/.exec(dump.output)?.[1] ?? '';
  });
  afterAll(async () => {
    for (const o of open.reverse()) await o.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const dataDir = async () => {
    const d = await mkdtemp(path.join(tmpdir(), 'pacs-commit-'));
    dirs.push(d);
    return d;
  };
  /** An archive on dir whose attempts at a report come every second. */
  const archiveOn = async (dir: string, env: Record<string, string>) => {
    const a = await startArchive(
      { PACS_DIMSE_ALLOWED_AES: 'STORESCU,MODALITY,REQUESTER', PACS_DIMSE_COMMIT_MAX_WAIT: '1', ...env },
      { dataDir: dir },
    );
    open.push(a);
    return a;
  };
  const store = (a: Archive) => storeFile(a.dimsePort);
  const request = (uid: string) => ({
    TransactionUID: uid,
    ReferencedSOPSequence: [{ ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop }],
  });
  const committed = (uid: string): Report => ({
    eventTypeId: 1,
    elements: {
      TransactionUID: uid,
      ReferencedSOPSequence: [
        { ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop, RetrieveAETitle: 'PACS' },
      ],
    },
  });
  const failedAttempts = (a: Archive, uid: string) =>
    a.logs.filter(
      (l) => l.msg === 'storage commitment report failed, trying again' && l.transactionUID === uid,
    );

  it('a report not delivered before the archive restarts is delivered after, once the requester listens', async () => {
    const dir = await dataDir();
    const port = await freePort();
    const env = { PACS_DIMSE_REMOTE_AES: `REQUESTER@127.0.0.1:${port}` };
    const before = await archiveOn(dir, env);
    await store(before);
    // The requester releases its association at once and its SCP is off.
    expect(await requestCommitment(before.dimsePort, 'REQUESTER', request('2.25.5001'), 0)).toEqual({
      actionStatus: 0,
    });
    expect(await eventually(() => failedAttempts(before, '2.25.5001').length > 0)).toBe(true);
    await before.close();
    expect(pendingRows(dir).map((r) => r.transaction_uid)).toEqual(['2.25.5001']);

    const scp = await startRequesterScp(port);
    open.push(scp);
    const after = await archiveOn(dir, env);
    expect(await eventually(() => scp.reports.length > 0, 10_000)).toBe(true);
    expect(scp.reports).toMatchObject([committed('2.25.5001')]);
    expect(scp.reports).toHaveLength(1);
    expect(
      await eventually(() =>
        after.logs.some(
          (l) =>
            l.msg === 'storage commitment report sent' &&
            l.transactionUID === '2.25.5001' &&
            l.association === 'new',
        ),
      ),
    ).toBe(true);
    expect(pendingRows(dir)).toEqual([]);
  });

  it('a report is still delivered when the requester comes back after more attempts than the old 42 s window had', async () => {
    const dir = await dataDir();
    const port = await freePort();
    const a = await archiveOn(dir, { PACS_DIMSE_REMOTE_AES: `REQUESTER@127.0.0.1:${port}` });
    await store(a);
    expect(await requestCommitment(a.dimsePort, 'REQUESTER', request('2.25.5002'), 0)).toEqual({
      actionStatus: 0,
    });
    // Before: tried at 0, 2, 12 and 42 s, then given up. Now: every second here (PACS_DIMSE_COMMIT_MAX_WAIT=1).
    expect(await eventually(() => failedAttempts(a, '2.25.5002').length >= 6, 20_000)).toBe(true);
    expect(pendingRows(dir)).toMatchObject([{ transaction_uid: '2.25.5002', attempts: expect.any(Number) }]);
    expect(pendingRows(dir)[0].attempts).toBeGreaterThanOrEqual(6);
    expect(pendingRows(dir)[0].last_error).toMatch(/REQUESTER/);
    const scp = await startRequesterScp(port);
    open.push(scp);
    expect(await eventually(() => scp.reports.length > 0, 10_000)).toBe(true);
    expect(scp.reports).toMatchObject([committed('2.25.5002')]);
    expect(scp.reports).toHaveLength(1);
    expect(await eventually(() => pendingRows(dir).length === 0)).toBe(true);
  });

  it('a Transaction UID in use in one server process is a duplicate in another sharing its database', async () => {
    const dir = await dataDir();
    const port = await freePort();
    const env = { PACS_DIMSE_REMOTE_AES: `REQUESTER@127.0.0.1:${port}` };
    const first = await archiveOn(dir, env);
    const second = await archiveOn(dir, env);
    await store(first);
    expect(await requestCommitment(first.dimsePort, 'REQUESTER', request('2.25.5003'), 0)).toEqual({
      actionStatus: 0,
    });
    expect(await eventually(() => failedAttempts(first, '2.25.5003').length > 0)).toBe(true);
    // The same Transaction UID to the other process: received, and its report fails it with 0x0131.
    const duplicate = await requestCommitment(second.dimsePort, 'MODALITY', request('2.25.5003'), 2_000);
    expectDuplicateRefused(duplicate, '2.25.5003', sop, second.logs);
    // The first request goes on, and is reported once (by either process) when the requester listens.
    const scp = await startRequesterScp(port);
    open.push(scp);
    expect(await eventually(() => scp.reports.length > 0, 10_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 2_500));
    expect(scp.reports).toMatchObject([committed('2.25.5003')]);
    expect(scp.reports).toHaveLength(1);
    expect(pendingRows(dir)).toEqual([]);
  });

  it('a report not delivered within PACS_DIMSE_COMMIT_RETRY_HOURS is given up: an error, audited 502, the request gone', async () => {
    const dir = await dataDir();
    const port = await freePort();
    const a = await archiveOn(dir, {
      PACS_DIMSE_REMOTE_AES: `REQUESTER@127.0.0.1:${port}`,
      PACS_DIMSE_COMMIT_RETRY_HOURS: '0.001', // 3.6 s
    });
    expect(await requestCommitment(a.dimsePort, 'REQUESTER', request('2.25.5004'), 0)).toEqual({
      actionStatus: 0,
    });
    const givenUp = (l: Record<string, unknown>) =>
      l.msg === 'storage commitment report not sent' && l.transactionUID === '2.25.5004';
    expect(await eventually(() => a.logs.some(givenUp), 15_000)).toBe(true);
    expect(a.logs.find(givenUp)).toMatchObject({
      level: 'error',
      callingAETitle: 'REQUESTER',
      aet: 'REQUESTER',
    });
    expect(failedAttempts(a, '2.25.5004').length).toBeGreaterThanOrEqual(2);
    expect(pendingRows(dir)).toEqual([]);
    const audit = await fetch(`${a.baseUrl}/api/audit?action=storage-commitment&user=AE:REQUESTER&limit=100`);
    const events = ((await audit.json()) as { events: { status: number; detail: string }[] }).events;
    expect(events).toContainEqual(
      expect.objectContaining({
        status: 502,
        detail: expect.stringMatching(/^Storage commitment 2\.25\.5004: report not sent to REQUESTER/),
      }),
    );
  });

  it('a requester that does not accept the archive in the SCP role gets no report: a failed attempt, with why', async () => {
    const dir = await dataDir();
    const port = await freePort();
    const scp = await startRequesterScp(port, { roleSelection: false });
    open.push(scp);
    const a = await archiveOn(dir, { PACS_DIMSE_REMOTE_AES: `REQUESTER@127.0.0.1:${port}` });
    expect(await requestCommitment(a.dimsePort, 'REQUESTER', request('2.25.5005'), 0)).toEqual({
      actionStatus: 0,
    });
    expect(await eventually(() => failedAttempts(a, '2.25.5005').length >= 2, 10_000)).toBe(true);
    expect(String(failedAttempts(a, '2.25.5005')[0].err)).toMatch(
      /REQUESTER did not accept the archive in the SCP role for Storage Commitment Push Model/,
    );
    expect(scp.reports).toEqual([]);
    expect(pendingRows(dir)).toMatchObject([{ transaction_uid: '2.25.5005' }]);
  });
});

/**
 * The archive as a process of its own, killed outright (SIGKILL: no close, no flush) after it answered an
 * N-ACTION 0000 whose report it could not deliver (the requester's SCP is off), and started again on the
 * same data folder: the request was recorded before the answer, so the next process reports it, once.
 * The kill comes right after the first failed attempt is logged: the request is then between attempts
 * (its next one 2 s away), not claimed. A kill during an attempt, or within the half second the requester
 * has to release its association, leaves it claimed by the dead process for REPORT_LEASE_MS (5 minutes),
 * unless the next server is the only one on the folder's SQLite index: it then takes it at start (second
 * test).
 * (The WAL sync before the 0000 is for a power cut, which a kill does not show: the written WAL outlives
 * the process in the OS's cache.)
 */
describe('storage commitment through a kill of the archive process', () => {
  let dataDir: string | undefined;
  const dataDirs: string[] = [];
  const archives: ArchiveProcess[] = [];
  let scp: { close(): void } | undefined;
  const closers: (() => void)[] = [];
  afterAll(async () => {
    scp?.close();
    for (const close of closers) close();
    for (const a of archives) await a.stop();
    for (const dir of [dataDir, ...dataDirs]) if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The archive process with its DICOM listener, and the JSON log lines it prints from now on. */
  const archiveProcess = async (dir: string, env: Record<string, string>) => {
    const dimsePort = await freePort();
    const archive = await startArchiveProcess({
      dataDir: dir,
      env: { ...env, PACS_DIMSE_PORT: String(dimsePort) },
    });
    archives.push(archive);
    const logs: Record<string, unknown>[] = [];
    createInterface({ input: archive.child.stdout! }).on('line', (line) => {
      try {
        if (line.startsWith('{')) logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    });
    await waitForPort(dimsePort);
    return { archive, logs, dimsePort };
  };

  it('a request answered 0000 is reported once, by the next process, after a SIGKILL', {
    timeout: 120_000,
  }, async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-commit-kill-'));
    const requesterPort = await freePort(); // nothing listens there until the requester's SCP starts
    const env = {
      PACS_DIMSE_ALLOWED_AES: 'REQUESTER',
      PACS_DIMSE_REMOTE_AES: `REQUESTER@127.0.0.1:${requesterPort}`,
      PACS_DIMSE_COMMIT_MAX_WAIT: '2',
    };
    const uid = '2.25.6001';
    const missing = '2.25.6001999';
    const first = await archiveProcess(dataDir, env);
    const instances = syntheticInstances(2);
    const stow = await stowInstances(
      first.archive.dicomweb,
      instances.map((i) => i.bytes),
    );
    expect(stow.acknowledged.sort()).toEqual(instances.map((i) => i.sop).sort());
    const held = instances.map((i) => ({
      ReferencedSOPClassUID: CT_IMAGE_STORAGE,
      ReferencedSOPInstanceUID: i.sop,
    }));
    const request = {
      TransactionUID: uid,
      ReferencedSOPSequence: [
        ...held,
        { ReferencedSOPClassUID: CT_IMAGE_STORAGE, ReferencedSOPInstanceUID: missing },
      ],
    };
    // The requester releases its association right after the N-ACTION-RSP.
    expect(await requestCommitment(first.dimsePort, 'REQUESTER', request, 0)).toEqual({
      actionStatus: 0,
    });
    const failedAttempt = (l: Record<string, unknown>) =>
      l.msg === 'storage commitment report failed, trying again' && l.transactionUID === uid;
    expect(await eventually(() => first.logs.some(failedAttempt), 10_000), first.archive.tail()).toBe(true);
    expect(String(first.logs.find(failedAttempt)?.err)).toMatch(/ECONNREFUSED/);
    await first.archive.kill(); // SIGKILL to its PID, then its exit
    expect(first.archive.exit()).toEqual({ code: null, signal: 'SIGKILL' });
    // What the killed process left: the request, with its failed attempt.
    expect(pendingRows(dataDir)).toMatchObject([{ transaction_uid: uid, attempts: 1 }]);

    const second = await archiveProcess(dataDir, env);
    const requester = await startRequesterScp(requesterPort);
    scp = requester;
    expect(await eventually(() => requester.reports.length > 0, 20_000), second.archive.tail()).toBe(true);
    expect(requester.reports).toMatchObject([
      {
        eventTypeId: 2,
        elements: {
          TransactionUID: uid,
          ReferencedSOPSequence: held.map((r) => ({ ...r, RetrieveAETitle: 'PACS' })),
          FailedSOPSequence: [
            {
              ReferencedSOPClassUID: CT_IMAGE_STORAGE,
              ReferencedSOPInstanceUID: missing,
              FailureReason: 0x0112,
            },
          ],
        },
      },
    ]);
    const sent = (l: Record<string, unknown>) =>
      l.msg === 'storage commitment report sent' && l.transactionUID === uid && l.association === 'new';
    expect(await eventually(() => second.logs.some(sent), 10_000)).toBe(true);
    expect(pendingRows(dataDir)).toEqual([]);
    // Nothing more comes: more than two periodic looks later, still the one report.
    await new Promise((r) => setTimeout(r, 5_000));
    expect(requester.reports).toHaveLength(1);
    expect(second.logs.filter(sent)).toHaveLength(1);
    expect(second.archive.errors).toEqual([]);
    expect(second.archive.exit()).toBeUndefined();
  });

  it('a request the killed process held during an attempt is reported at once by the next, not after its lease', {
    timeout: 120_000,
  }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pacs-commit-kill-'));
    dataDirs.push(dir);
    // The requester's port answers the TCP connection and then says nothing: the first attempt hangs
    // there, with the request claimed by the process making it.
    const requesterPort = await freePort();
    const connected: Socket[] = [];
    const silent = net.createServer((socket) => connected.push(socket));
    await new Promise<void>((resolve) => silent.listen(requesterPort, '127.0.0.1', resolve));
    const closeSilent = () => {
      for (const c of connected) c.destroy();
      silent.close();
    };
    closers.push(closeSilent);
    const env = {
      PACS_DIMSE_ALLOWED_AES: 'REQUESTER',
      PACS_DIMSE_REMOTE_AES: `REQUESTER@127.0.0.1:${requesterPort}`,
      PACS_DIMSE_COMMIT_MAX_WAIT: '2',
    };
    const uid = '2.25.6002';
    const first = await archiveProcess(dir, env);
    const instances = syntheticInstances(1);
    await stowInstances(
      first.archive.dicomweb,
      instances.map((i) => i.bytes),
    );
    const held = [{ ReferencedSOPClassUID: CT_IMAGE_STORAGE, ReferencedSOPInstanceUID: instances[0].sop }];
    expect(
      await requestCommitment(
        first.dimsePort,
        'REQUESTER',
        { TransactionUID: uid, ReferencedSOPSequence: held },
        0,
      ),
    ).toEqual({ actionStatus: 0 });
    expect(await eventually(() => connected.length > 0, 10_000), first.archive.tail()).toBe(true);
    await first.archive.kill();
    expect(pendingRows(dir)).toMatchObject([{ transaction_uid: uid, attempts: 0 }]);
    closeSilent();

    const requester = await startRequesterScp(requesterPort);
    closers.push(() => requester.close());
    const second = await archiveProcess(dir, env);
    // Well within the 5 minutes the dead process's claim would otherwise last.
    expect(await eventually(() => requester.reports.length > 0, 20_000), second.archive.tail()).toBe(true);
    expect(requester.reports).toMatchObject([
      {
        eventTypeId: 1,
        elements: {
          TransactionUID: uid,
          ReferencedSOPSequence: held.map((r) => ({ ...r, RetrieveAETitle: 'PACS' })),
        },
      },
    ]);
    // Printed at start, before the listener (in the lines the process keeps).
    expect(second.archive.tail()).toMatch(
      /"level":"warn","msg":"storage commitment requests of a server that stopped without closing, reported now","requests":1/,
    );
    expect(await eventually(() => pendingRows(dir).length === 0)).toBe(true);
  });
});

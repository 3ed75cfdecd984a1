import { describe, expect, it } from 'vitest';
import {
  CommitmentFailureReason,
  type CommitmentRequest,
  decideCommitment,
  eventReport,
  NActionStatus,
  parseCommitmentRequest,
  ReportRefusedError,
  reportWithRetries,
  STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
} from './commitment';
import { retryDelay } from './commitment-reports';
import { dimse } from './library';
import { QueryError } from './query';

const SC = '1.2.840.10008.1.20.1';
const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const command = {
  RequestedSOPClassUID: SC,
  RequestedSOPInstanceUID: '1.2.840.10008.1.20.1.1',
  ActionTypeID: 1,
};
const ref = (ReferencedSOPClassUID: string, ReferencedSOPInstanceUID: string) => ({
  ReferencedSOPClassUID,
  ReferencedSOPInstanceUID,
});

/** The N-ACTION-RSP status parseCommitmentRequest refuses with. */
function refusal(...args: Parameters<typeof parseCommitmentRequest>): number | undefined {
  try {
    parseCommitmentRequest(...args);
    return undefined;
  } catch (err) {
    if (err instanceof QueryError) return err.status;
    throw err;
  }
}

describe('storage commitment request (N-ACTION, PS3.4 J.3.2)', () => {
  it('reads the Transaction UID and the Referenced SOP Sequence, as decoded off the wire', () => {
    // Encoded and decoded as the library does with an N-ACTION data set (Explicit VR Little Endian).
    const wire = new dimse.Dataset(
      {
        TransactionUID: '2.25.1234',
        ReferencedSOPSequence: [ref(CT, '1.2.3.4'), ref(MR, '1.2.3.5')],
      },
      '1.2.840.10008.1.2.1',
    ).getDenaturalizedDataset();
    const elements = new dimse.Dataset(wire, '1.2.840.10008.1.2.1').getElements();
    expect(parseCommitmentRequest(command, elements)).toEqual({
      TransactionUID: '2.25.1234',
      references: [ref(CT, '1.2.3.4'), ref(MR, '1.2.3.5')],
    });
  });

  it('refuses what is not a storage commitment request, or lacks its attributes', () => {
    const good = { TransactionUID: '2.25.1', ReferencedSOPSequence: [ref(CT, '1.2.3')] };
    expect(refusal({ ...command, RequestedSOPClassUID: CT }, good)).toBe(NActionStatus.NoSuchSOPClass);
    expect(refusal({ ...command, RequestedSOPInstanceUID: '1.2.3' }, good)).toBe(
      NActionStatus.InvalidSOPInstance,
    );
    expect(refusal({ ...command, ActionTypeID: 2 }, good)).toBe(NActionStatus.NoSuchActionType);
    expect(refusal(command, undefined)).toBe(NActionStatus.MissingAttribute);
    expect(refusal(command, { ReferencedSOPSequence: good.ReferencedSOPSequence })).toBe(0x0120);
    expect(refusal(command, { TransactionUID: '2.25.1' })).toBe(0x0120);
    expect(refusal(command, { TransactionUID: '2.25.1', ReferencedSOPSequence: [] })).toBe(0x0120);
    expect(refusal(command, { ...good, ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT }] })).toBe(
      0x0120,
    );
    expect(refusal(command, { ...good, TransactionUID: 'not a uid' })).toBe(0x0106);
    expect(refusal(command, { ...good, ReferencedSOPSequence: [ref(CT, '1.2.x')] })).toBe(0x0106);
    expect(refusal(command, good)).toBeUndefined();
  });
});

describe('storage commitment result (N-EVENT-REPORT, PS3.4 J.3.3)', () => {
  const request: CommitmentRequest = {
    TransactionUID: '2.25.99',
    references: [ref(CT, '1.1'), ref(CT, '1.2'), ref(MR, '1.3')],
  };

  it('commits what the index holds with the same SOP Class; the rest fails with its reason', () => {
    const stored = new Map([
      ['1.1', { SOPClassUID: CT }],
      ['1.3', { SOPClassUID: CT }],
    ]);
    expect(decideCommitment(request, stored)).toEqual({
      TransactionUID: '2.25.99',
      committed: [ref(CT, '1.1')],
      failed: [
        { ...ref(CT, '1.2'), FailureReason: CommitmentFailureReason.NoSuchObjectInstance },
        { ...ref(MR, '1.3'), FailureReason: CommitmentFailureReason.ClassInstanceConflict },
      ],
    });
    expect(decideCommitment(request, 'unavailable').failed.map((f) => f.FailureReason)).toEqual([
      0x0110, 0x0110, 0x0110,
    ]);
  });

  it('event type 1 with the Referenced SOP Sequence when all are committed, 2 with the Failed SOP Sequence', () => {
    const all = eventReport({ TransactionUID: '2.25.99', committed: [ref(CT, '1.1')], failed: [] }, 'PACS');
    expect(all).toEqual({
      eventTypeId: 1,
      elements: {
        TransactionUID: '2.25.99',
        ReferencedSOPSequence: [{ ...ref(CT, '1.1'), RetrieveAETitle: 'PACS' }],
      },
    });
    const some = eventReport(decideCommitment(request, new Map([['1.1', { SOPClassUID: CT }]])), 'PACS');
    expect(some.eventTypeId).toBe(2);
    // Written as the library writes the N-EVENT-REPORT data set, read back: the tags of PS3.4 Table J.3-2.
    const wire = new dimse.Dataset(some.elements, '1.2.840.10008.1.2').getDenaturalizedDataset();
    const back = new dimse.Dataset(wire, '1.2.840.10008.1.2').getElements();
    expect(back.TransactionUID).toBe('2.25.99');
    expect(back.ReferencedSOPSequence).toMatchObject([{ ...ref(CT, '1.1'), RetrieveAETitle: 'PACS' }]);
    expect(back.FailedSOPSequence).toMatchObject([
      { ...ref(CT, '1.2'), FailureReason: 0x0112 },
      { ...ref(MR, '1.3'), FailureReason: 0x0112 },
    ]);
    const none = eventReport({ TransactionUID: '2.25.1', committed: [], failed: [] }, 'PACS');
    expect(none.elements).toEqual({ TransactionUID: '2.25.1' });
    expect(STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE).toBe('1.2.840.10008.1.20.1.1');
  });
});

describe('report on a new association: tried again while the association fails', () => {
  it('tries after each delay, stops at a refusal by the peer or when the listener closes', async () => {
    let calls = 0;
    const failing =
      (times: number, err = new Error('connection refused')) =>
      async () => {
        calls++;
        if (calls <= times) throw err;
      };
    expect(await reportWithRetries(failing(2), { delaysMs: [1, 1, 1] })).toBe(3);
    calls = 0;
    await expect(reportWithRetries(failing(5), { delaysMs: [1, 1] })).rejects.toThrow('connection refused');
    expect(calls).toBe(3);
    calls = 0;
    await expect(
      reportWithRetries(failing(5, new ReportRefusedError('status 0x0110')), { delaysMs: [1, 1] }),
    ).rejects.toThrow(ReportRefusedError);
    expect(calls).toBe(1);
    calls = 0;
    const stopping = new AbortController();
    const retries: number[] = [];
    const stopped = reportWithRetries(failing(5), {
      delaysMs: [60_000],
      stopped: stopping.signal,
      onRetry: (_err, attempt) => {
        retries.push(attempt);
        stopping.abort();
      },
    });
    await expect(stopped).rejects.toThrow('connection refused');
    expect([calls, ...retries]).toEqual([1, 1]);
  });
});

describe('report kept until delivered: waits between attempts', () => {
  it('start at 2 s and double up to the longest wait (PACS_DIMSE_COMMIT_MAX_WAIT)', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => retryDelay(n, 600_000) / 1000)).toEqual([
      2, 4, 8, 16, 32, 64, 128, 256, 512, 600,
    ]);
    expect(retryDelay(1_000, 600_000)).toBe(600_000);
    expect(retryDelay(1, 1_000)).toBe(1_000);
  });
});

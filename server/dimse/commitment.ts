/**
 * Storage Commitment Push Model, the archive as SCP (PS3.4 Annex J).
 *
 * A modality asks, by N-ACTION (Action Type 1), whether the archive takes responsibility for instances
 * it sent: a Transaction UID and the Referenced SOP Sequence (SOP Class and Instance UID of each). The
 * N-ACTION is answered at once; then each instance is committed when the index holds it with that SOP
 * Class: an instance is indexed only once it is durable (ingest.ts), so nothing more is read. The result
 * goes back as an N-EVENT-REPORT (Event Type 1: all committed, 2: failures exist), on the requester's
 * association if it is still open, otherwise on a new association to the requester's AE as known from
 * PACS_DIMSE_REMOTE_AES, the archive in the SCP role (SCP/SCU Role Selection, PS3.7 D.3.3.4). A request
 * that reuses the Transaction UID of one not reported yet fails whole with 0x0131 (duplicateTransaction).
 * The requests not reported yet are kept in the index database until they are (commitment-reports.ts).
 *
 * Request parsing, decision and the result data set are pure; sending is at the end.
 */
import { parseQuery } from '../../dicomweb/qido';
import { isAcceptableUID } from '../../dicomweb/uids';
import type { Index } from '../../storage/index';
import type { DimseConnection } from './connection';
import { type Association, dimse } from './library';
import { IMPLICIT_VR_LITTLE_ENDIAN, type RemoteAE, STORAGE_COMMITMENT_PUSH_MODEL } from './negotiation';
import { QueryError } from './query';
import type { DimseTls } from '../config';
import { onAssociation, singleContextAssociation } from './scu';

/** The well-known SOP Instance of the Storage Commitment Push Model SOP Class (PS3.4 J.3.6). */
export const STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE = '1.2.840.10008.1.20.1.1';
/** Action Type ID of the N-ACTION "Request Storage Commitment" (PS3.4 J.3.2). */
export const REQUEST_STORAGE_COMMITMENT = 1;
/** Event Type IDs of the N-EVENT-REPORT (PS3.4 J.3.3). */
export const EventType = {
  StorageCommitmentRequestSuccessful: 1,
  StorageCommitmentRequestCompleteFailuresExist: 2,
} as const;

/** Failure Reason (0008,1197) of an instance not committed (PS3.3 C.14.1.1). */
export const CommitmentFailureReason = {
  /** The index could not be asked (unreachable, failing). */
  ProcessingFailure: 0x0110,
  /** The archive does not hold the instance. */
  NoSuchObjectInstance: 0x0112,
  /** The archive holds the instance with another SOP Class UID. */
  ClassInstanceConflict: 0x0119,
  /** The Transaction UID is that of a request the archive has not reported on yet (duplicateTransaction). */
  DuplicateTransactionUID: 0x0131,
} as const;

/** N-ACTION-RSP statuses of a request the archive refuses (PS3.7 C and 10.1.4.1.10). */
export const NActionStatus = {
  Success: 0x0000,
  InvalidAttributeValue: 0x0106,
  ProcessingFailure: 0x0110,
  InvalidSOPInstance: 0x0117,
  NoSuchSOPClass: 0x0118,
  MissingAttribute: 0x0120,
  NoSuchActionType: 0x0123,
} as const;

export interface SOPReference {
  ReferencedSOPClassUID: string;
  ReferencedSOPInstanceUID: string;
}

export interface CommitmentRequest {
  TransactionUID: string;
  /** The Referenced SOP Sequence, in order. */
  references: SOPReference[];
}

export interface FailedReference extends SOPReference {
  FailureReason: number;
}

export interface CommitmentResult {
  TransactionUID: string;
  committed: SOPReference[];
  failed: FailedReference[];
}

const text = (v: unknown): string => (typeof v === 'string' ? v.replace(/\0/g, '').trim() : '');

/**
 * The Storage Commitment request an N-ACTION carries (PS3.4 J.3.2, Table J.3-1). Throws QueryError with
 * the N-ACTION-RSP status when it is not one: another SOP Class, SOP Instance or action, no Transaction
 * UID or Referenced SOP Sequence (0x0120), a value that is not a UID (0x0106).
 */
export function parseCommitmentRequest(
  command: {
    RequestedSOPClassUID: string;
    RequestedSOPInstanceUID: string;
    ActionTypeID: number | undefined;
  },
  elements: Record<string, unknown> | undefined,
): CommitmentRequest {
  if (command.RequestedSOPClassUID !== STORAGE_COMMITMENT_PUSH_MODEL)
    throw new QueryError(
      NActionStatus.NoSuchSOPClass,
      `N-ACTION of SOP Class ${command.RequestedSOPClassUID}: only Storage Commitment Push Model is offered`,
    );
  if (command.RequestedSOPInstanceUID !== STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE)
    throw new QueryError(
      NActionStatus.InvalidSOPInstance,
      `Requested SOP Instance UID is not ${STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE}`,
    );
  if (command.ActionTypeID !== REQUEST_STORAGE_COMMITMENT)
    throw new QueryError(NActionStatus.NoSuchActionType, `Action Type ID ${command.ActionTypeID} is not 1`);
  if (!elements) throw new QueryError(NActionStatus.MissingAttribute, 'no Action Information data set');
  const TransactionUID = text(elements.TransactionUID);
  if (TransactionUID === '') throw new QueryError(NActionStatus.MissingAttribute, 'no Transaction UID');
  if (!isAcceptableUID(TransactionUID))
    throw new QueryError(NActionStatus.InvalidAttributeValue, 'Transaction UID is not a UID');
  const sequence = elements.ReferencedSOPSequence;
  const items = Array.isArray(sequence)
    ? sequence
    : sequence && typeof sequence === 'object'
      ? [sequence]
      : [];
  if (items.length === 0)
    throw new QueryError(NActionStatus.MissingAttribute, 'no Referenced SOP Sequence item');
  const references = items.map((item: Record<string, unknown>, i): SOPReference => {
    const ReferencedSOPClassUID = text(item?.ReferencedSOPClassUID);
    const ReferencedSOPInstanceUID = text(item?.ReferencedSOPInstanceUID);
    if (ReferencedSOPClassUID === '' || ReferencedSOPInstanceUID === '')
      throw new QueryError(
        NActionStatus.MissingAttribute,
        `Referenced SOP Sequence item ${i + 1} lacks its SOP Class or Instance UID`,
      );
    if (!isAcceptableUID(ReferencedSOPClassUID) || !isAcceptableUID(ReferencedSOPInstanceUID))
      throw new QueryError(
        NActionStatus.InvalidAttributeValue,
        `Referenced SOP Sequence item ${i + 1}: not a UID`,
      );
    return { ReferencedSOPClassUID, ReferencedSOPInstanceUID };
  });
  return { TransactionUID, references };
}

/** What the index holds under a SOP Instance UID. */
export interface StoredReference {
  SOPClassUID: string;
  StudyInstanceUID: string;
}

/**
 * The commitment of each requested instance, from what the index holds under each SOP Instance UID
 * (absent: not stored), or 'unavailable' when the index could not be asked.
 */
export function decideCommitment(
  request: CommitmentRequest,
  stored: ReadonlyMap<string, Pick<StoredReference, 'SOPClassUID'>> | 'unavailable',
): CommitmentResult {
  const committed: SOPReference[] = [];
  const failed: FailedReference[] = [];
  for (const ref of request.references) {
    const held = stored === 'unavailable' ? undefined : stored.get(ref.ReferencedSOPInstanceUID);
    if (stored === 'unavailable')
      failed.push({ ...ref, FailureReason: CommitmentFailureReason.ProcessingFailure });
    else if (held === undefined)
      failed.push({ ...ref, FailureReason: CommitmentFailureReason.NoSuchObjectInstance });
    else if (held.SOPClassUID !== ref.ReferencedSOPClassUID)
      failed.push({ ...ref, FailureReason: CommitmentFailureReason.ClassInstanceConflict });
    else committed.push(ref);
  }
  return { TransactionUID: request.TransactionUID, committed, failed };
}

/**
 * The result of a request whose Transaction UID is still in use by an earlier request the archive has not
 * yet sent the report of: a Transaction UID stays active until its N-EVENT-REPORT is sent (PS3.4
 * J.3.3.1.2), and such a request is answered, in the N-EVENT-REPORT as for any failure to commit (J.3.2.1.3
 * Note 1), with every referenced instance failed with 0x0131 Duplicate transaction UID (PS3.3 C.14.1.1).
 * PS3.7 has no N-ACTION status for it, and a failed N-ACTION would end the Transaction UID (J.3.2.1.2)
 * that the earlier request still uses. The earlier request goes on, and gets its own report.
 */
export function duplicateTransaction(request: CommitmentRequest): CommitmentResult {
  return {
    TransactionUID: request.TransactionUID,
    committed: [],
    failed: request.references.map((r) => ({
      ...r,
      FailureReason: CommitmentFailureReason.DuplicateTransactionUID,
    })),
  };
}

/** SOP Instance UIDs asked of the index at once. */
const LOOKUP_BATCH = 500;

/**
 * What the index holds under each of these SOP Instance UIDs (an instance-level search by SOP Instance
 * UID list, the index's primary key; no blob is read). Instances not held are absent.
 */
export async function storedReferences(
  index: Index,
  sopInstanceUIDs: readonly string[],
): Promise<Map<string, StoredReference>> {
  const out = new Map<string, StoredReference>();
  const unique = [...new Set(sopInstanceUIDs)];
  for (let i = 0; i < unique.length; i += LOOKUP_BATCH) {
    const params = new URLSearchParams({ SOPInstanceUID: unique.slice(i, i + LOOKUP_BATCH).join('\\') });
    const { matches } = await index.search(parseQuery('instance', params));
    for (const m of matches as Record<string, { Value?: unknown[] } | undefined>[]) {
      const sop = m['00080018']?.Value?.[0];
      const SOPClassUID = m['00080016']?.Value?.[0];
      const StudyInstanceUID = m['0020000D']?.Value?.[0];
      if (typeof sop === 'string' && typeof SOPClassUID === 'string')
        out.set(sop, {
          SOPClassUID,
          StudyInstanceUID: typeof StudyInstanceUID === 'string' ? StudyInstanceUID : '',
        });
    }
  }
  return out;
}

/** The Event Type ID and Event Information of the N-EVENT-REPORT (PS3.4 J.3.3, Table J.3-2). */
export function eventReport(
  result: CommitmentResult,
  retrieveAETitle: string,
): { eventTypeId: number; elements: Record<string, unknown> } {
  const elements: Record<string, unknown> = { TransactionUID: result.TransactionUID };
  if (result.committed.length > 0)
    elements.ReferencedSOPSequence = result.committed.map((r) => ({
      ReferencedSOPClassUID: r.ReferencedSOPClassUID,
      ReferencedSOPInstanceUID: r.ReferencedSOPInstanceUID,
      RetrieveAETitle: retrieveAETitle,
    }));
  if (result.failed.length > 0)
    elements.FailedSOPSequence = result.failed.map((r) => ({
      ReferencedSOPClassUID: r.ReferencedSOPClassUID,
      ReferencedSOPInstanceUID: r.ReferencedSOPInstanceUID,
      FailureReason: r.FailureReason,
    }));
  return {
    eventTypeId:
      result.failed.length === 0
        ? EventType.StorageCommitmentRequestSuccessful
        : EventType.StorageCommitmentRequestCompleteFailuresExist,
    elements,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Sending the report

export class ReportRefusedError extends Error {}

/**
 * Sends the result as an N-EVENT-REPORT-RQ over an open association (the requester's, or one opened to
 * it) and resolves once the peer answered it with success. Rejects with ReportRefusedError when the
 * association has no Storage Commitment context or the peer answers another status; with
 * ConnectionClosedError when the association ends first.
 */
export async function sendEventReport(
  conn: DimseConnection,
  assoc: Association,
  result: CommitmentResult,
  retrieveAETitle: string,
): Promise<void> {
  const { eventTypeId, elements } = eventReport(result, retrieveAETitle);
  const req = new dimse.requests.NEventReportRequest(
    STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
    eventTypeId,
  );
  const context = assoc.getAcceptedPresentationContextFromRequest(req);
  if (!context) throw new ReportRefusedError('no accepted presentation context for Storage Commitment');
  req.setDataset(
    new dimse.Dataset(elements, context.getAcceptedTransferSyntaxUid() ?? IMPLICIT_VR_LITTLE_ENDIAN),
  );
  const status = await conn.request(req);
  if (status !== 0)
    throw new ReportRefusedError(
      `the peer answered the N-EVENT-REPORT with status 0x${status.toString(16).padStart(4, '0')}`,
    );
}

/**
 * Sends the report on a new association to the requester's AE, proposing the Storage Commitment Push
 * Model with the archive in the SCP role only (PS3.4 J.3.3, PS3.7 D.3.3.4).
 */
export function reportOnNewAssociation(
  remote: RemoteAE,
  callingAETitle: string,
  result: CommitmentResult,
  credentials?: DimseTls,
): Promise<void> {
  const { assoc, id } = singleContextAssociation(callingAETitle, remote.aet, STORAGE_COMMITMENT_PUSH_MODEL);
  const context = assoc.getPresentationContext(id);
  context.setUserRole(false);
  context.setProviderRole(true);
  return onAssociation(
    remote,
    assoc,
    (conn, accepted) => {
      const negotiated = accepted.getPresentationContext(id);
      if (negotiated.getResult() !== dimse.constants.PresentationContextResult.Accept)
        throw new Error(
          `${remote.aet} did not accept the Storage Commitment Push Model presentation context (${negotiated.getResultDescription()})`,
        );
      // Without it, the peer takes the archive for the SCU, and an N-EVENT-REPORT from us is not one it expects.
      if (negotiated.getProviderRole() !== true)
        throw new Error(
          `${remote.aet} did not accept the archive in the SCP role for Storage Commitment Push Model (SCP/SCU Role Selection, PS3.7 D.3.3.4)`,
        );
      return sendEventReport(conn, accepted, result, callingAETitle);
    },
    credentials,
  );
}

/**
 * Waits between attempts at a report kept in memory only (then given up): the report of a duplicate
 * request, which has no pending request of its own (commitment-reports.ts keeps the others).
 */
export const REPORT_RETRY_DELAYS_MS = [2_000, 10_000, 30_000];

/**
 * reportOnNewAssociation, tried again after each delay while the association fails (refused,
 * unreachable, closed); a report the peer refuses is not tried again. Resolves with the number of
 * attempts; rejects with the last error. `stopped` (the listener closing) ends the waiting.
 */
export async function reportWithRetries(
  send: () => Promise<void>,
  opts: {
    delaysMs?: readonly number[];
    stopped?: AbortSignal;
    onRetry?: (err: Error, attempt: number) => void;
  },
): Promise<number> {
  const delays = opts.delaysMs ?? REPORT_RETRY_DELAYS_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      await send();
      return attempt;
    } catch (err) {
      if (err instanceof ReportRefusedError || attempt > delays.length || opts.stopped?.aborted) throw err;
      opts.onRetry?.(err as Error, attempt);
      if (opts.stopped?.aborted) throw err;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, delays[attempt - 1]);
        function done() {
          clearTimeout(timer);
          opts.stopped?.removeEventListener('abort', done);
          resolve();
        }
        opts.stopped?.addEventListener('abort', done);
      });
      if (opts.stopped?.aborted) throw err;
    }
  }
}

/**
 * Storage commitment reports that outlast the association, the process and an outage of the requester
 * (PS3.4 J.3.3). A request is recorded in the index database before its N-ACTION is answered
 * (Index.addCommitment: its Transaction UID is the key, so a duplicate is seen by every server process)
 * and removed once the requester has answered its N-EVENT-REPORT, or once it is given up.
 *
 * The process that received the request reports first: on the requester's association if it stays open,
 * else on a new association to the requester's AE (PACS_DIMSE_REMOTE_AES). A report that fails there is
 * tried again, on a new association, with waits from 2 s doubling up to PACS_DIMSE_COMMIT_MAX_WAIT, for
 * PACS_DIMSE_COMMIT_RETRY_HOURS from the N-ACTION; then it is given up (an error in the log, audited 502).
 * Every process looks for due requests at start and every few seconds, and claims one before trying it
 * (Index.claimCommitment, a lease): one process at a time reports a request, and a request whose process
 * died is taken over once its lease ends (at once by a server starting alone on the folder's SQLite
 * index: server/main.ts releaseHeldCommitments). The report says what the index holds when it is built.
 */
import type { CommitmentReference, Index, PendingCommitment } from '../../storage/index';
import type { DimseConfig, DimseTls } from '../config';
import type { Logger } from '../log';
import {
  CommitmentFailureReason,
  type CommitmentRequest,
  type CommitmentResult,
  decideCommitment,
  ReportRefusedError,
  reportOnNewAssociation,
  reportWithRetries,
  type StoredReference,
  storedReferences,
} from './commitment';
import { ConnectionClosedError } from './connection';

/** Records one DIMSE operation in the audit trail; status as HTTP would say it (200, 403, 500…). */
export type DimseAudit = (e: {
  callingAETitle: string;
  action: string;
  status: number;
  study?: string;
  source: string;
  detail: string;
}) => void;

/** The requester's own association, while it may carry the report. */
export interface RequesterAssociation {
  /** Whether it is still open (and accepted). */
  open(): boolean;
  /** Resolves when it ends. */
  ended: Promise<void>;
  /** Sends the report on it; rejects with ConnectionClosedError when it closes first. */
  send(result: CommitmentResult): Promise<void>;
  /** The requester's address (the audit trail's source). */
  source: string;
}

/**
 * How long after its N-ACTION-RSP a storage commitment requester has to release its association before
 * the report is sent on it: a requester that waits for the report on another association releases at
 * once (Orthanc does), and a report sent across its A-RELEASE-RQ would be lost there.
 */
const REPORT_GRACE_MS = 500;
/**
 * How long a process holds a request it is reporting before another may take it over: longer than an
 * attempt lasts (a connection to an address that does not answer fails after about two minutes).
 */
export const REPORT_LEASE_MS = 5 * 60_000;
/** The first wait after a failed attempt; each next one doubles, up to PACS_DIMSE_COMMIT_MAX_WAIT. */
const FIRST_RETRY_MS = 2_000;
/** Due requests taken per look. */
const SWEEP_BATCH = 20;
/** At close: how long reports under way are waited for before the index closes under them. */
const CLOSE_WAIT_MS = 5_000;

/** The wait after the attempts-th failed attempt. */
export function retryDelay(attempts: number, maxDelayMs: number): number {
  return Math.min(maxDelayMs, FIRST_RETRY_MS * 2 ** Math.min(30, Math.max(0, attempts - 1)));
}

const hex = (n: number) => `0x${n.toString(16).padStart(4, '0')}`;

/**
 * The audit events of a result: one per study of the committed instances (one without a study when none
 * was), like C-MOVE and C-GET; the status as HTTP would say it: 200 all committed, 404 some not held,
 * 409 held with another SOP Class or a Transaction UID already in use, 500 the index could not be asked.
 */
export function commitmentAudits(
  result: CommitmentResult,
  stored: ReadonlyMap<string, StoredReference>,
): { status: number; detail: string; study?: string }[] {
  const reasons = new Set(result.failed.map((f) => f.FailureReason));
  const status = reasons.has(CommitmentFailureReason.ProcessingFailure)
    ? 500
    : reasons.has(CommitmentFailureReason.ClassInstanceConflict) ||
        reasons.has(CommitmentFailureReason.DuplicateTransactionUID)
      ? 409
      : reasons.size > 0
        ? 404
        : 200;
  const detail = `Storage commitment ${result.TransactionUID}: ${result.committed.length} committed, ${result.failed.length} failed`;
  const studies = new Set(
    result.committed.map((r) => stored.get(r.ReferencedSOPInstanceUID)?.StudyInstanceUID),
  );
  if (studies.size === 0) studies.add(undefined);
  return [...studies].map((study) => ({ status, detail, ...(study ? { study } : {}) }));
}

/** Counts of the failure reasons of a result, for the log ({"0x0112": 2}). */
export function failureReasons(result: CommitmentResult): Record<string, number> {
  const reasons: Record<string, number> = {};
  for (const f of result.failed) reasons[hex(f.FailureReason)] = (reasons[hex(f.FailureReason)] ?? 0) + 1;
  return reasons;
}

export class CommitmentReports {
  private timer: NodeJS.Timeout | undefined;
  private readonly wakes = new Set<NodeJS.Timeout>();
  private sweeping = false;
  private readonly underWay = new Set<Promise<void>>();

  constructor(
    private readonly index: Index,
    private readonly dimse: DimseConfig,
    private readonly log: Logger,
    private readonly audit: DimseAudit | undefined,
    private readonly stopping: AbortSignal,
    /** The DICOM TLS material now (renewed files are read again). */
    private readonly tls: () => DimseTls | undefined,
  ) {}

  /**
   * Records a request just received, before it is answered; false when its Transaction UID is that of
   * a request not reported yet (a duplicate). Rejects when the index cannot record it.
   */
  async record(
    request: CommitmentRequest,
    callingAETitle: string,
    calledAETitle: string,
    receivedAt: number,
  ): Promise<PendingCommitment | undefined> {
    const pending: PendingCommitment = {
      TransactionUID: request.TransactionUID,
      callingAETitle,
      calledAETitle,
      references: request.references,
      state: 'received',
      receivedAt,
      attempts: 0,
      // Held by this process while it reports on the requester's association.
      nextAttempt: receivedAt + REPORT_LEASE_MS,
      lastError: null,
    };
    return (await this.index.addCommitment(pending)) ? pending : undefined;
  }

  /** Reports a request this process just recorded, on the requester's association if it stays open. */
  reportReceived(pending: PendingCommitment, requester: RequesterAssociation, answeredAt: number): void {
    this.track(this.deliver(pending, { requester, answeredAt }));
  }

  /**
   * The report of a duplicate request (every instance failed with 0x0131): it has no row of its own (the
   * Transaction UID is the earlier request's), so it is tried as before, in memory, a few times.
   */
  reportDuplicate(
    result: CommitmentResult,
    callingAETitle: string,
    requester: RequesterAssociation,
    answeredAt: number,
  ): void {
    this.track(
      (async () => {
        const fields = { callingAETitle, transactionUID: result.TransactionUID };
        if (await this.onRequesterAssociation(result, requester, answeredAt, fields)) return;
        const remote = this.dimse.remoteAEs.find((a) => a.aet === callingAETitle);
        if (!remote || this.stopping.aborted) {
          this.log.warn('storage commitment report of a duplicate request not sent', fields);
          return;
        }
        try {
          await reportWithRetries(
            () => reportOnNewAssociation(remote, this.dimse.aeTitle, result, this.tls()),
            {
              stopped: this.stopping,
            },
          );
          this.log.info('storage commitment report sent', { ...fields, association: 'new', aet: remote.aet });
        } catch (err) {
          this.log.warn('storage commitment report of a duplicate request not sent', {
            ...fields,
            aet: remote.aet,
            err: (err as Error).message,
          });
        }
      })(),
    );
  }

  /** Looks for due requests now and then every few seconds. */
  start(): void {
    const every = Math.min(5_000, this.dimse.commitRetryMaxDelayMs);
    this.timer = setInterval(() => void this.sweep(), every);
    this.timer.unref();
    this.wake(0);
  }

  /** Stops looking, and waits a little for the reports under way (their requests stay recorded). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    for (const t of this.wakes) clearTimeout(t);
    this.wakes.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.underWay]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, CLOSE_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  private track(p: Promise<void>): void {
    this.underWay.add(p);
    void p.finally(() => this.underWay.delete(p));
  }

  /** A look for due requests in delayMs (sooner than the next periodic one). */
  private wake(delayMs: number): void {
    if (this.stopping.aborted) return;
    const t = setTimeout(() => {
      this.wakes.delete(t);
      void this.sweep();
    }, delayMs);
    t.unref();
    this.wakes.add(t);
  }

  /** Claims the due requests and reports each. */
  private async sweep(): Promise<void> {
    if (this.sweeping || this.stopping.aborted) return;
    this.sweeping = true;
    try {
      const now = Date.now();
      const due = await this.index.dueCommitments(now, SWEEP_BATCH);
      await Promise.all(
        due.map(async (d) => {
          const claimed = await this.index.claimCommitment(d.TransactionUID, now, now + REPORT_LEASE_MS);
          if (!claimed) return; // another process has it
          const delivery = this.deliver(claimed);
          this.track(delivery);
          await delivery;
        }),
      );
      if (due.length === SWEEP_BATCH) this.wake(0);
    } catch (err) {
      if (!this.stopping.aborted)
        this.log.error('storage commitment: the pending reports could not be read', { err });
    } finally {
      this.sweeping = false;
    }
  }

  /** The result now: what the index holds under each requested instance. */
  private async decide(
    pending: PendingCommitment,
  ): Promise<{ result: CommitmentResult; stored: ReadonlyMap<string, StoredReference> }> {
    const request = { TransactionUID: pending.TransactionUID, references: pending.references };
    let stored: Map<string, StoredReference> | 'unavailable';
    try {
      stored = await storedReferences(
        this.index,
        pending.references.map((r: CommitmentReference) => r.ReferencedSOPInstanceUID),
      );
    } catch (err) {
      this.log.error('storage commitment: the index could not be asked', {
        err,
        transactionUID: pending.TransactionUID,
      });
      stored = 'unavailable';
    }
    const result = decideCommitment(request, stored);
    (pending.attempts === 0 ? this.log.info : this.log.debug).call(this.log, 'storage commitment', {
      callingAETitle: pending.callingAETitle,
      transactionUID: pending.TransactionUID,
      requested: pending.references.length,
      committed: result.committed.length,
      failed: result.failed.length,
      ...(result.failed.length > 0 ? { failureReasons: failureReasons(result) } : {}),
    });
    return { result, stored: stored === 'unavailable' ? new Map() : stored };
  }

  /** After the grace, on the requester's association if still open; true when the report went there. */
  private async onRequesterAssociation(
    result: CommitmentResult,
    requester: RequesterAssociation,
    answeredAt: number,
    fields: Record<string, unknown>,
  ): Promise<boolean> {
    const wait = REPORT_GRACE_MS - (Date.now() - answeredAt);
    if (wait > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([requester.ended, new Promise((resolve) => (timer = setTimeout(resolve, wait)))]);
      clearTimeout(timer);
    }
    if (!requester.open()) return false;
    try {
      await requester.send(result);
      this.log.info('storage commitment report sent', { ...fields, association: 'same' });
      return true;
    } catch (err) {
      if (!(err instanceof ConnectionClosedError))
        this.log.warn('storage commitment report not accepted on the same association', {
          ...fields,
          err: (err as Error).message,
        });
      return false;
    }
  }

  /**
   * One attempt at the report of a request this process holds (received here, or claimed): built now,
   * sent on the requester's association (when given and open) or a new one; then the request is
   * removed, or kept for the next attempt, or given up.
   */
  private async deliver(
    pending: PendingCommitment,
    via?: { requester: RequesterAssociation; answeredAt: number },
  ): Promise<void> {
    const fields = { callingAETitle: pending.callingAETitle, transactionUID: pending.TransactionUID };
    const remote = this.dimse.remoteAEs.find((a) => a.aet === pending.callingAETitle);
    const source = via?.requester.source ?? remote?.host ?? '';
    const audit = (status: number, detail: string, study?: string) =>
      this.audit?.({
        callingAETitle: pending.callingAETitle,
        action: 'storage-commitment',
        status,
        study,
        source,
        detail,
      });
    try {
      const { result, stored } = await this.decide(pending);
      const sent = async (association: 'same' | 'new') => {
        await this.index.removeCommitment(pending.TransactionUID);
        if (association === 'new')
          this.log.info('storage commitment report sent', {
            ...fields,
            association,
            aet: remote?.aet,
            attempts: pending.attempts + 1,
          });
        for (const a of commitmentAudits(result, stored)) audit(a.status, a.detail, a.study);
      };
      if (via && (await this.onRequesterAssociation(result, via.requester, via.answeredAt, fields)))
        return await sent('same');
      if (this.stopping.aborted) {
        // The listener is closing (its index may be too): the request stays, and is tried again at the
        // next start (or by another process) at once.
        await this.index.deferCommitment(pending.TransactionUID, {
          nextAttempt: Date.now(),
          attempts: pending.attempts,
          error: 'the DICOM listener closed',
        });
        this.log.warn('storage commitment report not sent yet: the DICOM listener is closing', fields);
        return;
      }
      if (!remote) {
        await this.index.removeCommitment(pending.TransactionUID);
        this.log.error(
          `storage commitment report not sent: the requester released its association and its AE title ${pending.callingAETitle} is not in PACS_DIMSE_REMOTE_AES`,
          fields,
        );
        audit(
          502,
          `Storage commitment ${pending.TransactionUID}: report not sent (AE not in PACS_DIMSE_REMOTE_AES)`,
        );
        return;
      }
      try {
        await reportOnNewAssociation(remote, this.dimse.aeTitle, result, this.tls());
      } catch (err) {
        await this.failed(pending, err as Error, remote.aet, fields, audit);
        return;
      }
      await sent('new');
    } catch (err) {
      // The index failed (or closed under a stopping listener): the request stays as it was, and is
      // tried again once its lease ends.
      if (!this.stopping.aborted)
        this.log.error('storage commitment report: the pending request could not be updated', {
          ...fields,
          err,
        });
    }
  }

  /** An attempt on a new association failed: kept for the next one, or given up. */
  private async failed(
    pending: PendingCommitment,
    err: Error,
    aet: string,
    fields: Record<string, unknown>,
    audit: (status: number, detail: string) => void,
  ): Promise<void> {
    const attempts = pending.attempts + 1;
    const now = Date.now();
    const deadline = pending.receivedAt + this.dimse.commitRetryMs;
    // A report the peer received and refused (an error status) is not tried again.
    if (err instanceof ReportRefusedError || now >= deadline) {
      const hours = Math.round(((now - pending.receivedAt) / 3_600_000) * 100) / 100;
      // Removed first: what the log and the audit trail say has happened by then.
      await this.index.removeCommitment(pending.TransactionUID);
      this.log.error('storage commitment report not sent', {
        ...fields,
        aet,
        attempts,
        hours,
        err: err.message,
      });
      audit(
        502,
        `Storage commitment ${pending.TransactionUID}: report not sent to ${aet} (${attempts} attempts in ${hours} h): ${err.message}`,
      );
      return;
    }
    const nextAttempt = Math.min(now + retryDelay(attempts, this.dimse.commitRetryMaxDelayMs), deadline);
    await this.index.deferCommitment(pending.TransactionUID, { nextAttempt, attempts, error: err.message });
    this.log.warn('storage commitment report failed, trying again', {
      ...fields,
      aet,
      attempt: attempts,
      nextAttempt: new Date(nextAttempt).toISOString(),
      err: err.message,
    });
    this.wake(nextAttempt - now);
  }
}

/**
 * The DICOM listener (DIMSE SCP) of the archive, on dcmjs-dimse's PDU and association layer:
 * - association: the called AE title must be ours; a calling AE title outside PACS_DIMSE_ALLOWED_AES, or
 *   listed there with another address than the caller's, is refused (logged and audited); contexts are accepted per negotiation.ts (storage: every standard SOP Class, in the
 *   transfer syntax the caller prefers among those we store);
 * - C-ECHO;
 * - C-STORE: the data set bytes, as received, are streamed behind a File Meta Information header into
 *   `ingestInstance`, the STOW-RS path (same validation, durability, index); the response is sent once
 *   the instance is durable and indexed. Nothing is re-encoded. An association that ends mid data set
 *   leaves nothing stored;
 * - C-FIND (patient and study root, every level): the identifier becomes a QIDO query (query.ts);
 * - C-MOVE to a known remote AE (PACS_DIMSE_REMOTE_AES), C-GET on the same association, with pending
 *   responses after each sub-operation and C-CANCEL;
 * - Storage Commitment Push Model (N-ACTION, then the N-EVENT-REPORT on this association or a new one):
 *   commitment.ts, the requests kept in the index database until reported (commitment-reports.ts).
 * Each association, its outcome and counts are logged (the audit trail, until one exists).
 *
 * The same SCP serves a plain TCP listener (PACS_DIMSE_PORT) and a DICOM TLS one (PACS_DIMSE_TLS_PORT,
 * PS3.15 Annex B): TLS 1.2 or 1.3 with Node's default ciphers; with PACS_DIMSE_TLS_CA, a client
 * certificate signed by one of its CAs (and not revoked by a CRL of PACS_DIMSE_TLS_CRL) is required, and
 * a connection without one is closed right after the handshake, before a byte of DICOM is read; and,
 * unless PACS_DIMSE_TLS_BIND_AE=off, an association whose calling AE title the certificate does not name
 * (negotiation.ts certificateAETitles) is refused like an AE outside the allow-list. The allow-list, the per-address limits and the PDU length guard apply to both.
 * The TLS listener's certificate, key, CAs and CRLs follow their files (tls-files.ts): renewed ones are
 * used from the next handshake on, by setSecureContext.
 */
import net from 'node:net';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import { parseQuery } from '../../dicomweb/qido';
import type { PendingCommitment } from '../../storage/index';
import { DicomwebError, FailureReason } from '../../dicomweb/status';
import type { DimseConfig, DimseTls } from '../config';
import { type IngestContext, type IngestResult, ingestInstance } from '../ingest';
import type { Logger } from '../log';
import { DICOMWEB_ROOT } from '../routes/common';
import { deleteStoredBlob } from '../transcode/copies';
import {
  type CommitmentRequest,
  duplicateTransaction,
  NActionStatus,
  parseCommitmentRequest,
  sendEventReport,
} from './commitment';
import {
  CommitmentReports,
  commitmentAudits,
  type DimseAudit,
  failureReasons,
  type RequesterAssociation,
} from './commitment-reports';
import { ConnectionClosedError, DimseConnection, tlsErrorReason } from './connection';
import {
  type Association,
  type CCancelRequest,
  type CEchoRequest,
  type CEchoResponse,
  type CFindResponse,
  type CGetResponse,
  type CMoveResponse,
  type CStoreResponse,
  type Dataset,
  type CFindRequest,
  type CGetRequest,
  type CMoveRequest,
  type CStoreRequest,
  dimse,
  FILE_META_VERSION_NAME,
  IMPLEMENTATION_CLASS_UID,
  type NActionRequest,
  type NActionResponse,
  type PresentationContext,
  type Response,
} from './library';
import {
  addressMayConnect,
  callerRefusal,
  certificateAETitles,
  certificateRefusal,
  decideContext,
  type DimseService,
  serviceRefusal,
  informationModel,
  PduLengthGuard,
} from './negotiation';
import { fileMetaInformation } from './part10';
import { findResponse, patientsOf, planFind, QRStatus, QueryError } from './query';
import { instancesToRetrieve, outgoing } from './retrieve';
import { isStored, type StoreResult, sendInstance, storeInstances } from './scu';
import { DatasetChannel } from './channel';
import { currentDimseTls } from './tls-files';

const { PresentationContextResult, RejectResult, RejectSource, RejectReason, Status } = dimse.constants;

/** Largest C-FIND answer; beyond it the query ends with 0xA700 (refine the query). */
const MAX_FIND_MATCHES = 50_000;
/** Received data set bytes buffered before the socket is paused (backpressure on the sender). */
const STORE_BUFFER_BYTES = 4 * 1024 * 1024;

/** The ports the DICOM listeners are bound to; undefined for one that is not listening. */
export interface ListeningPorts {
  /** The plain listener (PACS_DIMSE_PORT; the port the OS picked for 0). */
  port?: number;
  /** The TLS listener (PACS_DIMSE_TLS_PORT). */
  tlsPort?: number;
}

export interface DimseListener extends ListeningPorts {
  aeTitle: string;
  /** The ports listened on now (none once closed): what GET /api/dimse reports. */
  listening(): ListeningPorts;
  close(): Promise<void>;
}

/** The port a server is bound to, or undefined when it is not listening. */
function boundPort(server: net.Server | undefined): number | undefined {
  const addr = server?.listening ? server.address() : null;
  return typeof addr === 'object' && addr ? addr.port : undefined;
}

interface Gateway {
  ctx: IngestContext;
  dimse: DimseConfig;
  log: Logger;
  /** C-STORE ingests in progress (waited for at close). */
  ingests: Set<Promise<unknown>>;
  /** The audit trail (server/auth/audit.ts): DIMSE operations are recorded like HTTP requests. */
  audit?: DimseAudit;
  /** Aborted at close: storage commitment reports stop being tried (their requests stay recorded). */
  stopping: AbortController;
  /**
   * Storage commitment requests not reported yet, recorded in the index database (every server process
   * sees them, a restart keeps them) and their reports (commitment-reports.ts).
   */
  reports: CommitmentReports;
}

export type { DimseAudit };

type FindElements = Record<string, unknown>;

const errorComment = (s: string) => s.replace(/[\\\r\n]/g, ' ').slice(0, 64);

/** The C-STORE status of an ingest result (the ingest failure reasons are C-STORE statuses). */
function storeStatus(r: IngestResult): { status: number; comment?: string } {
  if (r.ok) return { status: Status.Success };
  return { status: r.failed.failureReason, comment: r.failed.message };
}

interface Counts {
  stored: number;
  storeFailed: number;
  finds: number;
  moves: number;
  gets: number;
  commitments: number;
}

const hex = (n: number) => `0x${n.toString(16).padStart(4, '0')}`;

class ArchiveScp extends DimseConnection {
  private callingAETitle = '';
  private readonly started = Date.now();
  private readonly counts: Counts = {
    stored: 0,
    storeFailed: 0,
    finds: 0,
    moves: 0,
    gets: 0,
    commitments: 0,
  };
  private outcome = 'closed';
  private readonly log: Logger;
  /** C-STOREs whose data set is being received or stored. */
  private readonly stores = new Map<CStoreRequest, { channel: Writable; result: Promise<IngestResult> }>();
  /** Message IDs of C-MOVE and C-GET requests the caller cancelled. */
  private readonly cancelled = new Set<number>();
  /** Resolved when the association is released, aborted or lost. */
  private readonly ended: Promise<void>;
  private end: () => void = () => {};

  constructor(
    socket: net.Socket,
    private readonly gw: Gateway,
    /** On the TLS listener: the protocol and the client certificate's subject, on every log line. */
    tlsFields?: { tls: string; clientCertificate?: string },
    /**
     * On the TLS listener with PACS_DIMSE_TLS_BIND_AE: the AE titles the client certificate names, the
     * only calling AE titles accepted (certificateAETitles).
     */
    private readonly certificateAETitles?: readonly string[],
  ) {
    super(socket);
    this.log = gw.log.child({ dimse: `${socket.remoteAddress}:${socket.remotePort}`, ...tlsFields });
    this.source = socket.remoteAddress ?? '';
    this.ended = new Promise((resolve) => {
      this.end = resolve;
    });
  }

  private readonly source: string;

  private audit(action: string, status: number, detail: string, study?: string): void {
    this.gw.audit?.({
      callingAETitle: this.callingAETitle,
      action,
      status,
      study,
      source: this.source,
      detail,
    });
  }

  /**
   * The status of a query or retrieve that failed: the query's own status for a refused query, Unable
   * to process for a request the archive refused, 0xC001 for anything unexpected (logged as an error).
   */
  /**
   * Throws QueryError 0x0124 (Refused: Not authorized) when PACS_DIMSE_ALLOWED_AES does not give the
   * calling AE this service; the refusal is logged and audited (403) by the caller's error path.
   */
  private requireService(service: DimseService, action: string, operation: string): void {
    const refusal = serviceRefusal(this.gw.dimse.allowedAEs, this.callingAETitle, this.source, service);
    if (!refusal) return;
    this.audit(action, 403, `${operation} refused: ${refusal}`);
    throw new QueryError(NOT_AUTHORIZED, refusal);
  }

  private queryFailure(operation: string, err: unknown): number {
    if (err instanceof QueryError || err instanceof DicomwebError) {
      this.log.info(`${operation} refused`, { callingAETitle: this.callingAETitle, reason: err.message });
      return err instanceof QueryError ? err.status : QRStatus.UnableToProcess;
    }
    this.log.error(`${operation} failed`, { err, callingAETitle: this.callingAETitle });
    return 0xc001;
  }

  // ── Association ─────────────────────────────────────────────────────────────────────────────────

  override associationRequested(assoc: Association): void {
    this.association = assoc;
    const calling = assoc.getCallingAeTitle().trim();
    const called = assoc.getCalledAeTitle().trim();
    this.callingAETitle = calling;
    const refuse = (reason: number, why: string) => {
      this.outcome = 'rejected';
      this.log.warn('association rejected', { callingAETitle: calling, calledAETitle: called, reason: why });
      this.audit('dimse-associate', 403, `association refused: ${why}`);
      this.sendAssociationReject(RejectResult.Permanent, RejectSource.ServiceUser, reason);
      this.socket.end(); // the requester closes too; this bounds a peer that would not
    };
    if (called !== this.gw.dimse.aeTitle) {
      refuse(RejectReason.CalledAeNotRecognized, `called AE title is not ${this.gw.dimse.aeTitle}`);
      return;
    }
    const refusal =
      callerRefusal(this.gw.dimse.allowedAEs, calling, this.source) ??
      (this.certificateAETitles && certificateRefusal(this.certificateAETitles, calling));
    if (refusal !== undefined) {
      refuse(RejectReason.CallingAeNotRecognized, refusal);
      return;
    }
    let accepted = 0;
    for (const { id } of assoc.getPresentationContexts()) {
      const pc: PresentationContext = assoc.getPresentationContext(id);
      const decision = decideContext(pc.getAbstractSyntaxUid(), pc.getTransferSyntaxUids());
      if ('accept' in decision) {
        pc.setResult(PresentationContextResult.Accept, decision.accept);
        accepted++;
      } else if (decision.reject === 'abstract-syntax-not-supported') {
        pc.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      } else {
        pc.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
      }
    }
    this.outcome = 'accepted';
    this.log.info('association accepted', {
      callingAETitle: calling,
      calledAETitle: called,
      contexts: assoc.getPresentationContexts().length,
      accepted,
    });
    this.sendAssociationAccept();
  }

  override associationReleaseRequested(): void {
    this.outcome = 'released';
    this.end();
    this.sendAssociationReleaseResponse();
  }

  override abort(source: number, reason: number): void {
    this.outcome = 'aborted';
    this.end();
    this.log.warn('association aborted by the peer', { callingAETitle: this.callingAETitle, source, reason });
    this.failStores(new Error('association aborted'));
  }

  protected override networkError(err: Error): void {
    if (this.outcome === 'accepted' || this.outcome === 'closed') this.outcome = 'network error';
    this.log.warn('DIMSE network error', { callingAETitle: this.callingAETitle, err: err.message });
    this.failStores(err);
  }

  protected override connectionClosed(): void {
    this.end();
    if (this.outcome === 'accepted') this.outcome = 'closed without release';
    this.failStores(new Error('connection closed'));
    if (this.callingAETitle === '') return; // no association was ever requested (port probe, garbage)
    this.log.info('association ended', {
      callingAETitle: this.callingAETitle,
      outcome: this.outcome,
      ms: Date.now() - this.started,
      ...this.counts,
    });
  }

  /** Data sets still arriving when the association ends: their ingest fails, nothing is kept. */
  private failStores(err: Error): void {
    for (const { channel } of this.stores.values()) if (channel instanceof DatasetChannel) channel.fail(err);
  }

  // ── C-ECHO ─────────────────────────────────────────────────────────────────────────────────────

  override cEchoRequest(request: CEchoRequest, callback: (response: CEchoResponse) => void): void {
    const response = dimse.responses.CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }

  // ── C-STORE ────────────────────────────────────────────────────────────────────────────────────

  /** First P-DATA of a C-STORE data set: starts the ingest, fed by the bytes as they arrive. */
  override createStoreWritableStream(context: PresentationContext, request: CStoreRequest): Writable {
    // The library reads data on any context: one that was not accepted, or of another SOP Class than the
    // command's, gets its data set discarded and a refusal.
    if (
      context.getResult() !== PresentationContextResult.Accept ||
      context.getAbstractSyntaxUid() !== request.getAffectedSopClassUid()
    ) {
      const message = `SOP Class ${request.getAffectedSopClassUid()} not accepted on presentation context ${context.getPresentationContextId()}`;
      const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
      this.stores.set(request, {
        channel: discard,
        result: Promise.resolve({
          ok: false,
          failed: { failureReason: FailureReason.SOPClassNotSupported, message },
        }),
      });
      return discard;
    }
    const refusal = serviceRefusal(this.gw.dimse.allowedAEs, this.callingAETitle, this.source, 'store');
    if (refusal) {
      const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
      this.stores.set(request, {
        channel: discard,
        result: Promise.resolve({ ok: false, failed: { failureReason: NOT_AUTHORIZED, message: refusal } }),
      });
      return discard;
    }
    const channel = new DatasetChannel(STORE_BUFFER_BYTES, (full) => {
      if (full) this.socket.pause();
      else this.socket.resume();
    });
    // The header depends only on the instance and its transfer syntax (not on the sender, nor on this
    // software's version), so the same data set sent again, from any AE, is the same file: an identical
    // instance, not a conflicting one. Who sent it is in the log.
    const header = fileMetaInformation({
      MediaStorageSOPClassUID: request.getAffectedSopClassUid(),
      MediaStorageSOPInstanceUID: request.getAffectedSopInstanceUid(),
      TransferSyntaxUID: context.getAcceptedTransferSyntaxUid() ?? '',
      ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
      ImplementationVersionName: FILE_META_VERSION_NAME,
    });
    async function* file(): AsyncGenerator<Uint8Array> {
      yield header;
      yield* channel.chunks();
    }
    const sopInstanceUID = request.getAffectedSopInstanceUid();
    const ctx = { ...this.gw.ctx, log: this.log.child({ callingAETitle: this.callingAETitle }) };
    const result = ingestInstance(ctx, file(), {
      publicRoot: DICOMWEB_ROOT,
      expectedSOPClassUID: request.getAffectedSopClassUid(),
      expectedSOPInstanceUID: sopInstanceUID,
    })
      .then(async (r) => {
        if (r.ok && r.obsoleteBlobKey)
          await deleteStoredBlob(this.gw.ctx.blobs, r.obsoleteBlobKey).catch(() => {});
        return r;
      })
      .catch((err): IngestResult => {
        // The data set did not arrive whole (association aborted, connection lost): nothing was kept.
        this.log.warn('C-STORE not completed', { sopInstanceUID, err: (err as Error).message });
        return {
          ok: false,
          failed: { failureReason: FailureReason.ProcessingFailure, message: (err as Error).message },
        };
      });
    this.gw.ingests.add(result);
    void result.finally(() => this.gw.ingests.delete(result));
    this.stores.set(request, { channel, result });
    return channel;
  }

  /** Last P-DATA: the library wants a Dataset for cStoreRequest; the real work is the ingest above. */
  override createDatasetFromStoreWritableStream(
    _writable: unknown,
    context: PresentationContext,
    callback: (dataset: Dataset) => void,
  ): void {
    callback(new dimse.Dataset({}, context.getAcceptedTransferSyntaxUid()));
  }

  override cStoreRequest(request: CStoreRequest, callback: (response: CStoreResponse) => void): void {
    const store = this.stores.get(request);
    this.stores.delete(request);
    const respond = (status: number, comment?: string) => {
      const response = dimse.responses.CStoreResponse.fromRequest(request);
      response.setStatus(status);
      if (comment && status !== Status.Success) response.setErrorComment(errorComment(comment));
      callback(response);
    };
    if (!store) {
      respond(0xc000, 'C-STORE request without a data set');
      return;
    }
    void store.result.then((r) => {
      const { status, comment } = storeStatus(r);
      this.audit(
        'store',
        r.ok ? 200 : r.failed.failureReason === NOT_AUTHORIZED ? 403 : 400,
        `C-STORE ${request.getAffectedSopInstanceUid()} 0x${status.toString(16).padStart(4, '0')}`,
        r.ok ? r.StudyInstanceUID : undefined,
      );
      if (r.ok) this.counts.stored++;
      else {
        this.counts.storeFailed++;
        this.log.warn('C-STORE failed', {
          callingAETitle: this.callingAETitle,
          sopInstanceUID: request.getAffectedSopInstanceUid(),
          status: `0x${status.toString(16).padStart(4, '0')}`,
          reason: comment,
        });
      }
      if (!this.closed) respond(status, comment);
    });
  }

  // ── C-FIND ─────────────────────────────────────────────────────────────────────────────────────

  override cFindRequest(request: CFindRequest, callback: (responses: CFindResponse[]) => void): void {
    this.counts.finds++;
    void this.find(request).then(callback);
  }

  private async find(request: CFindRequest): Promise<CFindResponse[]> {
    const started = Date.now();
    const sopClass = request.getAffectedSopClassUid();
    const response = (status: number, elements?: FindElements, comment?: string) => {
      const r = dimse.responses.CFindResponse.fromRequest(request);
      r.setAffectedSopClassUid(sopClass);
      r.setStatus(status);
      if (elements) r.setDataset(new dimse.Dataset(elements, this.transferSyntaxOf(request)));
      if (comment) r.setErrorComment(errorComment(comment));
      return r;
    };
    const model = informationModel(sopClass);
    const elements = request.getDataset()?.getElements() ?? {};
    try {
      this.requireService('find', 'search', 'C-FIND');
      if (!model) throw new QueryError(QRStatus.IdentifierDoesNotMatchSOPClass, 'not a query/retrieve model');
      const plan = planFind(model, elements);
      const query = parseQuery(plan.qidoLevel, plan.params);
      query.limit = plan.level === 'PATIENT' ? undefined : MAX_FIND_MATCHES;
      const { matches, more } = await this.gw.ctx.index.search(query);
      let results = matches as Parameters<typeof findResponse>[1][];
      if (plan.level === 'PATIENT') results = patientsOf(results);
      const tooMany = more || results.length > MAX_FIND_MATCHES;
      results = results.slice(0, MAX_FIND_MATCHES);
      this.audit('search', 200, `C-FIND ${plan.level} ${results.length} matches`);
      this.log.info('C-FIND', {
        callingAETitle: this.callingAETitle,
        model,
        level: plan.level,
        matches: results.length,
        ms: Date.now() - started,
      });
      const out = results.map((m) => response(Status.Pending, findResponse(plan, m, this.gw.dimse.aeTitle)));
      out.push(
        tooMany
          ? response(
              QRStatus.OutOfResources,
              undefined,
              `more than ${MAX_FIND_MATCHES} matches: refine the query`,
            )
          : response(Status.Success),
      );
      return out;
    } catch (err) {
      const status = this.queryFailure('C-FIND', err);
      return [response(status, undefined, (err as Error).message)];
    }
  }

  /** The transfer syntax of the context a request came on (its data set arrived in it). */
  private transferSyntaxOf(request: CFindRequest | CMoveRequest | CGetRequest): string {
    return request.getDataset()?.getTransferSyntaxUid() ?? '1.2.840.10008.1.2';
  }

  // ── C-MOVE and C-GET ───────────────────────────────────────────────────────────────────────────

  override cCancelRequest(request: CCancelRequest): void {
    this.cancelled.add(request.getMessageIdBeingRespondedTo());
  }

  override cMoveRequest(request: CMoveRequest, _callback: (responses: CMoveResponse[]) => void): void {
    this.counts.moves++;
    void this.retrieve(request, 'move');
  }

  override cGetRequest(request: CGetRequest, _callback: (responses: CGetResponse[]) => void): void {
    this.counts.gets++;
    void this.retrieve(request, 'get');
  }

  /**
   * Runs a C-MOVE (sub-operations on an association to the destination) or a C-GET (on this one),
   * answering Pending after each sub-operation and a final status with the counts (PS3.4 C.4.2.3, C.4.3.3).
   */
  private async retrieve(request: CMoveRequest | CGetRequest, kind: 'move' | 'get'): Promise<void> {
    const started = Date.now();
    const sopClass = request.getAffectedSopClassUid();
    const messageId = request.getMessageId();
    const counts = { remaining: 0, completed: 0, failed: 0, warning: 0 };
    const failedUIDs: string[] = [];
    const send = (
      status: number,
      opts: { remaining?: boolean; comment?: string; failedList?: boolean } = {},
    ) => {
      if (this.closed) return;
      const r =
        kind === 'move'
          ? dimse.responses.CMoveResponse.fromRequest(request as CMoveRequest)
          : dimse.responses.CGetResponse.fromRequest(request as CGetRequest);
      r.setAffectedSopClassUid(sopClass);
      r.setStatus(status);
      if (opts.remaining) r.setRemaining(counts.remaining);
      r.setCompleted(counts.completed);
      r.setFailures(counts.failed);
      r.setWarnings(counts.warning);
      if (opts.comment) r.setErrorComment(errorComment(opts.comment));
      if (opts.failedList && failedUIDs.length > 0)
        r.setDataset(
          new dimse.Dataset({ FailedSOPInstanceUIDList: failedUIDs }, this.transferSyntaxOf(request)),
        );
      this.sendResponse(request, r as Response);
    };
    const tally = (r: StoreResult) => {
      counts.remaining--;
      if (r.status === 0) counts.completed++;
      else if (isStored(r)) counts.warning++;
      else {
        counts.failed++;
        failedUIDs.push(r.SOPInstanceUID);
      }
      send(Status.Pending, { remaining: true });
    };
    const isCancelled = () => this.cancelled.has(messageId) || this.closed;
    try {
      this.requireService(kind, 'retrieve', `C-${kind.toUpperCase()}`);
      const model = informationModel(sopClass);
      if (!model) throw new QueryError(QRStatus.IdentifierDoesNotMatchSOPClass, 'not a query/retrieve model');
      const destination =
        kind === 'move' ? String(request.getCommandDataset().getElement('MoveDestination') ?? '').trim() : '';
      const remote = this.gw.dimse.remoteAEs.find((a) => a.aet === destination);
      if (kind === 'move' && !remote)
        throw new QueryError(
          QRStatus.MoveDestinationUnknown,
          `move destination ${destination} is not a known AE`,
        );
      const instances = await instancesToRetrieve(
        this.gw.ctx.index,
        model,
        request.getDataset()?.getElements() ?? {},
      );
      counts.remaining = instances.length;
      const items = instances.map((i) => outgoing(this.gw.ctx.blobs, i));
      let associationFailure: string | undefined;
      if (remote) {
        const results = await storeInstances(remote, items, {
          callingAETitle: this.gw.dimse.aeTitle,
          tls: currentDimseTls(this.gw.dimse, this.log),
          log: this.log,
          moveOriginator: { aeTitle: this.callingAETitle, messageId },
          onResult: tally,
          cancelled: isCancelled,
        });
        if (results.length > 0 && results.every((r) => r.noAssociation))
          associationFailure = results[0].error;
      } else {
        for (const item of items) {
          if (isCancelled()) break;
          tally(await sendInstance(this, this.getAssociation(), item));
        }
      }
      const status = isCancelled()
        ? Status.Cancel
        : associationFailure !== undefined
          ? QRStatus.SubOperationsOutOfResources
          : counts.failed > 0 || counts.warning > 0
            ? QRStatus.SubOperationsCompleteWithFailures
            : Status.Success;
      for (const study of new Set(instances.map((i) => i.StudyInstanceUID)))
        this.audit(
          'retrieve',
          status === Status.Success ? 200 : 500,
          `C-${kind.toUpperCase()}${remote ? ` to ${remote.aet}` : ''}: ${counts.completed} sent, ${counts.failed} failed`,
          study,
        );
      this.log.info(kind === 'move' ? 'C-MOVE' : 'C-GET', {
        callingAETitle: this.callingAETitle,
        destination: remote?.aet,
        instances: instances.length,
        completed: counts.completed,
        warning: counts.warning,
        failed: counts.failed,
        status: `0x${status.toString(16).padStart(4, '0')}`,
        ms: Date.now() - started,
      });
      send(status, {
        remaining: status === Status.Cancel,
        comment: associationFailure,
        failedList: status !== Status.Success,
      });
    } catch (err) {
      if (err instanceof ConnectionClosedError) return;
      const status = this.queryFailure(`C-${kind.toUpperCase()}`, err);
      send(status, { comment: (err as Error).message });
    } finally {
      this.cancelled.delete(messageId);
    }
  }

  // ── Storage Commitment Push Model (commitment.ts) ─────────────────────────────────────────────

  override nActionRequest(request: NActionRequest, callback: (response: NActionResponse) => void): void {
    const respond = (status: number, comment?: string) => {
      const response = dimse.responses.NActionResponse.fromRequest(request);
      response.setStatus(status);
      if (comment) response.setErrorComment(errorComment(comment));
      callback(response);
    };
    let parsed: CommitmentRequest;
    try {
      // Commitment of what an AE stored: for AEs that may store.
      this.requireService('store', 'storage-commitment', 'N-ACTION');
      parsed = parseCommitmentRequest(
        {
          RequestedSOPClassUID: request.getRequestedSopClassUid(),
          RequestedSOPInstanceUID: request.getRequestedSopInstanceUid(),
          ActionTypeID: request.getActionTypeId(),
        },
        request.getDataset()?.getElements(),
      );
    } catch (err) {
      const status = err instanceof QueryError ? err.status : 0x0110;
      this.log.warn('storage commitment request refused', {
        callingAETitle: this.callingAETitle,
        status: hex(status),
        reason: (err as Error).message,
      });
      if (status !== NOT_AUTHORIZED)
        this.audit('storage-commitment', 400, `N-ACTION refused ${hex(status)}: ${(err as Error).message}`);
      respond(status, (err as Error).message);
      return;
    }
    this.counts.commitments++;
    void this.recordCommitment(parsed, respond);
  }

  /**
   * Records the request in the index database, then answers it (0000: received, PS3.4 J.3.2.1.3; even
   * a duplicate Transaction UID, which its report refuses), so that an acknowledged request is never
   * lost; 0x0110 when it cannot be recorded. Then reports (commitment-reports.ts).
   */
  private async recordCommitment(
    request: CommitmentRequest,
    respond: (status: number, comment?: string) => void,
  ): Promise<void> {
    let pending: PendingCommitment | undefined;
    try {
      pending = await this.gw.reports.record(request, this.callingAETitle, this.gw.dimse.aeTitle, Date.now());
    } catch (err) {
      this.log.error('storage commitment request not recorded: the index could not be written', {
        err,
        callingAETitle: this.callingAETitle,
        transactionUID: request.TransactionUID,
      });
      this.audit('storage-commitment', 500, `Storage commitment ${request.TransactionUID}: not recorded`);
      respond(NActionStatus.ProcessingFailure, 'the request could not be recorded');
      return;
    }
    respond(Status.Success);
    const answeredAt = Date.now();
    if (pending) this.gw.reports.reportReceived(pending, this.requester(), answeredAt);
    else this.refuseDuplicate(request, answeredAt);
  }

  /** This association, as the place for a storage commitment report while the requester keeps it open. */
  private requester(): RequesterAssociation {
    return {
      open: () => !this.closed && this.outcome === 'accepted',
      ended: this.ended,
      send: (result) => sendEventReport(this, this.getAssociation(), result, this.gw.dimse.aeTitle),
      source: this.source,
    };
  }

  /**
   * A request whose Transaction UID an earlier one, not reported yet, still uses (in any server process):
   * its report fails every instance with 0x0131 (commitment.ts duplicateTransaction); the earlier
   * transaction is left alone.
   */
  private refuseDuplicate(request: CommitmentRequest, answeredAt: number): void {
    const result = duplicateTransaction(request);
    this.log.warn('storage commitment: Transaction UID already in use by a request not reported yet', {
      callingAETitle: this.callingAETitle,
      transactionUID: request.TransactionUID,
      requested: request.references.length,
      failureReasons: failureReasons(result),
    });
    for (const a of commitmentAudits(result, new Map()))
      this.audit('storage-commitment', a.status, a.detail, a.study);
    this.gw.reports.reportDuplicate(result, this.callingAETitle, this.requester(), answeredAt);
  }

  private getAssociation(): Association {
    if (!this.association) throw new Error('no association');
    return this.association;
  }
}

/** 0x0124 Refused: Not authorized (PS3.7 Annex C): a service PACS_DIMSE_ALLOWED_AES does not give the AE. */
const NOT_AUTHORIZED = 0x0124;

/** Connections one address may hold at once (a modality opens a few; a flood must not fill the listener). */
const MAX_CONNECTIONS_PER_ADDRESS = 32;
/** A TLS handshake not finished by then is dropped (half-open connections must not hold slots). */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** The subject of a certificate on one line ("C=VN, O=Benh vien tinh, CN=CT1"). */
function subjectOf(cert: { subject: string } | undefined): string | undefined {
  return cert?.subject.split('\n').join(', ');
}

/** Why a client certificate was refused, from OpenSSL's verification error code. */
function untrustedReason(code: string): string {
  switch (code) {
    case 'CERT_REVOKED':
      return 'client certificate revoked (PACS_DIMSE_TLS_CRL)';
    case 'UNABLE_TO_GET_CRL':
      return 'client certificate not checked: no CRL of its CA in PACS_DIMSE_TLS_CRL (UNABLE_TO_GET_CRL)';
    case 'CRL_HAS_EXPIRED':
      return 'client certificate not checked: the CRL of its CA is past its next update, publish a new one (PACS_DIMSE_TLS_CRL, CRL_HAS_EXPIRED)';
    default:
      return `client certificate not trusted (PACS_DIMSE_TLS_CA): ${code}`;
  }
}

/**
 * Starts the DICOM listeners on host: the plain one on PACS_DIMSE_PORT and the TLS one on
 * PACS_DIMSE_TLS_PORT, those set (port 0: any free port). close() stops listening, aborts the open
 * associations and waits for the C-STOREs being stored to settle.
 */
export async function startDimseListener(
  ctx: IngestContext,
  dimseConfig: DimseConfig,
  host: string,
  log: Logger,
  audit?: DimseAudit,
): Promise<DimseListener> {
  const stopping = new AbortController();
  const gw: Gateway = {
    ctx,
    dimse: dimseConfig,
    log,
    ingests: new Set(),
    audit,
    stopping,
    reports: new CommitmentReports(ctx.index, dimseConfig, log, audit, stopping.signal, () =>
      currentDimseTls(dimseConfig, log),
    ),
  };
  const sockets = new Set<net.Socket>();
  const perAddress = new Map<string, number>();
  const announced = dimse.Implementation.getMaxPduLength();

  /**
   * Before a byte is read: an address no allowed AE may call from, or one that already holds its share
   * of connections (both listeners together), is closed at once (connections left idle would otherwise
   * fill the listener). True when the connection may go on.
   */
  const admit = (socket: net.Socket): boolean => {
    const source = socket.remoteAddress ?? '';
    const refused = !addressMayConnect(dimseConfig.allowedAEs, source)
      ? 'address not in PACS_DIMSE_ALLOWED_AES'
      : (perAddress.get(source) ?? 0) >= MAX_CONNECTIONS_PER_ADDRESS
        ? `more than ${MAX_CONNECTIONS_PER_ADDRESS} connections from this address`
        : undefined;
    if (refused) {
      log.warn('DICOM connection refused', { source, reason: refused });
      socket.destroy();
      return false;
    }
    perAddress.set(source, (perAddress.get(source) ?? 0) + 1);
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      const n = (perAddress.get(source) ?? 1) - 1;
      if (n > 0) perAddress.set(source, n);
      else perAddress.delete(source);
    });
    socket.setNoDelay(true);
    return true;
  };

  /** The association layer on a connection (a TLS one once its handshake has passed). */
  const serve = (
    socket: net.Socket,
    tlsFields?: { tls: string; clientCertificate?: string },
    aeTitles?: readonly string[],
  ) => {
    const source = socket.remoteAddress ?? '';
    // A PDU declaring more than it may be: closed before the network library gathers it in memory.
    const guard = new PduLengthGuard(announced);
    const watch = (chunk: Buffer) => {
      const problem = guard.push(chunk);
      if (problem === undefined) return;
      socket.off('data', watch);
      log.warn('DICOM connection closed', { source, reason: problem });
      socket.destroy();
    };
    socket.on('data', watch);
    new ArchiveScp(socket, gw, tlsFields, aeTitles);
  };

  const listen = async (server: net.Server, port: number, what: string): Promise<void> => {
    server.maxConnections = 256;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log.error(`${what} error`, { err }));
  };

  const servers: net.Server[] = [];
  const closeServers = () =>
    Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  let plain: net.Server | undefined;
  let secure: net.Server | undefined;
  try {
    if (dimseConfig.port !== undefined) {
      plain = net.createServer((socket) => {
        if (admit(socket)) serve(socket);
      });
      servers.push(plain);
      await listen(plain, dimseConfig.port, 'DICOM listener');
    }
    if (dimseConfig.tlsPort !== undefined) {
      const credentials = dimseConfig.tls;
      if (!credentials)
        throw new Error('PACS_DIMSE_TLS_PORT needs PACS_DIMSE_TLS_CERT and PACS_DIMSE_TLS_KEY');
      const requireCertificate = credentials.ca !== undefined;
      const contextOf = (material: DimseTls): tls.SecureContextOptions => ({
        cert: material.cert,
        key: material.key,
        ...(material.ca ? { ca: material.ca } : {}),
        ...(material.crl ? { crl: material.crl } : {}),
        minVersion: 'TLSv1.2',
      });
      // Handshakes only: the TCP connections come from the listener below, once admitted.
      let inUse = credentials;
      const handshakes = tls.createServer({
        ...contextOf(credentials),
        requestCert: requireCertificate,
        // Checked below, so that a refused certificate is logged with its reason.
        rejectUnauthorized: false,
        handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
      });
      handshakes.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
        const reason =
          err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || err.code === 'ERR_SSL_HTTP_REQUEST'
            ? `not a TLS client (${tlsErrorReason(err)}): a plain association to the TLS port?`
            : tlsErrorReason(err);
        log.warn('DICOM TLS handshake failed', { source: socket.remoteAddress, reason });
        socket.destroy();
      });
      handshakes.on('secureConnection', (socket: tls.TLSSocket) => {
        const clientCertificate = subjectOf(socket.getPeerX509Certificate());
        if (requireCertificate && !socket.authorized) {
          const reason = clientCertificate
            ? untrustedReason(String(socket.authorizationError))
            : 'no client certificate (PACS_DIMSE_TLS_CA requires one)';
          log.warn('DICOM TLS handshake failed', { source: socket.remoteAddress, reason, clientCertificate });
          socket.destroy();
          return;
        }
        serve(
          socket,
          { tls: socket.getProtocol() ?? 'TLS', ...(clientCertificate ? { clientCertificate } : {}) },
          // The calling AE titles the certificate may use (checked at the association request).
          requireCertificate && dimseConfig.tlsBindAE
            ? certificateAETitles(socket.getPeerCertificate())
            : undefined,
        );
      });
      secure = net.createServer((socket) => {
        if (!admit(socket)) return;
        // Renewed files (tls-files.ts): this handshake and the next ones use them.
        const material = currentDimseTls(dimseConfig, log) ?? inUse;
        if (material !== inUse) {
          handshakes.setSecureContext(contextOf(material));
          inUse = material;
        }
        handshakes.emit('connection', socket);
      });
      servers.push(secure);
      await listen(secure, dimseConfig.tlsPort, 'DICOM TLS listener');
    }
  } catch (err) {
    await closeServers();
    throw err;
  }
  // The storage commitment requests left pending by a restart or by another process, then every few seconds.
  gw.reports.start();
  const listening = (): ListeningPorts => ({ port: boundPort(plain), tlsPort: boundPort(secure) });
  return {
    ...listening(),
    aeTitle: dimseConfig.aeTitle,
    listening,
    close: async () => {
      gw.stopping.abort();
      const closed = closeServers();
      for (const s of sockets) s.destroy();
      await closed;
      await Promise.allSettled([...gw.ingests]);
      await gw.reports.close();
    },
  };
}

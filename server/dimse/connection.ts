/**
 * What both ends of our associations share on top of dcmjs-dimse's network layer:
 * - `RawDataset`: a data set sent exactly as stored. dcmjs-dimse encodes a Dataset's elements with dcmjs
 *   before sending; this one hands over the stored bytes instead (no re-encoding: private elements,
 *   undefined lengths, padding and pixel data go out as received), and is parsed only if the peer
 *   accepted another uncompressed transfer syntax and the library has to convert it.
 * - `DimseConnection`: one association (either side), with `request()` to send a request and wait for
 *   its final response, and the failure of whatever is in flight when the connection ends.
 *
 * dcmjs-dimse exports its network class only as the base of `Scp`; the outbound side uses it too (the
 * library's `Client` needs every data set in memory before the association starts).
 */
import type { Socket } from 'node:net';
import { type Association, dimse, type Request, type Response } from './library';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from './negotiation';

const EXPLICIT_VR_BIG_ENDIAN = '1.2.840.10008.1.2.2';
/** Transfer syntaxes dcmjs-dimse converts between without codecs (dcmjs re-encodes the elements). */
export const NATIVE_SYNTAXES: readonly string[] = [
  EXPLICIT_VR_LITTLE_ENDIAN,
  IMPLICIT_VR_LITTLE_ENDIAN,
  EXPLICIT_VR_BIG_ENDIAN,
];

/**
 * Timeouts of an association, in ms. The library's PDU timeout counts only PDUs received, so a long
 * C-MOVE (the requester waits, silent) or a large C-STORE we send would be cut: it is set high, and the
 * socket idle timeout (any traffic, either way) guards against dead peers.
 */
export const NETWORK_OPTIONS = {
  connectTimeout: 5 * 60_000,
  associationTimeout: 30_000,
  pduTimeout: 60 * 60_000,
};

export class RawDataset extends dimse.Dataset {
  private raw: Buffer | undefined;
  private parsed: Record<string, unknown> | undefined;

  constructor(raw: Uint8Array, transferSyntaxUID: string, sopClassUID: string, sopInstanceUID: string) {
    super({ SOPClassUID: sopClassUID, SOPInstanceUID: sopInstanceUID }, transferSyntaxUID);
    // P-DATA fragments are even (PS3.8 9.3.5.1); a deflated data set of odd length gets its pad byte.
    this.raw = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    if (this.raw.length % 2 === 1) this.raw = Buffer.concat([this.raw, Buffer.alloc(1)]);
  }

  /** The stored bytes, as they are: what the library writes into P-DATA-TF PDUs. */
  override getDenaturalizedDataset(): Buffer {
    if (!this.raw) throw new Error('data set already sent and released');
    return this.raw;
  }

  /** Only when the library must convert the data set to another uncompressed transfer syntax. */
  override getElements(): Record<string, unknown> {
    if (!this.parsed) {
      const ts = this.getTransferSyntaxUid();
      if (!NATIVE_SYNTAXES.includes(ts)) throw new Error(`cannot convert a data set in ${ts}`);
      this.parsed = new dimse.Dataset(this.getDenaturalizedDataset(), ts).getElements();
    }
    return this.parsed;
  }

  /** Drops the bytes once sent (the library keeps every request of an association). */
  release(): void {
    this.raw = undefined;
    this.parsed = undefined;
  }
}

export class ConnectionClosedError extends Error {}

/** The state of dcmjs-dimse's network class that `DimseConnection` corrects (not in its typings). */
interface LibraryNetworkState {
  /** Receives the PDVs of the message being read; parsed when its last fragment arrives. */
  dimseStream: unknown;
  /** The requests sent, searched in order for the Message ID of each response. */
  pending: Request[];
  _performDimse(context: unknown, message: { hasDataset(): boolean }): void;
  logId: string;
  logCommandDatasets: boolean;
  logDatasets: boolean;
  datasetWriteOptions: unknown;
  datasetNameMap: unknown;
  statistics: { addBytesSent(n: number): void };
}

/** The largest P-DATA-TF PDU dcmjs-dimse sends, whatever the peer's maximum. */
const LIBRARY_MAX_PDU_LENGTH = 4 * 1024 * 1024;

/** A P-DATA-TF PDU of one PDV (PS3.8 9.3.5): its 12-byte header, then the fragment. */
function pdvHeader(contextId: number, length: number, command: boolean, last: boolean): Buffer {
  const h = Buffer.allocUnsafe(12);
  h[0] = 0x04;
  h[1] = 0;
  h.writeUInt32BE(length + 6, 2);
  h.writeUInt32BE(length + 2, 6);
  h[10] = contextId;
  h[11] = (last ? 2 : 0) | (command ? 1 : 0);
  return h;
}

export class DimseConnection extends dimse.Scp {
  protected association: Association | undefined;
  /** The request waiting for its final response, if any. */
  private inFlight: ((err: Error) => void) | undefined;
  protected closed = false;
  readonly socket: Socket;

  constructor(socket: Socket) {
    super(socket, NETWORK_OPTIONS);
    this.socket = socket;
    // What the library's own Server sets on an accepted socket; with connectedTime (which it leaves
    // unset), a peer that sends no A-ASSOCIATE-RQ is dropped after the association timeout.
    const state = this as unknown as { connected: boolean; connectedTime?: number };
    state.connected = true;
    if (!socket.connecting) state.connectedTime = Date.now();
    this.on('close', () => {
      this.closed = true;
      this.inFlight?.(new ConnectionClosedError('the connection closed before the response'));
      this.connectionClosed();
    });
    this.on('networkError', (err: Error) => {
      this.networkError(err);
      this.socket.destroy();
    });
    // After an A-ABORT, the receiver closes the transport connection (PS3.8 7.3.2).
    this.on('abort', () => this.socket.destroy());
    // dcmjs-dimse starts a new buffer for the next message only after one with a data set: after a
    // message without one (every C-STORE, C-ECHO and N-EVENT-REPORT response, a C-CANCEL) the next
    // message's bytes are appended to it, and each is parsed together with all those before it. On an
    // association sending a study, the n-th C-STORE response was parsed with the n - 1 before it (9 ms
    // more per instance at the 1,400th); an element of an earlier response (an Error Comment) also
    // stayed in the later ones that lack it.
    const lib = this as unknown as LibraryNetworkState;
    const perform = lib._performDimse.bind(this);
    lib._performDimse = (context, message) => {
      if (!message.hasDataset()) lib.dimseStream = undefined;
      perform(context, message);
    };
  }

  /**
   * Writes a message as dcmjs-dimse's own method does, byte for byte: the command in one P-DATA-TF
   * PDU, then the data set in fragments of the peer's maximum PDU length less 6 bytes (at most 4 MiB),
   * one PDV per PDU. But each fragment is written where it is, behind its 12-byte header, and all the
   * PDUs of the message go to the socket in one write: the library copies every fragment twice, into
   * buffers it grows as it writes, and makes one write per PDU.
   */
  _sendPDataTF(message: Request | Response, contextId: number, maxPduLength: number): void {
    const lib = this as unknown as LibraryNetworkState;
    const max = maxPduLength === 0 ? LIBRARY_MAX_PDU_LENGTH : Math.min(maxPduLength, LIBRARY_MAX_PDU_LENGTH);
    const command = message.getCommandDataset().getDenaturalizedCommandDataset();
    dimse.log.info(
      `${lib.logId} -> ${message.toString({ includeCommandDataset: lib.logCommandDatasets, includeDataset: lib.logDatasets })} [pc: ${contextId}]`,
    );
    const chunks: Buffer[] = [pdvHeader(contextId, command.length, true, true), command];
    const dataset = message.getDataset();
    if (dataset) {
      const bytes = dataset.getDenaturalizedDataset(
        lib.datasetWriteOptions as never,
        lib.datasetNameMap as never,
      );
      const fragment = max - 6;
      for (let at = 0; at < bytes.length; at += fragment) {
        const value = bytes.subarray(at, at + fragment);
        chunks.push(pdvHeader(contextId, value.length, false, at + fragment >= bytes.length), value);
      }
    }
    let sent = 0;
    this.socket.cork();
    for (const chunk of chunks) {
      this.socket.write(chunk);
      sent += chunk.length;
    }
    this.socket.uncork();
    lib.statistics.addBytesSent(sent);
  }

  /** Sends a request and resolves with the status of its final response (not the pending ones). */
  request(req: Request, onPending?: (response: Response) => void): Promise<number> {
    if (this.closed) return Promise.reject(new ConnectionClosedError('the connection is closed'));
    return new Promise<number>((resolve, reject) => {
      let status: number | undefined;
      req.on('response', (response: Response) => {
        status = response.getStatus();
        if (status === 0xff00 || status === 0xff01) onPending?.(response);
      });
      req.on('done', () => {
        this.inFlight = undefined;
        // dcmjs-dimse keeps every request of the association: each response was looked up among all
        // of them, and once Message IDs wrapped (after 65,535) the first request with the ID, long
        // answered, took the response, and the new one waited for ever.
        const pending = (this as unknown as LibraryNetworkState).pending;
        const at = pending.indexOf(req);
        if (at >= 0) pending.splice(at, 1);
        if (status === undefined) reject(new Error('the request could not be sent'));
        else resolve(status);
      });
      this.inFlight = (err) => {
        this.inFlight = undefined;
        reject(err);
      };
      this.sendRequests(req);
    });
  }

  protected connectionClosed(): void {}
  protected networkError(_err: Error): void {}
}

/**
 * What a TLS error says, without OpenSSL's decoration: "error:0A000418:SSL routines:ssl3_read_bytes:tlsv1
 * alert unknown ca:../ssl/record/rec_layer_s3.c:1601:SSL alert number 48" is "tlsv1 alert unknown ca".
 */
export function tlsErrorReason(err: Error): string {
  const m = /SSL routines:[^:]*:([^:]+)/.exec(err.message);
  return m ? m[1].trim() : err.message.trim();
}

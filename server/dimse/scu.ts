/**
 * C-STORE SCU: sends instances to a remote AE, byte for byte as stored. Used by C-MOVE (to the move
 * destination), by "send study to AE" (POST /api/studies/{study}/send) and by `npm run dimse -- send`.
 *
 * Presentation contexts: for each SOP Class, one context per stored transfer syntax (so each instance can
 * go unchanged), plus one with Explicit and Implicit VR Little Endian in case the peer accepts none of
 * those; an uncompressed instance is then converted by dcmjs, a compressed one fails (no transcoding).
 * At most 128 contexts fit in an association: more combinations are sent over several associations.
 * Each instance's data set is read while the one before it is in flight (at most two in memory), unless
 * it is larger than READ_AHEAD_MAX_BYTES: then it is read once the one before it is done.
 *
 * A remote AE marked /tls is reached over DICOM TLS (PS3.15 Annex B): TLS 1.2 or 1.3, our certificate as
 * the client certificate, the peer's certificate verified against PACS_DIMSE_TLS_CA (or the default CAs)
 * and, with PACS_DIMSE_TLS_CRL, refused when revoked; its name or IP address checked against the host we
 * connect to.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { DimseTls } from '../config';
import type { Logger } from '../log';
import {
  ConnectionClosedError,
  DimseConnection,
  NATIVE_SYNTAXES,
  RawDataset,
  tlsErrorReason,
} from './connection';
import { type Association, dimse, type Response } from './library';
import {
  certificateAETitles,
  EXPLICIT_VR_LITTLE_ENDIAN,
  IMPLICIT_VR_LITTLE_ENDIAN,
  type RemoteAE,
  remoteAEName,
  VERIFICATION,
} from './negotiation';

export interface OutgoingInstance {
  SOPClassUID: string;
  SOPInstanceUID: string;
  TransferSyntaxUID: string;
  /** The data set bytes (without File Meta Information), encoded in TransferSyntaxUID. */
  dataset(): Promise<Uint8Array>;
  /** Its size in bytes, or about (the stored file): read ahead only when known and small enough. */
  size?: number;
}

/** The largest data set read while the instance before it is in flight. */
export const READ_AHEAD_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The instance, with `readAhead()` to start reading its data set now: `dataset()` then returns that
 * read (once: the bytes are not kept after).
 */
function readingAhead(inst: OutgoingInstance): OutgoingInstance & { readAhead(): void } {
  let early: Promise<Uint8Array> | undefined;
  return {
    SOPClassUID: inst.SOPClassUID,
    SOPInstanceUID: inst.SOPInstanceUID,
    TransferSyntaxUID: inst.TransferSyntaxUID,
    readAhead() {
      if (early || inst.size === undefined || inst.size > READ_AHEAD_MAX_BYTES) return;
      early = inst.dataset();
      // A failed read is reported when the instance's turn comes.
      early.catch(() => {});
    },
    dataset() {
      const bytes = early ?? inst.dataset();
      early = undefined;
      return bytes;
    },
  };
}

export interface StoreResult {
  SOPInstanceUID: string;
  /** Status of the peer's C-STORE response; absent when the instance could not be sent. */
  status?: number;
  /** Why it failed (the peer's error comment, or what went wrong here). */
  error?: string;
  /** Not sent because no association could be established (refused, unreachable). */
  noAssociation?: true;
}

/** A C-STORE status that means stored: success, or a warning (PS3.4 B.2.3: B000, B006, B007). */
export function isStored(r: StoreResult): boolean {
  return r.status === 0 || (r.status !== undefined && (r.status & 0xf000) === 0xb000);
}

export interface StoreOptions {
  callingAETitle: string;
  /** Our certificate, key and trusted CAs, for remote AEs reached over TLS. */
  tls?: DimseTls;
  log?: Logger;
  /** C-MOVE sub-operations carry the AE and message that asked for them (PS3.7 9.1.1.1). */
  moveOriginator?: { aeTitle: string; messageId: number };
  /** Called after each instance, in order. */
  onResult?(result: StoreResult): void;
  /** Checked before each instance: true stops (C-CANCEL of a C-MOVE). */
  cancelled?(): boolean;
}

export class AssociationError extends Error {}

const MAX_CONTEXTS = 128;

/** Splits instances into groups whose presentation contexts fit in one association. */
export function planAssociations<T extends { SOPClassUID: string; TransferSyntaxUID: string }>(
  instances: readonly T[],
): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let combos = new Set<string>();
  let classes = new Set<string>();
  for (const inst of instances) {
    const combo = `${inst.SOPClassUID} ${inst.TransferSyntaxUID}`;
    const more = (combos.has(combo) ? 0 : 1) + (classes.has(inst.SOPClassUID) ? 0 : 1);
    if (combos.size + classes.size + more > MAX_CONTEXTS && current.length > 0) {
      groups.push(current);
      current = [];
      combos = new Set();
      classes = new Set();
    }
    current.push(inst);
    combos.add(combo);
    classes.add(inst.SOPClassUID);
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

function associationFor(
  callingAETitle: string,
  calledAETitle: string,
  instances: readonly OutgoingInstance[],
) {
  const assoc = new dimse.association.Association(callingAETitle, calledAETitle);
  const combos = new Map<string, Set<string>>();
  for (const i of instances) {
    const set = combos.get(i.SOPClassUID) ?? new Set<string>();
    set.add(i.TransferSyntaxUID);
    combos.set(i.SOPClassUID, set);
  }
  for (const [sopClass, syntaxes] of combos) {
    for (const ts of syntaxes)
      assoc.addTransferSyntaxToPresentationContext(assoc.addPresentationContext(sopClass), ts);
    const fallback = assoc.addPresentationContext(sopClass);
    assoc.addTransferSyntaxToPresentationContext(fallback, EXPLICIT_VR_LITTLE_ENDIAN);
    assoc.addTransferSyntaxToPresentationContext(fallback, IMPLICIT_VR_LITTLE_ENDIAN);
  }
  return assoc;
}

/**
 * The check of a /tls remote AE's certificate when our own CAs are set (PACS_DIMSE_TLS_CA, --tls-ca):
 * it names the host we connect to (the usual TLS check), or the called AE title, as a subject CN or a
 * subjectAltName URI dicom-aet: (the names PACS_DIMSE_TLS_BIND_AE takes from a caller's certificate), so
 * that one certificate made for a modality's AE title serves it both ways. Only with our own CAs: a
 * public CA vouches for host names, not for AE titles.
 */
function peerIdentity(remote: RemoteAE): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  return (host, cert) => {
    const hostError = tls.checkServerIdentity(host, cert);
    if (!hostError || certificateAETitles(cert).includes(remote.aet)) return undefined;
    const err = new Error(
      `the certificate names neither ${host} nor the called AE title ${remote.aet} (${hostError.message})`,
    ) as NodeJS.ErrnoException;
    err.code = 'ERR_TLS_CERT_ALTNAME_INVALID';
    return err;
  };
}

/** An association we opened, as the SCU. */
class OutboundConnection extends DimseConnection {
  /**
   * Connects (over TLS for a /tls remote AE) and negotiates; rejects with AssociationError when refused,
   * unreachable, or when the TLS handshake or the peer's certificate fails.
   */
  static open(remote: RemoteAE, assoc: Association, credentials?: DimseTls): Promise<OutboundConnection> {
    const name = remoteAEName(remote);
    if (remote.tls && !credentials)
      return Promise.reject(
        new AssociationError(
          `${name}: TLS needs our certificate and key (PACS_DIMSE_TLS_CERT, PACS_DIMSE_TLS_KEY)`,
        ),
      );
    const socket =
      remote.tls && credentials
        ? tls.connect({
            host: remote.host,
            port: remote.port,
            // SNI and the certificate check use the host name; an IP address is checked as such.
            ...(net.isIP(remote.host) === 0 ? { servername: remote.host } : {}),
            cert: credentials.cert,
            key: credentials.key,
            ...(credentials.ca ? { ca: credentials.ca } : {}),
            ...(credentials.crl ? { crl: credentials.crl } : {}),
            ...(credentials.ca ? { checkServerIdentity: peerIdentity(remote) } : {}),
            minVersion: 'TLSv1.2',
          })
        : net.connect({ host: remote.host, port: remote.port });
    socket.setNoDelay(true);
    // The socket's own error, before the library rewords it: TLS failures say what failed.
    let socketError: NodeJS.ErrnoException | undefined;
    socket.once('error', (err) => {
      socketError ??= err;
    });
    const conn = new OutboundConnection(socket);
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        socket.destroy();
        reject(new AssociationError(`${name}: ${why}`));
      };
      const tlsFailure = (fallback: string) => {
        if (!remote.tls) return fallback;
        const secured = (socket as tls.TLSSocket).authorized;
        if (socketError && !secured) return `TLS handshake failed: ${tlsErrorReason(socketError)}`;
        // TLS 1.3: the peer checks our certificate after the handshake, and says so with an alert.
        if (socketError && /^ERR_SSL_|^ERR_TLS_/.test(socketError.code ?? ''))
          return `TLS: the peer refused the connection (${tlsErrorReason(socketError)})`;
        return fallback;
      };
      const request = () => {
        conn.sendAssociationRequest(assoc);
        // The SCP/SCU Role Selection items are written: the roles of the contexts now say what the
        // peer's A-ASSOCIATE-AC returns (the library reads its items into them), and stay unset where
        // it returns none, which means the default roles (PS3.7 D.3.3.4: we are the SCU only).
        for (const { context } of assoc.getPresentationContexts()) {
          context.setUserRole(undefined as unknown as boolean);
          context.setProviderRole(undefined as unknown as boolean);
        }
      };
      if (remote.tls) (socket as tls.TLSSocket).once('secureConnect', request);
      else conn.on('connect', request);
      conn.on('associationAccepted', () => {
        conn.association = assoc;
        resolve(conn);
      });
      conn.on('associationRejected', (r: { result: number; source: number; reason: number }) =>
        fail(`association rejected (result ${r.result}, source ${r.source}, reason ${r.reason})`),
      );
      conn.once('networkError', (err: Error) => fail(tlsFailure(err.message.replace(/^.*-> /, ''))));
      conn.once('close', () => fail(tlsFailure('connection closed during association negotiation')));
    });
  }

  /** A-RELEASE, then close (at most 10 s). */
  release(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), 10_000);
      this.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.once('associationReleaseResponse', () => this.socket.end());
      this.sendAssociationReleaseRequest();
    });
  }

  /** Peer A-ABORT: the socket closes next, which fails what is in flight. */
  override abort(): void {}

  getAssociation(): Association {
    if (!this.association) throw new Error('no association');
    return this.association;
  }
}

/**
 * Sends one instance over an open association (ours as SCU, or a C-GET requester's as SCP).
 * Never throws for the instance itself; a closed connection rejects with ConnectionClosedError.
 */
export async function sendInstance(
  conn: DimseConnection,
  assoc: Association,
  inst: OutgoingInstance,
  moveOriginator?: { aeTitle: string; messageId: number },
): Promise<StoreResult> {
  const result = (status: number | undefined, error?: string): StoreResult => ({
    SOPInstanceUID: inst.SOPInstanceUID,
    ...(status === undefined ? {} : { status }),
    ...(error === undefined ? {} : { error }),
  });
  const probe = new dimse.requests.CStoreRequest(
    new dimse.Dataset(
      { SOPClassUID: inst.SOPClassUID, SOPInstanceUID: inst.SOPInstanceUID },
      inst.TransferSyntaxUID,
    ),
  );
  const context = assoc.getAcceptedPresentationContextFromRequest(probe);
  if (!context)
    return result(undefined, `the peer accepted no presentation context for SOP Class ${inst.SOPClassUID}`);
  const accepted = context.getAcceptedTransferSyntaxUid();
  if (
    accepted !== inst.TransferSyntaxUID &&
    !(accepted && NATIVE_SYNTAXES.includes(accepted) && NATIVE_SYNTAXES.includes(inst.TransferSyntaxUID))
  ) {
    return result(
      undefined,
      `the peer does not accept transfer syntax ${inst.TransferSyntaxUID} for SOP Class ${inst.SOPClassUID} (no transcoding)`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await inst.dataset();
  } catch (err) {
    return result(undefined, `cannot read the stored instance: ${(err as Error).message}`);
  }
  const dataset = new RawDataset(bytes, inst.TransferSyntaxUID, inst.SOPClassUID, inst.SOPInstanceUID);
  const req = new dimse.requests.CStoreRequest(dataset);
  if (moveOriginator) {
    req.getCommandDataset().setElement('MoveOriginatorApplicationEntityTitle', moveOriginator.aeTitle);
    req.getCommandDataset().setElement('MoveOriginatorMessageID', moveOriginator.messageId as never);
  }
  let comment: string | undefined;
  req.on('response', (r: Response) => {
    comment = r.getErrorComment() || undefined;
  });
  try {
    const status = await conn.request(req);
    return result(status, status === 0 ? undefined : comment);
  } catch (err) {
    if (err instanceof ConnectionClosedError) throw err;
    return result(undefined, (err as Error).message);
  } finally {
    dataset.release();
  }
}

/**
 * Sends instances to a remote AE (C-STORE SCU) and returns one result per instance, in order. A refused
 * or unreachable association fails its instances with the reason. When the peer drops the association
 * during an instance (an A-ABORT for data it cannot take), that instance fails and the rest go on over
 * a new association.
 */
export async function storeInstances(
  remote: RemoteAE,
  instances: readonly OutgoingInstance[],
  opts: StoreOptions,
): Promise<StoreResult[]> {
  const results: StoreResult[] = [];
  const report = (r: StoreResult) => {
    results.push(r);
    opts.onResult?.(r);
  };
  for (const planned of planAssociations(instances)) {
    const group = planned.map(readingAhead);
    let i = 0;
    while (i < group.length && !opts.cancelled?.()) {
      const rest = group.slice(i);
      let conn: OutboundConnection;
      try {
        conn = await OutboundConnection.open(
          remote,
          associationFor(opts.callingAETitle, remote.aet, rest),
          opts.tls,
        );
      } catch (err) {
        opts.log?.warn('association to remote AE failed', { aet: remote.aet, err: (err as Error).message });
        for (; i < group.length; i++)
          report({
            SOPInstanceUID: group[i].SOPInstanceUID,
            error: (err as Error).message,
            noAssociation: true,
          });
        break;
      }
      try {
        for (; i < group.length && !opts.cancelled?.(); i++) {
          const sent = sendInstance(conn, conn.getAssociation(), group[i], opts.moveOriginator);
          // Its data set is being read (or already sent): the next one is read while it is in flight.
          group[i + 1]?.readAhead();
          report(await sent);
        }
      } catch (err) {
        // The peer dropped the association during this instance: it failed; the next ones get a new one.
        report({ SOPInstanceUID: group[i].SOPInstanceUID, error: (err as Error).message });
        i++;
      }
      await conn.release();
    }
  }
  return results;
}

/**
 * An association proposing one SOP Class in Explicit then Implicit VR Little Endian (C-ECHO, the
 * storage commitment report); the id of its presentation context.
 */
export function singleContextAssociation(
  callingAETitle: string,
  calledAETitle: string,
  sopClassUID: string,
): { assoc: Association; id: number } {
  const assoc = new dimse.association.Association(callingAETitle, calledAETitle);
  const id = assoc.addPresentationContext(sopClassUID);
  assoc.addTransferSyntaxToPresentationContext(id, EXPLICIT_VR_LITTLE_ENDIAN);
  assoc.addTransferSyntaxToPresentationContext(id, IMPLICIT_VR_LITTLE_ENDIAN);
  return { assoc, id };
}

/** C-ECHO: opens an association with the Verification SOP Class and returns the echo status. */
export function echo(remote: RemoteAE, callingAETitle: string, credentials?: DimseTls): Promise<number> {
  const { assoc } = singleContextAssociation(callingAETitle, remote.aet, VERIFICATION);
  return onAssociation(
    remote,
    assoc,
    (conn, accepted) => {
      if (!accepted.getAcceptedPresentationContextFromRequest(new dimse.requests.CEchoRequest()))
        throw new AssociationError(`${remote.aet} does not accept the Verification SOP Class`);
      return conn.request(new dimse.requests.CEchoRequest());
    },
    credentials,
  );
}

/**
 * Opens an association to a remote AE with the presentation contexts of `assoc`, runs `use` on it, then
 * releases it (also when `use` fails). Rejects with AssociationError when refused or unreachable.
 */
export async function onAssociation<T>(
  remote: RemoteAE,
  assoc: Association,
  use: (conn: DimseConnection, accepted: Association) => Promise<T>,
  credentials?: DimseTls,
): Promise<T> {
  const conn = await OutboundConnection.open(remote, assoc, credentials);
  try {
    return await use(conn, conn.getAssociation());
  } finally {
    await conn.release();
  }
}

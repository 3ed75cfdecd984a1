/**
 * What the DIMSE gateway accepts at association time (PS3.7 D.3.3.2, PS3.4 Annexes A, B and C): the
 * presentation contexts and the calling AEs; and the syntax of AE titles, allowed callers and remote AEs
 * in the configuration. Pure.
 */
import { isIP } from 'node:net';

export const VERIFICATION = '1.2.840.10008.1.1';
/** Storage Commitment Push Model SOP Class (PS3.4 J.3.5): commitment.ts. */
export const STORAGE_COMMITMENT_PUSH_MODEL = '1.2.840.10008.1.20.1';
export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

/** Query/Retrieve information models (PS3.4 C.6): patient root and study root, FIND, MOVE and GET. */
export const QR = {
  PatientRootFind: '1.2.840.10008.5.1.4.1.2.1.1',
  PatientRootMove: '1.2.840.10008.5.1.4.1.2.1.2',
  PatientRootGet: '1.2.840.10008.5.1.4.1.2.1.3',
  StudyRootFind: '1.2.840.10008.5.1.4.1.2.2.1',
  StudyRootMove: '1.2.840.10008.5.1.4.1.2.2.2',
  StudyRootGet: '1.2.840.10008.5.1.4.1.2.2.3',
} as const;

export type InformationModel = 'patient' | 'study';

export function informationModel(sopClassUID: string): InformationModel | undefined {
  if (sopClassUID.startsWith('1.2.840.10008.5.1.4.1.2.1.')) return 'patient';
  if (sopClassUID.startsWith('1.2.840.10008.5.1.4.1.2.2.')) return 'study';
  return undefined;
}

const QR_UIDS = new Set<string>(Object.values(QR));

/** Standard storage SOP classes outside the 1.2.840.10008.5.1.4.1.1 branch (PS3.4 Table B.5-1). */
const OTHER_STORAGE = new Set([
  '1.2.840.10008.5.1.4.34.7', // RT Beams Delivery Instruction
  '1.2.840.10008.5.1.4.34.10', // RT Brachy Application Setup Delivery Instruction
  '1.2.840.10008.5.1.4.38.1', // Hanging Protocol
  '1.2.840.10008.5.1.4.39.1', // Color Palette
  '1.2.840.10008.5.1.4.43.1', // Generic Implant Template
  '1.2.840.10008.5.1.4.44.1', // Implant Assembly Template
  '1.2.840.10008.5.1.4.45.1', // Implant Template Group
]);

/**
 * Storage SOP classes: every standard one (the whole 1.2.840.10008.5.1.4.1.1 branch, where all image,
 * waveform, SR, presentation state, RT and document classes live, plus the few elsewhere). Private SOP
 * classes are refused: their content is unknown to every other system reading this archive.
 */
export function isStorageSOPClass(uid: string): boolean {
  return /^1\.2\.840\.10008\.5\.1\.4\.1\.1(\.\d+)+$/.test(uid) || OTHER_STORAGE.has(uid);
}

/**
 * Transfer syntaxes an instance may be stored in: those the ingest scanner reads (Implicit and Explicit VR
 * Little Endian, Explicit VR Big Endian, Deflated, and every encapsulated syntax of PS3.5 Table A-1 /
 * PS3.6 Table A-1: JPEG, JPEG-LS, JPEG 2000, HTJ2K, JPEG XL, RLE, MPEG, HEVC, JPIP). Stored as received.
 */
export function isStorableTransferSyntax(uid: string): boolean {
  return /^1\.2\.840\.10008\.1\.2(\.1|\.1\.98|\.1\.99|\.2|\.5|\.4\.\d{2,3}(\.1)?)?$/.test(uid);
}

export type ContextDecision =
  | { accept: string }
  | { reject: 'abstract-syntax-not-supported' | 'transfer-syntaxes-not-supported' };

/**
 * The answer to one proposed presentation context. Verification, Query/Retrieve and Storage Commitment:
 * Explicit VR Little Endian when proposed, else Implicit (the data sets are read and written by dcmjs). Storage: the first
 * proposed syntax we can store, in the proposer's order of preference, so a modality's data set arrives
 * as it was made and is stored byte for byte.
 */
export function decideContext(abstractSyntax: string, transferSyntaxes: readonly string[]): ContextDecision {
  if (
    abstractSyntax === VERIFICATION ||
    abstractSyntax === STORAGE_COMMITMENT_PUSH_MODEL ||
    QR_UIDS.has(abstractSyntax)
  ) {
    for (const ts of [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN])
      if (transferSyntaxes.includes(ts)) return { accept: ts };
    return { reject: 'transfer-syntaxes-not-supported' };
  }
  if (isStorageSOPClass(abstractSyntax)) {
    const ts = transferSyntaxes.find(isStorableTransferSyntax);
    return ts ? { accept: ts } : { reject: 'transfer-syntaxes-not-supported' };
  }
  return { reject: 'abstract-syntax-not-supported' };
}

// ---------------------------------------------------------------------------------------------------------
// AE titles and remote AEs (configuration syntax)

/** PS3.5 6.2 (AE): 1 to 16 characters of the default repertoire, no backslash nor control characters, not only spaces. */
export function isValidAETitle(aet: string): boolean {
  return aet.length >= 1 && aet.length <= 16 && /^[\x20-\x5b\x5d-\x7e]+$/.test(aet) && aet.trim() !== '';
}

export interface RemoteAE {
  aet: string;
  host: string;
  port: number;
  /** DICOM TLS (PS3.15 Annex B): the association goes over TLS, the peer's certificate checked. */
  tls: boolean;
}

/**
 * "AET@host:port" (IPv6 hosts in brackets: "AET@[::1]:104"), with "/tls" at the end for a peer reached
 * over TLS ("UPPER@pacs.bvtinh.vn:2762/tls").
 */
export function parseRemoteAE(text: string): RemoteAE | string {
  const m = /^(.{1,16})@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})(\/tls)?$/.exec(text.trim());
  if (!m) return `"${text}": expected AET@host:port or AET@host:port/tls`;
  const [, aet, host, portText, tls] = m;
  const port = Number(portText);
  if (!isValidAETitle(aet))
    return `"${text}": "${aet}" is not a valid AE title (1-16 characters, no backslash)`;
  if (port < 1 || port > 65535) return `"${text}": port ${port} is out of range`;
  return { aet, host: host.replace(/^\[|\]$/g, ''), port, tls: tls !== undefined };
}

/** How a remote AE is named in messages: AET@host:port, with /tls when reached over TLS. */
export function remoteAEName(remote: RemoteAE): string {
  const host = remote.host.includes(':') ? `[${remote.host}]` : remote.host;
  return `${remote.aet}@${host}:${remote.port}${remote.tls ? '/tls' : ''}`;
}

/** A comma-separated list of remote AEs; errors are returned as messages. */
export function parseRemoteAEs(text: string): { aes: RemoteAE[]; errors: string[] } {
  const aes: RemoteAE[] = [];
  const errors: string[] = [];
  for (const item of text.split(',').filter((s) => s.trim() !== '')) {
    const r = parseRemoteAE(item);
    if (typeof r === 'string') errors.push(r);
    else if (aes.some((a) => a.aet === r.aet)) errors.push(`"${item.trim()}": AE title ${r.aet} given twice`);
    else aes.push(r);
  }
  return { aes, errors };
}

/**
 * A calling AE the listener accepts (PACS_DIMSE_ALLOWED_AES): its title, and the address it must call
 * from (normalized by normalizeAddress), when bound to one.
 */
export interface AllowedAE {
  aet: string;
  address?: string;
  /** The services it may ask for; absent: all of them. */
  services?: DimseService[];
}

/**
 * What an allowed AE may ask the archive for (`=store+find` in PACS_DIMSE_ALLOWED_AES): `store`
 * (C-STORE, and storage commitment of what it stored), `find` (C-FIND), `move` (C-MOVE), `get` (C-GET).
 * C-ECHO is always allowed. A modality that only sends is `=store`: it can then read nothing back.
 */
export const DIMSE_SERVICES = ['store', 'find', 'move', 'get'] as const;
export type DimseService = (typeof DIMSE_SERVICES)[number];

/**
 * Why a calling AE from an address may not use a service (refused with 0x0124, Refused: Not
 * authorized), or undefined when it may. The association was accepted, so the AE is allowed from there.
 */
export function serviceRefusal(
  allowed: AllowedAE[] | 'any',
  aet: string,
  address: string,
  service: DimseService,
): string | undefined {
  if (allowed === 'any') return undefined;
  const from = normalizeAddress(address) ?? address;
  const entry = allowed.find((a) => a.aet === aet && (a.address === undefined || a.address === from));
  if (!entry) return 'calling AE title not in PACS_DIMSE_ALLOWED_AES';
  if (!entry.services || entry.services.includes(service)) return undefined;
  return `${aet} may not ${service} (PACS_DIMSE_ALLOWED_AES gives it ${entry.services.join('+')})`;
}

/**
 * An IP address as compared with a caller's: IPv4 as is, IPv4-mapped IPv6 (::ffff:10.0.0.5, what a
 * dual-stack listener reports) as the IPv4 address, IPv6 in its canonical form (lower case, zeros
 * compressed), brackets removed. Undefined for anything that is not an IP address (host names included).
 */
export function normalizeAddress(text: string): string | undefined {
  const a = text.trim().replace(/^\[(.*)\]$/, '$1');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped && isIP(mapped[1]) === 4) return mapped[1];
  if (isIP(a) === 4) return a;
  if (isIP(a) !== 6) return undefined;
  const url = URL.parse(`http://[${a}]/`); // the WHATWG canonical IPv6 form; refuses zone IDs
  if (!url) return undefined;
  const canonical = url.hostname.slice(1, -1);
  const again = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!again) return canonical;
  const hi = Number.parseInt(again[1], 16);
  const lo = Number.parseInt(again[2], 16);
  return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join('.');
}

/**
 * PACS_DIMSE_ALLOWED_AES: comma-separated AET or AET@address (an IPv4 or IPv6 address, the latter with or
 * without brackets; not a host name), each optionally followed by =services (`CT1@10.0.0.5=store`,
 * `WS1=find+move+store`; without it, every service), or * alone for any calling AE. An AE title may be
 * listed with several addresses, but not both with and without one. Errors are returned as messages.
 */
export function parseAllowedAEs(text: string): { aes: AllowedAE[] | 'any'; errors: string[] } {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.includes('*')) {
    const errors = items.length > 1 ? ['"*" (any calling AE) must be the only entry'] : [];
    return { aes: 'any', errors };
  }
  const aes: AllowedAE[] = [];
  const errors: string[] = [];
  for (const entry of items) {
    const eq = entry.lastIndexOf('=');
    const item = (eq < 0 ? entry : entry.slice(0, eq)).trim();
    let services: DimseService[] | undefined;
    if (eq >= 0) {
      const names = entry
        .slice(eq + 1)
        .split('+')
        .map((n) => n.trim().toLowerCase());
      const unknown = names.filter((n) => !(DIMSE_SERVICES as readonly string[]).includes(n));
      if (unknown.length > 0 || names.length === 0) {
        errors.push(
          `"${entry}": unknown service ${unknown.map((n) => `"${n}"`).join(', ') || '""'} (expected ${DIMSE_SERVICES.join(', ')}, joined with +)`,
        );
        continue;
      }
      services = DIMSE_SERVICES.filter((n) => names.includes(n));
    }
    const at = item.lastIndexOf('@');
    const aet = (at < 0 ? item : item.slice(0, at)).trim();
    if (!isValidAETitle(aet)) {
      errors.push(`"${item}": "${aet}" is not a valid AE title (1-16 characters, no backslash)`);
      continue;
    }
    let address: string | undefined;
    if (at >= 0) {
      address = normalizeAddress(item.slice(at + 1));
      if (address === undefined) {
        errors.push(
          `"${item}": expected AET or AET@address with an IPv4 or IPv6 address (CT1@10.0.0.5), not a host name`,
        );
        continue;
      }
    }
    const same = aes.filter((a) => a.aet === aet);
    if (same.some((a) => a.address === address)) errors.push(`"${item}": given twice`);
    else if (same.length > 0 && (address === undefined || same.some((a) => a.address === undefined)))
      errors.push(`"${item}": AE title ${aet} is listed both with and without an address`);
    else aes.push({ aet, ...(address === undefined ? {} : { address }), ...(services ? { services } : {}) });
  }
  return { aes, errors };
}

/**
 * Why a calling AE title from an address is refused (PACS_DIMSE_ALLOWED_AES), or undefined when it is
 * accepted.
 */
export function callerRefusal(
  allowed: AllowedAE[] | 'any',
  aet: string,
  address: string,
): string | undefined {
  if (allowed === 'any') return undefined;
  const entries = allowed.filter((a) => a.aet === aet);
  if (entries.length === 0) return 'calling AE title not in PACS_DIMSE_ALLOWED_AES';
  const from = normalizeAddress(address) ?? address;
  if (entries.some((a) => a.address === undefined || a.address === from)) return undefined;
  return `calling AE title ${aet} is allowed only from ${entries.map((a) => a.address).join(', ')} (PACS_DIMSE_ALLOWED_AES), not from ${from}`;
}

/**
 * The subjectAltName URI that names an AE title a client certificate may call as: `URI:dicom-aet:CT1`
 * (percent-encoded where a URI needs it: `dicom-aet:CT%201` is the AE title "CT 1").
 */
export const AE_TITLE_URI_SCHEME = 'dicom-aet:';

/** One entry of a subjectAltName as Node prints it: `TYPE:value`, a value with a comma or quote JSON-quoted. */
const SAN_ENTRY = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/y;

/**
 * The AE titles a DICOM TLS client certificate names (PACS_DIMSE_TLS_BIND_AE): each subject CN
 * (`CN=CT1`), and each subjectAltName URI `dicom-aet:<AE title>`; DNS names and IP addresses are host
 * names, not AE titles. Input: the peer certificate as Node's TLS socket gives it (getPeerCertificate()).
 */
export function certificateAETitles(cert: {
  subject?: { CN?: string | string[] };
  subjectaltname?: string;
}): string[] {
  const titles = new Set<string>();
  const cn = cert.subject?.CN;
  for (const name of cn === undefined ? [] : Array.isArray(cn) ? cn : [cn]) titles.add(name.trim());
  const san = cert.subjectaltname ?? '';
  SAN_ENTRY.lastIndex = 0;
  while (SAN_ENTRY.lastIndex < san.length) {
    const m = SAN_ENTRY.exec(san);
    if (!m) break;
    if (m[1] !== 'URI') continue;
    let uri: string;
    try {
      uri = m[2].startsWith('"') ? (JSON.parse(m[2]) as string) : m[2];
    } catch {
      continue;
    }
    if (!uri.toLowerCase().startsWith(AE_TITLE_URI_SCHEME)) continue;
    let aet = uri.slice(AE_TITLE_URI_SCHEME.length);
    try {
      aet = decodeURIComponent(aet);
    } catch {
      // not percent-encoded: as written
    }
    titles.add(aet.trim());
  }
  return [...titles].filter(isValidAETitle);
}

/**
 * Why a calling AE title is refused on the DICOM TLS listener given the AE titles its client
 * certificate names (certificateAETitles), or undefined when the certificate names it (exactly).
 */
export function certificateRefusal(named: readonly string[], aet: string): string | undefined {
  if (named.includes(aet)) return undefined;
  return named.length === 0
    ? `the client certificate names no AE title (subject CN or subjectAltName URI:${AE_TITLE_URI_SCHEME}), so it may not call as ${aet} (PACS_DIMSE_TLS_BIND_AE)`
    : `the client certificate is for ${named.join(', ')}, not for calling AE title ${aet} (PACS_DIMSE_TLS_BIND_AE)`;
}

/**
 * Whether a TCP connection from this address may go on to an association request at all: with every
 * allowed AE bound to an address, only those addresses may (others are closed at once, before the
 * archive reads a byte from them); with 'any', or an AE allowed from anywhere, every address may.
 */
export function addressMayConnect(allowed: AllowedAE[] | 'any', address: string): boolean {
  if (allowed === 'any' || allowed.some((a) => a.address === undefined)) return true;
  const from = normalizeAddress(address) ?? address;
  return allowed.some((a) => a.address === from);
}

/** PDU types of PS3.8 9.3 and the largest of each the archive reads before refusing the connection. */
const PDU_A_ASSOCIATE_RQ = 0x01;
const PDU_P_DATA_TF = 0x04;

/**
 * The largest PDU of a type a peer may send (PS3.8 9.3; the 6-byte header not counted). A P-DATA-TF may be
 * as long as the maximum length this side announced; sixteen times that is allowed to peers that do not
 * heed it. An A-ASSOCIATE-RQ of a few hundred presentation contexts stays far below 1 MiB; the other
 * PDUs are a few bytes.
 */
export function maxPduLength(type: number, announced: number): number {
  if (type === PDU_P_DATA_TF) return 16 * announced;
  if (type === PDU_A_ASSOCIATE_RQ) return 1024 * 1024;
  return 64 * 1024;
}

/**
 * Follows the PDU headers of an incoming byte stream (type, reserved byte, 32-bit big-endian length)
 * and says when a PDU declares a length above maxPduLength: the connection is then closed before its
 * bytes are gathered (the network library would hold the whole declared length in memory).
 */
export class PduLengthGuard {
  private header = Buffer.alloc(0);
  private remaining = 0;

  constructor(private readonly announced: number) {}

  /** Undefined while every PDU header seen is acceptable; else why the connection must be closed. */
  push(chunk: Buffer): string | undefined {
    let at = 0;
    while (at < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - at);
        this.remaining -= n;
        at += n;
        continue;
      }
      const need = 6 - this.header.length;
      this.header = Buffer.concat([this.header, chunk.subarray(at, at + need)]);
      at += Math.min(need, chunk.length - at);
      if (this.header.length < 6) return undefined;
      const type = this.header[0];
      const length = this.header.readUInt32BE(2);
      this.header = Buffer.alloc(0);
      const max = maxPduLength(type, this.announced);
      if (length > max)
        return `PDU of type 0x${type.toString(16).padStart(2, '0')} declares ${length} bytes, more than the ${max} accepted`;
      this.remaining = length;
    }
    return undefined;
  }
}

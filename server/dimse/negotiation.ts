/**
 * What the DIMSE gateway accepts at association time (PS3.7 D.3.3.2, PS3.4 Annexes A, B and C), and the
 * syntax of AE titles and remote AEs in the configuration. Pure.
 */

export const VERIFICATION = '1.2.840.10008.1.1';
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
 * The answer to one proposed presentation context. Verification and Query/Retrieve: Explicit VR Little
 * Endian when proposed, else Implicit (the identifiers are read and written by dcmjs). Storage: the first
 * proposed syntax we can store, in the proposer's order of preference, so a modality's data set arrives
 * as it was made and is stored byte for byte.
 */
export function decideContext(abstractSyntax: string, transferSyntaxes: readonly string[]): ContextDecision {
  if (abstractSyntax === VERIFICATION || QR_UIDS.has(abstractSyntax)) {
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
}

/** "AET@host:port" (IPv6 hosts in brackets: "AET@[::1]:104"). */
export function parseRemoteAE(text: string): RemoteAE | string {
  const m = /^(.{1,16})@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text.trim());
  if (!m) return `"${text}": expected AET@host:port`;
  const [, aet, host, portText] = m;
  const port = Number(portText);
  if (!isValidAETitle(aet))
    return `"${text}": "${aet}" is not a valid AE title (1-16 characters, no backslash)`;
  if (port < 1 || port > 65535) return `"${text}": port ${port} is out of range`;
  return { aet, host: host.replace(/^\[|\]$/g, ''), port };
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

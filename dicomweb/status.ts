/**
 * One error model (PS3.18 status codes and STOW-RS failure reasons).
 * Code throws DicomwebError; the server's single error middleware turns it into a response.
 * Per-instance STOW failures are not thrown: they are FailureReason codes in the response body.
 */

export class DicomwebError extends Error {
  readonly status: number;
  readonly reason?: number;
  constructor(status: number, message: string, reason?: number) {
    super(message);
    this.name = 'DicomwebError';
    this.status = status;
    this.reason = reason;
  }
}

export const badRequest = (message: string) => new DicomwebError(400, message);
export const notFound = (message: string) => new DicomwebError(404, message);
export const notAcceptable = (message: string) => new DicomwebError(406, message);
export const conflict = (message: string) => new DicomwebError(409, message);
export const payloadTooLarge = (message: string) => new DicomwebError(413, message);
export const unsupportedMediaType = (message: string) => new DicomwebError(415, message);
export const serviceUnavailable = (message: string) => new DicomwebError(503, message);

/** PS3.18 Table 10.5.3-1 (Store Instances Response) and PS3.4 C-STORE status codes used as FailureReason / WarningReason. */
export const FailureReason = {
  /** 0x0110 Processing failure */
  ProcessingFailure: 0x0110,
  /** 0x0111 Duplicate SOP Instance (same UID, different content, archive policy refuses overwrite) */
  DuplicateSOPInstance: 0x0111,
  /** 0x0122 Referenced SOP Class not supported */
  SOPClassNotSupported: 0x0122,
  /** 0xA700 Out of resources */
  OutOfResources: 0xa700,
  /** 0xA900 Data Set does not match SOP Class */
  DataSetDoesNotMatchSOPClass: 0xa900,
  /** 0xC000 Cannot understand */
  CannotUnderstand: 0xc000,
  /** 0xC122 Referenced Transfer Syntax not supported */
  TransferSyntaxNotSupported: 0xc122,
  /**
   * 0xC409 Study Instance UID does not match the one in the request URL. PS3.18 names no code for this;
   * 0xC409 is dcm4chee's, in the Cxxx "cannot understand" range (an A7xx code would read as "out of
   * resources" and invite a retry).
   */
  StudyInstanceUIDMismatch: 0xc409,
} as const;

export const WarningReason = {
  /** 0xB000 Coercion of data elements */
  CoercionOfDataElements: 0xb000,
  /** 0xB007 Data set does not match SOP Class */
  DataSetDoesNotMatchSOPClass: 0xb007,
  /** 0xB006 Elements discarded */
  ElementsDiscarded: 0xb006,
} as const;

export interface StoredInstanceRef {
  sopClassUID: string;
  sopInstanceUID: string;
  retrieveURL: string;
  warningReason?: number;
}

export interface FailedInstanceRef {
  sopClassUID?: string;
  sopInstanceUID?: string;
  failureReason: number;
  /** Human-readable explanation; sent in (0009,xxxx)-free form as a Warning header and in TextValue-less JSON comment field. */
  message: string;
}

type JsonAttr = { vr: string; Value?: unknown[] };
type JsonDataset = Record<string, JsonAttr>;

/** PS3.18 10.5.3: 200 all stored, 202 some failed (or warnings), 409 none stored. */
export function stowStatus(stored: number, failed: number, warned: number): number {
  if (failed === 0 && warned === 0) return 200;
  if (stored === 0 && failed > 0) return 409;
  return 202;
}

/** Builds the STOW-RS response dataset (DICOM JSON). */
export function stowResponse(
  retrieveURL: string | undefined,
  stored: StoredInstanceRef[],
  failed: FailedInstanceRef[],
): JsonDataset {
  // Retrieve URL is Type 2 in the Store Instances Response (PS3.18): present, empty when no study was named.
  const body: JsonDataset = { '00081190': retrieveURL ? { vr: 'UR', Value: [retrieveURL] } : { vr: 'UR' } };
  if (failed.length > 0) {
    body['00081198'] = {
      vr: 'SQ',
      Value: failed.map((f) => {
        const item: JsonDataset = {};
        if (f.sopClassUID) item['00081150'] = { vr: 'UI', Value: [f.sopClassUID] };
        if (f.sopInstanceUID) item['00081155'] = { vr: 'UI', Value: [f.sopInstanceUID] };
        item['00081197'] = { vr: 'US', Value: [f.failureReason] };
        // Error Comment (0000,0902) is a command element; we use TextValue-like free text in (0040,A160) for humans.
        item['0040A160'] = { vr: 'UT', Value: [f.message] };
        return item;
      }),
    };
  }
  if (stored.length > 0) {
    body['00081199'] = {
      vr: 'SQ',
      Value: stored.map((s) => {
        const item: JsonDataset = {
          '00081150': { vr: 'UI', Value: [s.sopClassUID] },
          '00081155': { vr: 'UI', Value: [s.sopInstanceUID] },
          '00081190': { vr: 'UR', Value: [s.retrieveURL] },
        };
        if (s.warningReason !== undefined) item['00081196'] = { vr: 'US', Value: [s.warningReason] };
        return item;
      }),
    };
  }
  return body;
}

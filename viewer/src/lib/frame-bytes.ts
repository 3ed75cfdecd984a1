/**
 * Frames of WADO-RS RetrieveInstanceFrames as bytes for the image loader. No dependency on the page
 * (window, Cornerstone): the frame-fetch worker uses it too.
 */
/**
 * Accept header for frames: one single-part body when the server offers it (nothing to scan for a
 * boundary), multipart/related (the form every WADO-RS server has) otherwise; any transfer syntax.
 */
export const FRAME_ACCEPT =
  'application/octet-stream; transfer-syntax=*, multipart/related; type="application/octet-stream"; transfer-syntax=*';

export interface FrameBytes {
  pixelData: Uint8Array;
  transferSyntaxUid: string;
}

/** PS3.18 Table 8.7.3-5: the transfer syntax of a frame media type that names none. */
const DEFAULT_SYNTAX: Record<string, string> = {
  // PS3.18: frames sent as application/octet-stream without a parameter are explicit VR little endian.
  'application/octet-stream': '1.2.840.10008.1.2.1',
  'image/jpeg': '1.2.840.10008.1.2.4.70',
  'image/jls': '1.2.840.10008.1.2.4.80',
  'image/jp2': '1.2.840.10008.1.2.4.90',
  'image/jphc': '1.2.840.10008.1.2.4.201',
  'image/dicom-rle': '1.2.840.10008.1.2.5',
};

/** The transfer syntax of a frame body from its Content-Type: its transfer-syntax, else its type's default. */
function transferSyntaxOf(contentType: string): string | undefined {
  const ts = /transfer-syntax\s*=\s*"?([0-9.]+)"?/i.exec(contentType)?.[1];
  if (ts) return ts;
  return DEFAULT_SYNTAX[contentType.split(';')[0].trim().toLowerCase()];
}

function indexOf(data: Uint8Array, token: Uint8Array, from: number, to: number): number {
  outer: for (let i = from; i <= to - token.length; i++) {
    for (let j = 0; j < token.length; j++) if (data[i + j] !== token[j]) continue outer;
    return i;
  }
  return -1;
}

function lastIndexOf(data: Uint8Array, token: Uint8Array, from: number): number {
  outer: for (let i = data.length - token.length; i >= from; i--) {
    for (let j = 0; j < token.length; j++) if (data[i + j] !== token[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * The one frame of a single-part or multipart/related frames response, without scanning the pixel
 * data: the part's headers are at the start and the closing boundary at the end. Undefined when the
 * transfer syntax cannot be told.
 */
export function frameFromResponse(contentType: string, body: Uint8Array): FrameBytes | undefined {
  if (!/^\s*multipart\//i.test(contentType)) {
    const transferSyntaxUid = transferSyntaxOf(contentType);
    return transferSyntaxUid ? { pixelData: body, transferSyntaxUid } : undefined;
  }
  const boundary = /boundary\s*=\s*"?([^";]+)"?/i.exec(contentType)?.[1];
  if (!boundary) return undefined;
  const enc = new TextEncoder();
  const headerEnd = indexOf(body, enc.encode('\r\n\r\n'), 0, Math.min(body.length, 4096));
  if (headerEnd < 0) return undefined;
  const headers = new TextDecoder().decode(body.subarray(0, headerEnd));
  const partType = /content-type\s*:\s*([^\r\n]+)/i.exec(headers)?.[1] ?? 'application/octet-stream';
  const start = headerEnd + 4;
  const end = lastIndexOf(body, enc.encode(`\r\n--${boundary}`), start);
  if (end < 0) return undefined;
  const transferSyntaxUid = transferSyntaxOf(partType);
  return transferSyntaxUid ? { pixelData: body.subarray(start, end), transferSyntaxUid } : undefined;
}

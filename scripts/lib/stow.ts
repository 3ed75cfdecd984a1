/**
 * Streaming STOW-RS client (PS3.18 10.5): one multipart/related request per batch, each part a
 * Part 10 file, written to the socket with back-pressure (never concatenated into one buffer).
 * Used by `npm run import` and `npm run bench`.
 */
import { createReadStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';

/** One part: either bytes already in memory (bench) or a file streamed from disk (import). */
export type StowPart =
  | { kind: 'bytes'; bytes: Uint8Array; name?: string }
  /**
   * A file streamed from disk; `size` is what is sent of it. With `prefix`, those bytes are sent first
   * and the file from `start` (a data set given the Part 10 header it lacked).
   */
  | { kind: 'file'; path: string; size: number; name?: string; prefix?: Uint8Array; start?: number }
  /** Generated on the fly (e.g. a 1 GiB instance); `size` must be exact. */
  | {
      kind: 'chunks';
      size: number;
      chunks: () => Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
      name?: string;
    };

export interface StowReferenced {
  sopClassUID?: string;
  sopInstanceUID?: string;
  retrieveURL?: string;
  /** WarningReason (0008,1196) of the item, if any. */
  warningReason?: number;
}

export interface StowFailed {
  sopClassUID?: string;
  sopInstanceUID?: string;
  /** FailureReason (0008,1197). */
  failureReason?: number;
  /** ErrorComment (0000,0902) or TextValue (0040,A160), when the server adds an explanation. */
  comment?: string;
}

export interface StowResult {
  /** HTTP status. */
  status: number;
  referenced: StowReferenced[];
  failed: StowFailed[];
  /** Top-level WarningReason (0008,1196), if any. */
  warningReason?: number;
  /** Response body as text when it was not DICOM JSON (e.g. a 4xx with a reason). */
  text?: string;
  /** Bytes of DICOM sent (sum of part sizes). */
  bytesSent: number;
}

/** PS3.4 / PS3.18 status codes commonly used as FailureReason and WarningReason. */
export const REASON_TEXT: Record<number, string> = {
  272: 'Processing failure',
  273: 'Duplicate SOP Instance: stored before with different content',
  274: 'No such object instance',
  279: 'Invalid object instance',
  281: 'Class-instance conflict',
  290: 'Referenced SOP Class not supported',
  292: 'Refused: not authorized',
  529: 'Unrecognized operation',
  530: 'Mistyped argument',
  42752: 'Refused: out of resources',
  42833: 'Refused: out of resources (series)',
  42834: 'Refused: out of resources (instances)',
  43264: 'Error: data set does not match SOP Class',
  43265: 'Error: Study Instance UID does not match the study in the request',
  45056: 'Coercion of data elements',
  45062: 'Elements discarded',
  45063: 'Data set does not match SOP Class',
  45070: 'Instance already exists',
  49152: 'Error: cannot understand',
  50185: 'Error: Study Instance UID does not match the study in the request',
  49442: 'Referenced Transfer Syntax not supported',
};

export function reasonText(code: number | undefined): string {
  if (code === undefined) return 'no reason given';
  const hex = `0x${code.toString(16).toUpperCase().padStart(4, '0')}`;
  const text =
    REASON_TEXT[code] ?? (code >= 0xc000 && code <= 0xcfff ? 'Error: cannot understand' : 'unknown reason');
  return `${hex} (${code}) ${text}`;
}

export interface StowOptions {
  /** DICOMweb root, e.g. http://127.0.0.1:8080/dicomweb (no trailing slash needed). */
  dicomwebRoot: string;
  /** Optional study: POST {root}/studies/{study}. */
  studyInstanceUID?: string;
  headers?: Record<string, string>;
  /** Per-request timeout in ms (default 10 minutes). */
  timeoutMs?: number;
}

/** The API token of the command-line tools (PACS_TOKEN: a modality or administrator token). */
export function authorization(): Record<string, string> {
  const token = process.env.PACS_TOKEN;
  return token ? { Authorization: `Bearer ${token}` } : {};
}

const agents = {
  http: new http.Agent({ keepAlive: true, maxSockets: 64 }),
  https: new https.Agent({ keepAlive: true, maxSockets: 64 }),
};

function partSize(p: StowPart): number {
  if (p.kind === 'bytes') return p.bytes.byteLength;
  return p.size + (p.kind === 'file' ? (p.prefix?.byteLength ?? 0) : 0);
}

function writeChunk(req: http.ClientRequest, chunk: Uint8Array | string): Promise<void> {
  if (req.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      req.off('error', onError);
      resolve();
    };
    const onError = (err: Error) => {
      req.off('drain', onDrain);
      reject(err);
    };
    req.once('drain', onDrain);
    req.once('error', onError);
  });
}

function firstValue(item: any, tag: string): any {
  const el = item?.[tag];
  return Array.isArray(el?.Value) ? el.Value[0] : undefined;
}

/** Parses a STOW-RS DICOM JSON response body (object or one-element array). */
/** The `message` of a JSON error body, if it is one. */
function errorMessage(json: unknown): string | undefined {
  const message = (json as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message.trim() ? message : undefined;
}

export function parseStowResponse(json: unknown): Omit<StowResult, 'status' | 'bytesSent' | 'text'> {
  const root: any = Array.isArray(json) ? json[0] : json;
  const referenced: StowReferenced[] = [];
  const failed: StowFailed[] = [];
  for (const item of root?.['00081199']?.Value ?? []) {
    referenced.push({
      sopClassUID: firstValue(item, '00081150'),
      sopInstanceUID: firstValue(item, '00081155'),
      retrieveURL: firstValue(item, '00081190'),
      warningReason: firstValue(item, '00081196'),
    });
  }
  for (const item of root?.['00081198']?.Value ?? []) {
    failed.push({
      sopClassUID: firstValue(item, '00081150'),
      sopInstanceUID: firstValue(item, '00081155'),
      failureReason: firstValue(item, '00081197'),
      comment: firstValue(item, '00000902') ?? firstValue(item, '0040A160'),
    });
  }
  return { referenced, failed, warningReason: firstValue(root, '00081196') };
}

/**
 * Sends the parts in one STOW-RS request. Resolves with the parsed response for any HTTP status
 * (the caller decides); rejects only on network errors.
 */
export function stow(parts: StowPart[], opts: StowOptions): Promise<StowResult> {
  const boundary = `stow-${randomBytes(12).toString('hex')}`;
  const partHead = `--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`;
  const delimiter = `\r\n`;
  const close = `--${boundary}--\r\n`;
  const bytesSent = parts.reduce((n, p) => n + partSize(p), 0);
  const contentLength =
    parts.length * (Buffer.byteLength(partHead) + Buffer.byteLength(delimiter)) + bytesSent + close.length;

  const root = opts.dicomwebRoot.replace(/\/+$/, '');
  const url = new URL(
    opts.studyInstanceUID
      ? `${root}/studies/${encodeURIComponent(opts.studyInstanceUID)}`
      : `${root}/studies`,
  );
  const isHttps = url.protocol === 'https:';
  const mod = isHttps ? https : http;

  return new Promise<StowResult>((resolve, reject) => {
    const req = mod.request(url, {
      method: 'POST',
      agent: isHttps ? agents.https : agents.http,
      headers: {
        'Content-Type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
        'Content-Length': String(contentLength),
        Accept: 'application/dicom+json',
        ...authorization(),
        ...opts.headers,
      },
      timeout: opts.timeoutMs ?? 600_000,
    });
    let settled = false;
    let status = 0;
    let ctype = '';
    const chunks: Buffer[] = [];
    const finish = () => {
      if (settled) return;
      settled = true;
      // The response is small (one item per part), so collecting it is fine.
      const body = Buffer.concat(chunks).toString('utf8');
      let parsed: ReturnType<typeof parseStowResponse> | undefined;
      let json: unknown;
      if (/json/i.test(ctype) || /^\s*[[{]/.test(body)) {
        try {
          json = body.trim() ? JSON.parse(body) : {};
          parsed = parseStowResponse(json);
        } catch {
          parsed = undefined;
        }
      }
      // A 4xx/5xx with an empty or item-less JSON body is a whole-request failure: keep the text.
      let text: string | undefined;
      if (parsed && status >= 300 && parsed.referenced.length === 0 && parsed.failed.length === 0) {
        parsed = undefined;
        // The server's own reason when it gives one (the archive's errors: {"status", "message"}).
        text = errorMessage(json) ?? 'request refused, with no per-instance status in the response';
      }
      resolve({
        status,
        referenced: parsed?.referenced ?? [],
        failed: parsed?.failed ?? [],
        warningReason: parsed?.warningReason,
        text: parsed ? undefined : (text ?? (body.slice(0, 2000) || '(empty body)')),
        bytesSent,
      });
    };
    const fail = (err: Error) => {
      if (settled) return;
      // The server may answer early (413, 415, 400) and close while we are still sending: keep its answer.
      if (status) return finish();
      settled = true;
      req.destroy();
      reject(err);
    };
    req.on('timeout', () => fail(new Error(`STOW request to ${url} timed out`)));
    req.on('error', fail);
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      ctype = String(res.headers['content-type'] ?? '');
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', fail);
      res.on('aborted', finish);
      res.on('end', finish);
    });

    (async () => {
      for (const p of parts) {
        await writeChunk(req, partHead);
        if (p.kind === 'bytes') {
          await writeChunk(req, p.bytes);
        } else {
          if (p.kind === 'file' && p.prefix) await writeChunk(req, p.prefix);
          const source =
            p.kind === 'file'
              ? createReadStream(p.path, { highWaterMark: 256 * 1024, start: p.start ?? 0 })
              : p.chunks();
          let n = 0;
          for await (const chunk of source as AsyncIterable<Uint8Array>) {
            n += chunk.length;
            await writeChunk(req, chunk);
          }
          const what = p.kind === 'file' ? p.path : (p.name ?? 'generated part');
          if (n !== p.size) throw new Error(`${what}: size changed while being sent (${p.size} → ${n})`);
        }
        await writeChunk(req, delimiter);
      }
      await writeChunk(req, close);
      req.end();
    })().catch(fail);
  });
}

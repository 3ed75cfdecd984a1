/** STOW-RS (PS3.18 10.5): POST /studies[/{study}] with multipart/related; type="application/dicom". */
import type { Request, Response } from 'express';
import { parseMediaType } from '../../dicomweb/media-types';
import { parseMultipart } from '../../dicomweb/multipart';
import {
  badRequest,
  DicomwebError,
  type FailedInstanceRef,
  FailureReason,
  payloadTooLarge,
  type StoredInstanceRef,
  stowResponse,
  stowStatus,
  unsupportedMediaType,
} from '../../dicomweb/status';
import { isAcceptableUID } from '../../dicomweb/uids';
import { type IngestContext, type IngestResult, startIngest } from '../ingest';
import { deleteStoredBlob } from '../transcode/copies';
import { publicRoot } from './common';

/** Instances of one request being made durable and indexed at the same time. */
const MAX_IN_FLIGHT = 8;
/** Instances of one request being indexed at once, once the request has arrived whole. */
const MAX_INDEXING = 32;

export async function stow(ctx: IngestContext, req: Request, res: Response): Promise<void> {
  const study = req.params.study as string | undefined;
  if (study !== undefined && !isAcceptableUID(study))
    throw badRequest(`"${String(study).slice(0, 80)}" is not a valid UID`);
  const ct = parseMediaType(req.headers['content-type'] ?? '');
  if (ct?.type !== 'multipart/related') {
    throw unsupportedMediaType(
      'STOW-RS expects Content-Type: multipart/related; type="application/dicom"; boundary=...',
    );
  }
  const type = (ct.params.type ?? 'application/dicom').toLowerCase();
  if (type !== 'application/dicom') {
    throw unsupportedMediaType(
      `STOW-RS of ${type} is not supported; send multipart/related; type="application/dicom"`,
    );
  }
  if (!ct.params.boundary) throw badRequest('Content-Type multipart/related has no boundary parameter');
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > ctx.config.maxStowBytes) {
    throw payloadTooLarge(
      `request body of ${declared} bytes exceeds PACS_MAX_STOW_BYTES=${ctx.config.maxStowBytes}`,
    );
  }

  const root = publicRoot(req);
  // Parts are received one after the other; each instance is made durable (its blob written and
  // synced) while the next part is received, at most MAX_IN_FLIGHT at once. None is indexed before the
  // request has been read to its end: a truncated or broken request leaves no instance that a query, a
  // viewer or another sender could have seen in the meantime (and, with PACS_DUPLICATE_POLICY=overwrite,
  // replaces nothing). Then they are indexed, in order, and the answer waits for them.
  let receivedWhole!: () => void;
  let abandon!: (err: unknown) => void;
  const received = new Promise<void>((resolve, reject) => {
    receivedWhole = resolve;
    abandon = reject;
  });
  received.catch(() => {});
  const results: Promise<IngestResult | FailedInstanceRef>[] = [];
  const inFlight = new Set<Promise<unknown>>();
  const reading: { error?: unknown } = {};
  const body = limited(req, ctx.config.maxStowBytes, ctx.config.stowIdleSeconds, reading);
  try {
    for await (const part of parseMultipart(body, ct.params.boundary)) {
      const partType = part.headers['content-type'];
      if (partType !== undefined && parseMediaType(partType)?.type !== 'application/dicom') {
        results.push(
          Promise.resolve({
            failureReason: FailureReason.CannotUnderstand,
            message: `part Content-Type ${partType} is not application/dicom`,
          }),
        );
        continue;
      }
      let durable!: () => void;
      const waiting = new Promise<void>((resolve) => {
        durable = resolve;
      });
      // Indexed in order, MAX_INDEXING at once: a request of thousands of instances does not build
      // thousands of index rows at the same moment.
      const before = results[results.length - MAX_INDEXING];
      const { consumed, result } = startIngest(ctx, part.body, {
        expectedStudyInstanceUID: study,
        publicRoot: root,
        beforeIndex: async () => {
          durable();
          await received;
          await before?.catch(() => {});
        },
      });
      results.push(result);
      result.catch(() => {}); // rejects only when the request is abandoned (below)
      // In flight until the instance is durable and waits for the end of the request (or has failed).
      const slot = Promise.race([waiting, result]).catch(() => {});
      inFlight.add(slot);
      void slot.finally(() => inFlight.delete(slot));
      await consumed;
      while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
    }
    // After the closing boundary: the epilogue, ignored, up to the end of the request. A request that
    // ends before its Content-Length (the client went away) is truncated: nothing of it is kept.
    for await (const _ of body);
  } catch (err) {
    // Release the request stream, so the error handler can drain what the client still sends.
    await body.return(undefined).catch(() => {});
    // The request as a whole is unusable (truncated, bad boundary, too large): none of its instances is
    // indexed, and their new blobs are deleted before the answer.
    // The body's own failure (too large, stalled, cut off) is the cause, also when it surfaced as a
    // truncated multipart body in the loop above.
    const cause = reading.error ?? err;
    abandon(cause);
    await Promise.allSettled(results);
    throw cause;
  }
  receivedWhole();

  const stored: StoredInstanceRef[] = [];
  const failed: FailedInstanceRef[] = [];
  const studies = new Set<string>();
  let warned = 0;
  for (const r of await Promise.all(results)) {
    if (!('ok' in r)) failed.push(r);
    else if (!r.ok) failed.push(r.failed);
    else {
      stored.push(r.ref);
      studies.add(r.StudyInstanceUID);
      if (r.ref.warningReason !== undefined) warned++;
      if (r.obsoleteBlobKey) await deleteStoredBlob(ctx.blobs, r.obsoleteBlobKey).catch(() => {});
    }
  }
  if (stored.length === 0 && failed.length === 0) throw badRequest('the multipart body contains no parts');

  const status = stowStatus(stored.length, failed.length, warned);
  ctx.log.info('stow', { stored: stored.length, failed: failed.length, status });
  // The audit trail names each study (and so its patient) the request stored into.
  res.locals.auditStudies = [...studies];
  res.locals.auditDetail = `stored ${stored.length}, failed ${failed.length}`;
  res
    .status(status)
    .type('application/dicom+json')
    .send(JSON.stringify(stowResponse(study ? `${root}/studies/${study}` : undefined, stored, failed)));
}

/**
 * The request body as chunks, failing with 413 once more than max bytes arrive, and with 408 when
 * nothing arrives for idleSeconds (a sender that stalled would otherwise hold its temporary file, a
 * descriptor and a connection for good; a slow link still sends something every few seconds).
 */
async function* limited(
  req: Request,
  max: number,
  idleSeconds: number,
  reading: { error?: unknown },
): AsyncGenerator<Uint8Array> {
  let n = 0;
  // Not destroyed on early exit: the error handler drains it so the client can read our answer.
  const chunks = req.iterator({ destroyOnReturn: false }) as AsyncIterableIterator<Buffer>;
  try {
    for (;;) {
      let r: IteratorResult<Buffer>;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new DicomwebError(
                408,
                `no part of the request body arrived for ${idleSeconds} s (PACS_STOW_IDLE_SECONDS): nothing of it is kept`,
              ),
            ),
          idleSeconds * 1000,
        );
      });
      try {
        r = await Promise.race([chunks.next(), stalled]);
      } catch (err) {
        // The connection failed or the client went away mid-body: the request's fault, not the archive's.
        reading.error =
          err instanceof DicomwebError
            ? err
            : badRequest(`the request body could not be read to its end: ${(err as Error).message}`);
        throw reading.error;
      } finally {
        clearTimeout(timer);
      }
      if (r.done) return;
      n += r.value.length;
      if (n > max) {
        reading.error = payloadTooLarge(`request body exceeds PACS_MAX_STOW_BYTES=${max}`);
        throw reading.error;
      }
      yield r.value;
    }
  } finally {
    // A pending read (after a stall) is not awaited: it settles when the connection is closed.
    chunks.return?.()?.catch(() => {});
  }
}

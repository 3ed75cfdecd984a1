/** Small helpers shared by the DICOMweb routes. */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import { type MediaType, parseAccept } from '../../dicomweb/media-types';
import { badRequest, notFound } from '../../dicomweb/status';
import { isAcceptableUID } from '../../dicomweb/uids';
import type { Index, Scope, StoredInstance } from '../../storage/index';

export const DICOMWEB_ROOT = '/dicomweb';

/**
 * The query parameters of a request, from its raw query string: everything after the first "?", so a
 * "?" in a value (a single-character wildcard a client did not percent-encode) stays in that value.
 */
export function queryParams(req: Request): URLSearchParams {
  const url = req.originalUrl;
  const at = url.indexOf('?');
  const query = at < 0 ? '' : url.slice(at + 1);
  // URLSearchParams keeps a malformed escape ("%ZZ") as it is and turns bytes that are not UTF-8 into
  // U+FFFD: a search for a mangled name would quietly find nothing. It is refused instead.
  if (query.includes('%')) {
    for (const piece of query.split(/[&=]/)) {
      try {
        decodeURIComponent(piece);
      } catch {
        throw badRequest(
          `the query string is not valid percent-encoded UTF-8 at ${JSON.stringify(piece.slice(0, 80))}`,
        );
      }
    }
  }
  return new URLSearchParams(query);
}

/**
 * The media types a DICOMweb request accepts, best first: the `accept` query parameter when present
 * (PS3.18 8.3.3.1: it takes precedence over the Accept header; for links that cannot set headers),
 * else the Accept header.
 */
export function acceptedTypes(req: Request, query: URLSearchParams = queryParams(req)): MediaType[] {
  const values = query.getAll('accept');
  return values.length > 0 ? parseAccept(values.join(',')) : parseAccept(req.headers.accept);
}

/** A Host header value: a name or IPv4 address, or a bracketed IPv6 address, and maybe a port. */
const HOST_HEADER = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$/;

/**
 * Origin of the archive as the client reached it, or PACS_PUBLIC_URL: what links, RetrieveURL and
 * BulkDataURI start with. The Host header is checked (it is written into JSON, headers, share links and
 * their QR codes, and a forged one must not inject) and the protocol is http or https.
 */
export function publicOrigin(req: Request): string {
  const configured = req.app.locals.publicUrl as string | undefined;
  if (configured) return configured.replace(/\/$/, '');
  const host = req.get('host') ?? 'localhost';
  if (!HOST_HEADER.test(host)) throw badRequest(`the Host header "${host.slice(0, 80)}" is not a host name`);
  const protocol = req.protocol === 'https' ? 'https' : 'http';
  return `${protocol}://${host}`;
}

/** Absolute DICOMweb root as the client reached it (for RetrieveURL and BulkDataURI). */
export function publicRoot(req: Request): string {
  return `${publicOrigin(req)}${DICOMWEB_ROOT}`;
}

function uid(value: unknown, name: string): string {
  if (!isAcceptableUID(value))
    throw badRequest(`${name} "${String(value).slice(0, 80)}" in the URL is not a valid UID`);
  return value;
}

/** The study/series/instance named in the path, validated. */
export function scopeOf(req: Request): Scope {
  const p = req.params as Record<string, string | undefined>;
  const scope: Scope = { StudyInstanceUID: uid(p.study, 'StudyInstanceUID') };
  if (p.series !== undefined) scope.SeriesInstanceUID = uid(p.series, 'SeriesInstanceUID');
  if (p.instance !== undefined) scope.SOPInstanceUID = uid(p.instance, 'SOPInstanceUID');
  return scope;
}

export function describeScope(s: Scope): string {
  if (s.SOPInstanceUID) return `instance ${s.SOPInstanceUID}`;
  if (s.SeriesInstanceUID) return `series ${s.SeriesInstanceUID}`;
  return `study ${s.StudyInstanceUID}`;
}

/** The stored instances the path names (one instance, or every instance of a series or study); 404 when none. */
export async function instancesInScope(index: Index, req: Request): Promise<StoredInstance[]> {
  const scope = scopeOf(req);
  const list = scope.SOPInstanceUID
    ? [await index.getInstance(scope as Required<typeof scope>)].filter((x): x is StoredInstance => !!x)
    : await index.listInstances(scope);
  if (list.length === 0) throw notFound(`${describeScope(scope)} is not in the archive`);
  return list;
}

/** Streams a body to the client with back-pressure; a client that leaves stops the body's generator. */
export async function send(res: Response, body: AsyncIterable<Uint8Array>): Promise<void> {
  await pipeline(Readable.from(body, { objectMode: false }), res);
}

/**
 * The frame numbers of a {frames} path segment (PS3.18 8.3.2: 1-based, comma-separated) for an
 * instance of `count` frames. A frame may be named twice, but a list cannot ask for more frames than
 * the whole instance has.
 */
export function parseFrameList(text: string, count: number): number[] {
  const list = text.split(',');
  if (list.length > count) {
    throw badRequest(
      `the frame list names ${list.length} frames; the instance has ${count} frame${count === 1 ? '' : 's'}`,
    );
  }
  const frames = list.map((s) => {
    if (!/^[1-9][0-9]{0,8}$/.test(s.trim()))
      throw badRequest(`"${s}" is not a frame number (frames are numbered from 1)`);
    return Number(s);
  });
  for (const f of frames) {
    if (f > count)
      throw notFound(`frame ${f} does not exist: the instance has ${count} frame${count === 1 ? '' : 's'}`);
  }
  return frames;
}

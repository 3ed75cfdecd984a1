/**
 * Client side of the reliability tests and tools (crash, storage faults, soak, fuzz): a seeded random
 * generator, synthetic instances that know their own UIDs and hash, and STOW / WADO / QIDO calls that
 * report exactly what the archive acknowledged.
 */
import { createHash, randomBytes } from 'node:crypto';
import { findElement, scanPart10 } from '../../dicomweb/part10';
import { syntheticSeries } from '../../server/synthetic';

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A small deterministic random generator (mulberry32): the same seed gives the same cases. */
export interface Random {
  /** [0, 1) */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Uint8Array;
}

export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: (items) => items[int(items.length)],
    bytes: (n) => Uint8Array.from({ length: n }, () => int(256)),
  };
}

export interface InstanceUIDs {
  study: string;
  series: string;
  sop: string;
}

export interface TestInstance extends InstanceUIDs {
  bytes: Uint8Array;
  sha256: string;
}

/** The UIDs of a Part 10 file, or undefined when it does not scan or lacks one. */
export function uidsOf(bytes: Uint8Array): InstanceUIDs | undefined {
  try {
    const { dataset } = scanPart10(bytes);
    const text = (tag: string) => {
      const v = findElement(dataset, tag)?.value;
      return v
        ? Buffer.from(v)
            .toString('latin1')
            .replace(/[\0 ]+$/, '')
        : undefined;
    };
    const [study, series, sop] = [text('0020000D'), text('0020000E'), text('00080018')];
    return study && series && sop ? { study, series, sop } : undefined;
  } catch {
    return undefined;
  }
}

/** n synthetic CT instances (one new study and series, random UIDs) of rows x rows pixels. */
export function syntheticInstances(
  n: number,
  opts: { rows?: number; patientId?: string } = {},
): TestInstance[] {
  const rows = opts.rows ?? 64;
  const out: TestInstance[] = [];
  for (const bytes of syntheticSeries({
    patientName: 'Reliability^Test',
    patientId: opts.patientId ?? `REL-${randomBytes(4).toString('hex')}`,
    instances: n,
    rows,
    columns: rows,
  })) {
    const uids = uidsOf(bytes);
    if (!uids) throw new Error('a synthetic instance without UIDs');
    out.push({ ...uids, bytes, sha256: sha256(bytes) });
  }
  return out;
}

/** A multipart/related body of application/dicom parts (small bodies: tests and tools only). */
export function multipart(files: Uint8Array[], boundary = `rel-${randomBytes(8).toString('hex')}`) {
  const chunks: Buffer[] = [];
  for (const f of files)
    chunks.push(
      Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
      Buffer.from(f),
      CRLF,
    );
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    body: Buffer.concat(chunks),
    contentType: `multipart/related; type="application/dicom"; boundary=${boundary}`,
  };
}
const CRLF = Buffer.from('\r\n');

export interface StowFailure {
  sop?: string;
  reason: number;
  message: string;
}

export interface StowOutcome {
  status: number;
  /** SOP Instance UIDs in ReferencedSOPSequence (0008,1199): acknowledged as stored. */
  acknowledged: string[];
  /** RetrieveURL (0008,1190) of each acknowledged instance, same order. */
  retrieveURLs: string[];
  /** FailedSOPSequence (0008,1198) items. */
  failed: StowFailure[];
  /** The `message` of a whole-request error ({status, message} JSON). */
  message?: string;
  headers: Headers;
}

type Json = Record<string, { Value?: unknown[] } | undefined>;
const first = (item: Json, tag: string) => item[tag]?.Value?.[0];

/** Interprets a STOW-RS response body: DICOM JSON, or the {status, message} of a refused request. */
export function parseStow(status: number, text: string, headers: Headers): StowOutcome {
  const out: StowOutcome = { status, acknowledged: [], retrieveURLs: [], failed: [], headers };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    out.message = text.slice(0, 200);
    return out;
  }
  const root = (Array.isArray(json) ? json[0] : json) as Json & { message?: unknown };
  if (typeof root?.message === 'string') out.message = root.message;
  for (const item of (root?.['00081199']?.Value ?? []) as Json[]) {
    out.acknowledged.push(String(first(item, '00081155')));
    out.retrieveURLs.push(String(first(item, '00081190')));
  }
  for (const item of (root?.['00081198']?.Value ?? []) as Json[]) {
    const sop = first(item, '00081155');
    out.failed.push({
      sop: sop === undefined ? undefined : String(sop),
      reason: Number(first(item, '00081197')),
      message: String(first(item, '0040A160') ?? ''),
    });
  }
  return out;
}

/** STOW-RS of whole files in one request. Rejects only when no complete response arrives. */
export async function stowInstances(
  dicomweb: string,
  files: Uint8Array[],
  opts: { signal?: AbortSignal; study?: string } = {},
): Promise<StowOutcome> {
  const { body, contentType } = multipart(files);
  const res = await fetch(`${dicomweb}/studies${opts.study ? `/${opts.study}` : ''}`, {
    method: 'POST',
    headers: { 'Content-Type': contentType, Accept: 'application/dicom+json' },
    body: new Uint8Array(body.buffer, body.byteOffset, body.length),
    signal: opts.signal,
  });
  return parseStow(res.status, await res.text(), res.headers);
}

/** WADO-RS of one instance as application/dicom: the stored bytes. */
export async function retrieveInstance(
  dicomweb: string,
  i: InstanceUIDs,
  signal?: AbortSignal,
): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const res = await fetch(`${dicomweb}/studies/${i.study}/series/${i.series}/instances/${i.sop}`, {
    headers: { Accept: 'application/dicom; transfer-syntax=*' },
    signal,
  });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

/** Every match of a QIDO-RS search, page by page (the archive caps `limit`, PACS_QIDO_MAX_RESULTS). */
async function searchAll(url: string): Promise<Json[]> {
  const out: Json[] = [];
  const page = 1000;
  for (let offset = 0; ; offset += page) {
    const res = await fetch(`${url}${url.includes('?') ? '&' : '?'}limit=${page}&offset=${offset}`, {
      headers: { Accept: 'application/dicom+json' },
    });
    if (res.status !== 200) throw new Error(`QIDO ${url}: HTTP ${res.status} ${await res.text()}`);
    const list = (await res.json()) as Json[];
    out.push(...list);
    if (list.length === 0 || !res.headers.get('warning')?.includes('additional results')) return out;
  }
}

/** Every instance QIDO-RS knows (study, series, SOP Instance UIDs). */
export async function listInstances(dicomweb: string): Promise<InstanceUIDs[]> {
  return (await searchAll(`${dicomweb}/instances`)).map((ds) => ({
    study: String(first(ds, '0020000D')),
    series: String(first(ds, '0020000E')),
    sop: String(first(ds, '00080018')),
  }));
}

/** Number of instances in the archive, from the study-level counts (NumberOfStudyRelatedInstances). */
export async function countInstances(dicomweb: string): Promise<number> {
  const studies = await searchAll(`${dicomweb}/studies?includefield=00201208`);
  return studies.reduce((n, ds) => n + Number(first(ds, '00201208') ?? 0), 0);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

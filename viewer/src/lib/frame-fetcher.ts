/** The page's side of frame-fetch-worker: fetch a frame off the main thread, abortable. */
import type { FrameBytes } from './frame-bytes';
import type { DecodedFrame, NativeFrameParams } from './native-frame';
import type { TransferSample } from './transfer-policy';
import { recordTransfer } from './transfer-settings';

/** A frame the worker has decoded (see native-frame.ts). */
export interface DecodedFrameReply {
  decoded: DecodedFrame;
  transferSyntaxUid: string;
}

type Reply =
  | { id: number; buffer: ArrayBuffer; offset: number; length: number; transferSyntaxUid: string }
  | ({ id: number } & DecodedFrameReply)
  | { id: number; error: string; aborted: boolean }
  | { timing: TransferSample[] };

interface Pending {
  resolve(frame: FrameBytes | DecodedFrameReply): void;
  reject(err: Error & { aborted?: boolean }): void;
}

let worker: Worker | null = null;
let nextId = 1;
/** Bodies the worker has received, as Resource Timing measured them (transferSize: headers and body). */
const received = { bytes: 0, requests: 0 };

/** What the worker has received so far (its requests are not in the page's own Resource Timing). */
export function workerTransfers(): { bytes: number; requests: number } {
  return { ...received };
}
const pending = new Map<number, Pending>();

function getWorker(): Worker {
  if (worker) return worker;
  worker = new Worker(new URL('./frame-fetch-worker.ts', import.meta.url), { type: 'module' });
  worker.onmessage = (e: MessageEvent<Reply>) => {
    const r = e.data;
    if ('timing' in r) {
      for (const sample of r.timing) {
        recordTransfer(sample);
        received.bytes += sample.bytes;
        received.requests++;
      }
      return;
    }
    const p = pending.get(r.id);
    if (!p) return;
    pending.delete(r.id);
    if ('error' in r) p.reject(Object.assign(new Error(r.error), { aborted: r.aborted }));
    else if ('decoded' in r) p.resolve({ decoded: r.decoded, transferSyntaxUid: r.transferSyntaxUid });
    else
      p.resolve({
        pixelData: new Uint8Array(r.buffer, r.offset, r.length),
        transferSyntaxUid: r.transferSyntaxUid,
      });
  };
  return worker;
}

/** Starts the worker ahead of need (its script is fetched and compiled meanwhile). */
export function warmFrameFetcher(): void {
  getWorker();
}

/** How to fetch a frame: decode it in the worker when it is native greyscale; the HTTP cache mode. */
export interface FetchOptions {
  decode?: NativeFrameParams;
  cache?: RequestCache;
}

/**
 * Fetches one frame (absolute URL) in the worker, with this Accept header. abort() rejects with
 * `aborted: true`. With `decode`, a native greyscale frame comes decoded (DecodedFrameReply), any
 * other as its bytes.
 */
export function fetchFrameOffThread(
  url: string,
  accept: string,
  options?: { cache?: RequestCache },
): { promise: Promise<FrameBytes>; abort(): void };
export function fetchFrameOffThread(
  url: string,
  accept: string,
  options: FetchOptions,
): { promise: Promise<FrameBytes | DecodedFrameReply>; abort(): void };
export function fetchFrameOffThread(
  url: string,
  accept: string,
  options: FetchOptions = {},
): { promise: Promise<FrameBytes | DecodedFrameReply>; abort(): void } {
  const id = nextId++;
  const w = getWorker();
  const promise = new Promise<FrameBytes | DecodedFrameReply>((resolve, reject) => {
    pending.set(id, { resolve, reject });
  });
  w.postMessage({ id, url, accept, decode: options.decode, cache: options.cache });
  return { promise, abort: () => w.postMessage({ id, abort: true }) };
}

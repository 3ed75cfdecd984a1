/**
 * Fetches frames off the page's main thread. On a 2-core PC the main thread is what limits how fast
 * a series arrives, and receiving a response body costs it about as much as everything else done
 * per image; here that happens on another thread, and the bytes are handed over without a copy.
 *
 * In: { id, url, accept, decode?, cache? } to fetch (accept: the Accept header, by the transfer policy;
 * decode: what a native greyscale frame needs to be decoded here, see native-frame.ts; cache: the
 * request's cache mode, see frameCacheMode), { id, abort: true } to cancel.
 * Out: { id, buffer, offset, length, transferSyntaxUid } (the frame's bytes, buffer transferred), or
 * { id, decoded, transferSyntaxUid } when decoded here (its pixels' buffer transferred), or
 * { id, error, aborted };
 * and { timing: [{ bytes, start, end }] }, the arrival of the bodies received (Resource Timing, ms since
 * the epoch), for the link measurement of the transfer policy.
 */
import { FRAME_ACCEPT, frameFromResponse } from './frame-bytes';
import { decodeNative, type NativeFrameParams } from './native-frame';
import { resourceSample, type TransferSample } from './transfer-policy';

const controllers = new Map<number, AbortController>();
// The worker's global scope; the project's type check uses the DOM library, not the worker one.
const scope = self as unknown as {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<Request>) => void) | null;
};

type Request =
  | { id: number; url: string; accept?: string; decode?: NativeFrameParams; cache?: RequestCache }
  | { id: number; abort: true };

try {
  new PerformanceObserver((list) => {
    const timing: TransferSample[] = [];
    for (const e of list.getEntries() as PerformanceResourceTiming[]) {
      const sample = resourceSample(e, performance.timeOrigin);
      if (sample) timing.push(sample);
    }
    if (timing.length) scope.postMessage({ timing });
  }).observe({ type: 'resource', buffered: true });
  // The worker fetches nothing else: the timeline need not keep entries the observer has seen.
  setInterval(() => performance.clearResourceTimings(), 10_000);
} catch {
  /* no Resource Timing in workers: the page's own measurements decide */
}

scope.onmessage = async (e: MessageEvent<Request>) => {
  const msg = e.data;
  if ('abort' in msg) {
    controllers.get(msg.id)?.abort();
    return;
  }
  const controller = new AbortController();
  controllers.set(msg.id, controller);
  try {
    const res = await fetch(msg.url, {
      headers: { Accept: msg.accept ?? FRAME_ACCEPT },
      signal: controller.signal,
      cache: msg.cache ?? 'default',
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = new Uint8Array(await res.arrayBuffer());
    const frame = frameFromResponse(res.headers.get('Content-Type') ?? '', body);
    if (!frame) throw new Error('unknown transfer syntax');
    const { pixelData, transferSyntaxUid } = frame;
    const decoded = msg.decode && decodeNative(pixelData, transferSyntaxUid, msg.decode);
    if (decoded) {
      scope.postMessage({ id: msg.id, decoded, transferSyntaxUid }, [
        decoded.pixelData.buffer as ArrayBuffer,
      ]);
      return;
    }
    scope.postMessage(
      {
        id: msg.id,
        buffer: pixelData.buffer,
        offset: pixelData.byteOffset,
        length: pixelData.length,
        transferSyntaxUid,
      },
      [pixelData.buffer as ArrayBuffer],
    );
  } catch (err) {
    scope.postMessage({
      id: msg.id,
      error: String((err as Error)?.message ?? err),
      aborted: controller.signal.aborted,
    });
  } finally {
    controllers.delete(msg.id);
  }
};

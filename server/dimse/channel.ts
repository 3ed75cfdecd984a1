/**
 * The bridge between dcmjs-dimse, which writes a C-STORE's data set into a Writable as P-DATA arrives,
 * and the ingest, which reads an async iterable: a Writable whose chunks are read in order, each write
 * completing once the reader has taken its chunk and asked for the next (so the Writable's buffer is the
 * only queue). Its owner is told when that buffer is full (pause the socket) and drained (resume).
 *
 * If the reader stops early (the instance was refused), later chunks are discarded so the sender can
 * finish its data set and get the refusal. If the association ends before the data set is complete,
 * `fail` makes the reader throw: the ingest then keeps nothing.
 */
import { Writable } from 'node:stream';

export class DatasetChannel extends Writable {
  private pending: { chunk: Uint8Array; done: () => void } | undefined;
  private wake: (() => void) | undefined;
  private ended = false;
  private abandoned = false;
  private failure: Error | undefined;

  constructor(
    highWaterMark: number,
    private readonly onPressure?: (full: boolean) => void,
  ) {
    super({ highWaterMark });
    this.on('drain', () => this.onPressure?.(false));
  }

  override write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    const ok = super.write(chunk, encoding as BufferEncoding, cb as (err?: Error | null) => void);
    if (!ok) this.onPressure?.(true);
    return ok;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.abandoned || this.failure) {
      done();
      return;
    }
    this.pending = { chunk, done: () => done() };
    this.wake?.();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.ended = true;
    this.wake?.();
    done();
  }

  /** The data set will not be completed: the reader throws err (unless every byte already arrived). */
  fail(err: Error): void {
    if (this.ended || this.failure) return;
    this.failure = err;
    this.wake?.();
    this.onPressure?.(false);
  }

  async *chunks(): AsyncGenerator<Uint8Array> {
    /** The write whose chunk the reader holds: completed when the reader asks for more, or leaves. */
    let taken: (() => void) | undefined;
    try {
      while (true) {
        if (this.pending) {
          const p = this.pending;
          this.pending = undefined;
          taken = p.done;
          yield p.chunk;
          taken = undefined;
          p.done();
          continue;
        }
        if (this.failure) throw this.failure;
        if (this.ended) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
      }
    } finally {
      this.abandoned = true;
      taken?.();
      const p = this.pending;
      this.pending = undefined;
      p?.done();
      this.onPressure?.(false);
    }
  }
}

/**
 * A small pool of worker threads (worker.ts) that run the codecs, so that decoding or encoding a large
 * frame never stalls other requests. Jobs queue when every worker is busy; a worker that crashes or
 * exceeds the time limit is replaced and only its job fails. Background jobs (HTJ2K copies made after
 * ingest) run only when no request is waiting for a worker.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Job, JobResult } from './worker';

/** A job failed in the codec (corrupt data, unsupported parameters): the message says why. */
export class TranscodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TranscodeError';
  }
}

interface Pending {
  job: Job & { id: number };
  resolve: (data: Uint8Array) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  current?: Pending;
  timer?: NodeJS.Timeout;
}

const BOOT = new URL('./worker-boot.mjs', import.meta.url);

export class TranscodePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  /** Jobs nobody waits for (background work): dispatched only when `queue` is empty. */
  private readonly background: Pending[] = [];
  private nextId = 1;

  constructor(
    private maxWorkers = Math.max(1, Math.min(4, availableParallelism() - 1)),
    readonly timeoutMs = 120_000,
  ) {}

  /** Most worker threads running at once. */
  get size(): number {
    return this.maxWorkers;
  }

  /** Changes the number of worker threads (PACS_TRANSCODE_WORKERS); idle extra workers are stopped. */
  resize(size: number): void {
    this.maxWorkers = Math.max(1, Math.floor(size));
    const extra = Math.max(0, this.slots.length - this.maxWorkers);
    for (const slot of this.slots.filter((s) => !s.current).slice(0, extra)) {
      this.slots.splice(this.slots.indexOf(slot), 1);
      slot.worker.removeAllListeners('exit');
      slot.worker.on('exit', () => {});
      void slot.worker.terminate();
    }
    this.dispatch();
  }

  /** Runs a job; `background` jobs wait until no other job is queued. */
  run(job: Job, opts: { background?: boolean } = {}): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      (opts.background ? this.background : this.queue).push({
        job: { ...job, id: this.nextId++ },
        resolve,
        reject,
      });
      this.dispatch();
    });
  }

  /** Stops every worker (queued and running jobs fail). */
  async close(): Promise<void> {
    for (const p of [...this.queue.splice(0), ...this.background.splice(0)])
      p.reject(new TranscodeError('the transcoder was stopped'));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }

  private spawn(): Slot {
    const worker = new Worker(BOOT);
    worker.unref();
    const slot: Slot = { worker };
    worker.on('message', (msg: JobResult) => {
      const p = slot.current;
      if (!p || p.job.id !== msg.id) return;
      this.finish(slot);
      if (msg.ok) p.resolve(msg.data);
      else {
        // A codec that failed may have left its WebAssembly memory in any state: use a fresh worker.
        this.slots.splice(this.slots.indexOf(slot), 1);
        slot.worker.removeAllListeners('exit');
        slot.worker.on('exit', () => {});
        void slot.worker.terminate();
        p.reject(new TranscodeError(msg.message));
      }
      this.dispatch();
    });
    const fail = (why: string) => {
      const p = slot.current;
      this.finish(slot);
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      p?.reject(new TranscodeError(why));
      this.dispatch();
    };
    worker.on('error', (err) => fail(`the codec failed: ${err.message}`));
    worker.on('exit', (code) => fail(`the codec worker stopped (exit code ${code})`));
    this.slots.push(slot);
    return slot;
  }

  private finish(slot: Slot) {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.current = undefined;
  }

  private dispatch() {
    while (this.queue.length > 0 || this.background.length > 0) {
      let slot = this.slots.find((s) => !s.current);
      if (!slot) {
        if (this.slots.length >= this.maxWorkers) return;
        slot = this.spawn();
      }
      const p = (this.queue.length > 0 ? this.queue.shift() : this.background.shift()) as Pending;
      slot.current = p;
      const s = slot;
      s.timer = setTimeout(() => {
        // Stuck codec: the worker is stopped (its 'exit' rejects the job) and replaced on demand.
        void s.worker.terminate();
      }, this.timeoutMs);
      s.timer.unref();
      // The frame is copied (not transferred): it may be a view of a larger buffer still in use.
      s.worker.postMessage(p.job);
    }
  }
}

let shared: TranscodePool | undefined;

/** The process's transcoding pool, started on first use. */
export function transcoder(): TranscodePool {
  shared ??= new TranscodePool();
  return shared;
}

/** Sets the number of worker threads of the process's pool (server start, PACS_TRANSCODE_WORKERS). */
export function configureTranscoder(size: number): void {
  if (shared) shared.resize(size);
  else shared = new TranscodePool(size);
}

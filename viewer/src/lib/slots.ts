/**
 * At most `limit` tasks at a time: take() waits for a free slot (first come, first served), give()
 * frees one. Waiting takers can be cancelled by key (their take() resolves true: do not run).
 */
export interface Slots {
  /** Resolves false with a slot held, or true when the wait was cancelled (no slot held). */
  take(key?: string): Promise<boolean>;
  give(): void;
  /** Cancels the waiting takers whose key matches. */
  cancelWaiting(match: (key: string) => boolean): void;
}

export function slots(limit: number): Slots {
  let running = 0;
  const waiting: { key: string; go(cancelled: boolean): void }[] = [];
  return {
    take(key = '') {
      if (running < limit) {
        running++;
        return Promise.resolve(false);
      }
      return new Promise((go) => waiting.push({ key, go }));
    },
    give() {
      const next = waiting.shift();
      if (next) next.go(false);
      else running--;
    },
    cancelWaiting(match) {
      for (let i = waiting.length - 1; i >= 0; i--) {
        if (match(waiting[i].key)) waiting.splice(i, 1)[0].go(true);
      }
    },
  };
}

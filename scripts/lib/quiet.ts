/**
 * Waiting for a quiet machine before a measurement (Linux /proc/stat).
 *
 * The benchmark's targets run one after the other on the same cores. What one leaves behind (the
 * kernel writing back and paging out gigabytes of a STOW workload, a data folder being removed) can
 * still run when the next one is measured, and a run of one target cannot tell that from a slow
 * server. Before each target the bench therefore waits until the whole machine has been idle for a
 * while, up to a limit, and records how long it waited and how busy the machine was.
 */
import { readFileSync } from 'node:fs';

/** Jiffies of the "cpu" line of /proc/stat: all of them, and the idle ones (idle + iowait). */
export interface CpuTimes {
  total: number;
  idle: number;
}

/** Parses the aggregate "cpu " line of /proc/stat. */
export function parseProcStat(text: string): CpuTimes {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no "cpu" line');
  // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user).
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { total, idle: (f[3] ?? 0) + (f[4] ?? 0) };
}

/** Fraction of the machine's CPU time that was busy between two samples (0-1). */
export function busyFraction(a: CpuTimes, b: CpuTimes): number {
  const total = b.total - a.total;
  if (total <= 0) return 0;
  return Math.min(1, Math.max(0, 1 - (b.idle - a.idle) / total));
}

export interface QuietOptions {
  /** Busy at most this fraction of the machine (default 0.1: 10 %). */
  maxBusy?: number;
  /** For this many consecutive intervals (default 3). */
  intervals?: number;
  /** Of this length (default 1,000 ms). */
  intervalMs?: number;
  /** Give up after this long and go on (default 90 s). */
  timeoutMs?: number;
  /** The sampler (default: /proc/stat). */
  sample?: () => CpuTimes;
  sleep?: (ms: number) => Promise<void>;
}

export interface QuietReport {
  /** Whether the machine was quiet before the limit. */
  quiet: boolean;
  waitedMs: number;
  /** Busy fraction of each interval waited, in percent. */
  busyPercent: number[];
}

/** Whether /proc/stat can be read here. */
export function quietSupported(): boolean {
  try {
    parseProcStat(readFileSync('/proc/stat', 'utf8'));
    return true;
  } catch {
    return false;
  }
}

/** Waits until the machine has been quiet for `intervals` intervals in a row, or the limit. */
export async function waitForQuiet(opts: QuietOptions = {}): Promise<QuietReport> {
  const maxBusy = opts.maxBusy ?? 0.1;
  const intervals = opts.intervals ?? 3;
  const intervalMs = opts.intervalMs ?? 1000;
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const sample = opts.sample ?? (() => parseProcStat(readFileSync('/proc/stat', 'utf8')));
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const busyPercent: number[] = [];
  let quietInRow = 0;
  let waitedMs = 0;
  let prev = sample();
  while (quietInRow < intervals) {
    if (waitedMs >= timeoutMs) return { quiet: false, waitedMs, busyPercent };
    await sleep(intervalMs);
    waitedMs += intervalMs;
    const cur = sample();
    const busy = busyFraction(prev, cur);
    prev = cur;
    busyPercent.push(Math.round(busy * 1000) / 10);
    quietInRow = busy <= maxBusy ? quietInRow + 1 : 0;
  }
  return { quiet: true, waitedMs, busyPercent };
}

/**
 * Peak resident memory of another process (Linux): samples VmRSS from /proc/<pid>/status every
 * `intervalMs` and, when the kernel allows it, resets the high-water mark first (write "5" to
 * /proc/<pid>/clear_refs) so VmHWM afterwards is the exact peak of the measured interval.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface RssReport {
  /** VmRSS just before the measured operation, MB. */
  baselineMB: number;
  /** Highest VmRSS seen during the operation (max of samples and VmHWM when reset worked), MB. */
  peakMB: number;
  /** peak - baseline, MB. */
  increaseMB: number;
  samples: number;
  hwmReset: boolean;
}

function readStatusKB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

export function rssSupported(pid: number): boolean {
  try {
    return Number.isFinite(readStatusKB(pid, 'VmRSS'));
  } catch {
    return false;
  }
}

/** Measures the server's memory while `op` runs. */
export async function measureRss<T>(
  pid: number,
  op: () => Promise<T>,
  intervalMs = 50,
): Promise<{ result: T; rss: RssReport }> {
  let hwmReset = false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    hwmReset = true;
  } catch {
    hwmReset = false;
  }
  const baselineKB = readStatusKB(pid, 'VmRSS');
  let peakKB = baselineKB;
  let samples = 0;
  const sample = () => {
    try {
      const v = readStatusKB(pid, 'VmRSS');
      samples++;
      if (v > peakKB) peakKB = v;
    } catch {
      // process gone
    }
  };
  const timer = setInterval(sample, intervalMs);
  let result: T;
  try {
    result = await op();
  } finally {
    clearInterval(timer);
  }
  sample();
  if (hwmReset) {
    try {
      const hwm = readStatusKB(pid, 'VmHWM');
      if (hwm > peakKB) peakKB = hwm;
    } catch {
      // ignore
    }
  }
  const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;
  return {
    result,
    rss: {
      baselineMB: mb(baselineKB),
      peakMB: mb(peakKB),
      increaseMB: mb(peakKB - baselineKB),
      samples,
      hwmReset,
    },
  };
}

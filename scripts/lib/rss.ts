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

/** The process and all its descendants (a server with worker processes). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      const children = readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8').trim();
      if (children) out.push(...children.split(/\s+/).map(Number));
    } catch {
      // gone, or not Linux
    }
  }
  return out;
}

/**
 * Measures the server's memory while `op` runs: every process of its tree (a primary and its workers)
 * is sampled, and the increase is the sum of each process's peak minus its baseline.
 */
export async function measureRss<T>(
  pid: number,
  op: () => Promise<T>,
  intervalMs = 50,
): Promise<{ result: T; rss: RssReport }> {
  const pids = processTree(pid);
  let hwmReset = true;
  for (const p of pids) {
    try {
      writeFileSync(`/proc/${p}/clear_refs`, '5');
    } catch {
      hwmReset = false;
    }
  }
  const read = (p: number, field: 'VmRSS' | 'VmHWM') => {
    try {
      return readStatusKB(p, field);
    } catch {
      return Number.NaN; // process gone
    }
  };
  const baseline = pids.map((p) => read(p, 'VmRSS'));
  const peak = [...baseline];
  let samples = 0;
  const sample = () => {
    samples++;
    pids.forEach((p, i) => {
      const v = read(p, 'VmRSS');
      if (v > peak[i]) peak[i] = v;
    });
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
    pids.forEach((p, i) => {
      const hwm = read(p, 'VmHWM');
      if (hwm > peak[i]) peak[i] = hwm;
    });
  }
  const sum = (xs: number[]) => xs.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const baselineKB = sum(baseline);
  const increaseKB = sum(peak.map((v, i) => v - baseline[i]));
  const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;
  return {
    result,
    rss: {
      baselineMB: mb(baselineKB),
      peakMB: mb(baselineKB + increaseKB),
      increaseMB: mb(increaseKB),
      samples,
      hwmReset,
    },
  };
}

import { describe, expect, it } from 'vitest';
import { busyFraction, type CpuTimes, parseProcStat, waitForQuiet } from './quiet';

/** A sampler whose machine is busy by the given fractions, one per interval of 100 jiffies. */
function machine(busy: number[]): () => CpuTimes {
  let total = 1000;
  let idle = 500;
  let i = -1;
  return () => {
    if (i >= 0) {
      const b = busy[Math.min(i, busy.length - 1)];
      total += 100;
      idle += Math.round(100 * (1 - b));
    }
    i++;
    return { total, idle };
  };
}

describe('waiting for a quiet machine', () => {
  it('reads the aggregate cpu line of /proc/stat (idle and iowait are idle; guest time is inside user)', () => {
    const stat = 'cpu  100 5 20 800 50 0 3 2 40 0\ncpu0 50 2 10 400 25 0 1 1 20 0\nintr 1 2 3\n';
    expect(parseProcStat(stat)).toEqual({ total: 100 + 5 + 20 + 800 + 50 + 0 + 3 + 2, idle: 850 });
    expect(() => parseProcStat('intr 1 2 3\n')).toThrow(/cpu/);
    expect(busyFraction({ total: 100, idle: 50 }, { total: 300, idle: 200 })).toBe(0.25);
    expect(busyFraction({ total: 100, idle: 50 }, { total: 100, idle: 50 })).toBe(0);
  });

  it('waits until the machine has been idle for 3 intervals in a row', async () => {
    const q = await waitForQuiet({
      sample: machine([0.9, 0.05, 0.5, 0.02, 0.08, 0.1]),
      sleep: async () => {},
      intervalMs: 1000,
    });
    expect(q).toEqual({ quiet: true, waitedMs: 6000, busyPercent: [90, 5, 50, 2, 8, 10] });
  });

  it('goes on after the limit when the machine stays busy, and says so', async () => {
    const q = await waitForQuiet({
      sample: machine([0.6]),
      sleep: async () => {},
      intervalMs: 1000,
      timeoutMs: 4000,
    });
    expect(q.quiet).toBe(false);
    expect(q.waitedMs).toBe(4000);
    expect(q.busyPercent).toEqual([60, 60, 60, 60]);
  });

  it('reads this machine', async () => {
    const q = await waitForQuiet({ intervalMs: 50, intervals: 1, maxBusy: 1, timeoutMs: 1000 });
    expect(q.quiet).toBe(true);
    expect(q.busyPercent).toHaveLength(1);
    expect(q.busyPercent[0]).toBeGreaterThanOrEqual(0);
    expect(q.busyPercent[0]).toBeLessThanOrEqual(100);
  });
});

/**
 * A bounded soak (scripts/soak.ts; `npm run soak` runs it for minutes): concurrent STOW-RS clients and
 * QIDO-RS / WADO-RS readers on loopback against a real archive process. Zero errors, zero lost instances
 * (every acknowledged one listed and retrieved byte for byte at the end), and memory that stays flat
 * after warm-up. PACS_SOAK_SECONDS sets the duration (default 40 s in CI).
 */
import { describe, expect, it } from 'vitest';
import { runSoak, SOAK_DEFAULTS, summarizeSoak } from '../../scripts/soak';

const SECONDS = Number(process.env.PACS_SOAK_SECONDS ?? 40);

describe('soak', () => {
  it(
    `serves ${SECONDS} s of concurrent STOW, QIDO and WADO without an error or a lost instance`,
    async () => {
      const report = await runSoak({ ...SOAK_DEFAULTS, durationMs: SECONDS * 1000 });
      console.log(`soak: ${summarizeSoak(report)}`);
      expect(report.errors).toEqual([]);
      expect(report.lost).toEqual([]);
      expect(report.serverErrors).toBe(0);
      expect(report.load.acknowledged.length).toBeGreaterThan(SECONDS * 10);
      expect(report.verified).toBe(report.load.acknowledged.length);
      expect(report.rss.growthMB).toBeLessThanOrEqual(SOAK_DEFAULTS.maxRssGrowthMB);
      expect(report.passed).toBe(true);
    },
    (SECONDS + 120) * 1000,
  );
});

/**
 * Bad input never hurts (scripts/fuzz.ts, `npm run fuzz` for thousands of cases): a few hundred seeded
 * cases of mutated sample files and broken multipart framing against a real archive process. Each gets a
 * clear answer in time (never 5xx, never a hang), the archive keeps answering /healthz, lists exactly the
 * instances it acknowledged (byte for byte as sent) and keeps no blob of what it refused.
 * PACS_FUZZ_CASES and PACS_FUZZ_SEED change the size and the cases.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ArchiveProcess, startArchive } from '../../scripts/lib/archive-process';
import { FUZZ_LIMITS, fuzzSamples, runFuzz, summarizeFuzz } from '../../scripts/fuzz';
import { SAMPLES, SAMPLES_MISSING, samplesPresent } from '../samples';

const CASES = Number(process.env.PACS_FUZZ_CASES ?? 300);
const SEED = Number(process.env.PACS_FUZZ_SEED ?? 1);

describe('fuzzed STOW-RS input', () => {
  let server: ArchiveProcess;
  let dataDir: string;
  beforeAll(async () => {
    if (!samplesPresent) console.warn(`${SAMPLES_MISSING}; fuzzing synthetic instances only`);
    dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-fuzz-'));
    server = await startArchive({ dataDir, env: FUZZ_LIMITS });
  });
  afterAll(async () => {
    await server?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it(`answers ${CASES} bad requests clearly, keeps serving and keeps nothing it refused (seed ${SEED})`, async () => {
    const report = await runFuzz({
      baseUrl: server.baseUrl,
      cases: CASES,
      seed: SEED,
      samples: samplesPresent ? await fuzzSamples(SAMPLES) : [],
      dataDir,
    });
    console.log(`fuzz: ${summarizeFuzz(report)}`);
    expect(report.violations).toEqual([]);
    expect(report.cases).toBe(CASES);
    expect(server.exit()).toBeUndefined();
    expect(server.errors).toEqual([]);
  }, 240_000);
});

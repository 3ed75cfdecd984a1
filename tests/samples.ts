/**
 * Where the shared real DICOM data lives: ../shared/dicom-samples beside the checkout, or
 * PACS_SAMPLES_DIR. Tests that need it skip, saying so, when it is absent; it is never committed.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import dicomParser from 'dicom-parser';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SAMPLES = process.env.PACS_SAMPLES_DIR
  ? path.resolve(process.env.PACS_SAMPLES_DIR)
  : path.resolve(REPO, '../shared/dicom-samples');
export const samplesPresent = existsSync(path.join(SAMPLES, 'MANIFEST.tsv'));
/** A suite's title, saying why it is skipped when the samples are absent. */
export function onSamples(title: string): string {
  return samplesPresent ? title : `${title} (skipped: DICOM samples absent, see tests/samples.ts)`;
}
export const SAMPLES_MISSING = `DICOM samples not found at ${SAMPLES} (set PACS_SAMPLES_DIR): tests that need real data are skipped`;

/**
 * Every sample file, as a '/'-separated path relative to SAMPLES, depth first with each folder's names
 * sorted; not LICENSES nor the .md and .tsv files that describe the samples. Empty when they are absent.
 */
export function sampleFiles(): string[] {
  const list = (dir: string, rel: string): string[] => {
    const out: string[] = [];
    for (const name of readdirSync(dir).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (r === 'LICENSES' || name.endsWith('.md') || name.endsWith('.tsv')) continue;
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) out.push(...list(full, r));
      else out.push(r);
    }
    return out;
  };
  return samplesPresent ? list(SAMPLES, '') : [];
}

/** The bytes of a sample file (path relative to SAMPLES). */
export function readSample(rel: string): Uint8Array {
  return new Uint8Array(readFileSync(path.join(SAMPLES, rel)));
}

/** A sample file with what the transcoding tests need to address and check it. */
export interface SampleObject {
  file: string;
  bytes: Buffer;
  ts: string;
  study: string;
  series: string;
  sop: string;
  frames: number;
  bitsAllocated: number;
  signed: boolean;
}

/**
 * Reads a sample file (path relative to SAMPLES) and its identifying attributes. The few samples that
 * start with their meta information, without preamble and DICM prefix, are given both.
 */
export function sampleObject(rel: string): SampleObject {
  let bytes = readFileSync(path.join(SAMPLES, rel));
  if (bytes.subarray(128, 132).toString('latin1') !== 'DICM')
    bytes = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), bytes]);
  const ds = dicomParser.parseDicom(new Uint8Array(bytes));
  return {
    file: rel,
    bytes,
    ts: ds.string('x00020010') as string,
    study: ds.string('x0020000d') as string,
    series: ds.string('x0020000e') as string,
    sop: ds.string('x00080018') as string,
    frames: Number(ds.string('x00280008') ?? 1),
    bitsAllocated: ds.uint16('x00280100') ?? 16,
    signed: ds.uint16('x00280103') === 1,
  };
}

/**
 * Where the shared real DICOM data lives: ../shared/dicom-samples beside the checkout, or
 * PACS_SAMPLES_DIR. Tests that need it skip, saying so, when it is absent; it is never committed.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SAMPLES = process.env.PACS_SAMPLES_DIR
  ? path.resolve(process.env.PACS_SAMPLES_DIR)
  : path.resolve(REPO, '../shared/dicom-samples');
export const samplesPresent = existsSync(path.join(SAMPLES, 'MANIFEST.tsv'));
export const SAMPLES_MISSING = `DICOM samples not found at ${SAMPLES} (set PACS_SAMPLES_DIR): tests that need real data are skipped`;

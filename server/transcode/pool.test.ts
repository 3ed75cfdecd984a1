import { afterAll, describe, expect, it } from 'vitest';
import type { ImageInfo } from '../../dicomweb/transfer-syntax';
import { TranscodePool } from './pool';

const IMAGE: ImageInfo = {
  Rows: 64,
  Columns: 64,
  BitsAllocated: 16,
  BitsStored: 16,
  PixelRepresentation: 0,
  SamplesPerPixel: 1,
  PhotometricInterpretation: 'MONOCHROME2',
  PlanarConfiguration: 0,
  NumberOfFrames: 1,
  RescaleSlope: 1,
  RescaleIntercept: 0,
  floatPixels: false,
};
const frame = new Uint8Array(64 * 64 * 2).map((_, i) => i * 31);
const job = {
  op: 'transcode',
  from: '1.2.840.10008.1.2.1',
  to: '1.2.840.10008.1.2.5',
  image: IMAGE,
  frame,
} as const;

describe('TranscodePool', () => {
  const pool = new TranscodePool(1);
  afterAll(() => pool.close());

  it('runs background jobs only when no other job waits', async () => {
    await pool.run(job); // the worker is up
    const order: string[] = [];
    const done = [
      pool.run(job).then(() => order.push('first')),
      pool.run(job, { background: true }).then(() => order.push('background')),
      pool.run(job).then(() => order.push('second')),
    ];
    await Promise.all(done);
    expect(order).toEqual(['first', 'second', 'background']);
  });

  it('can be resized (PACS_TRANSCODE_WORKERS)', async () => {
    pool.resize(2);
    expect(pool.size).toBe(2);
    const out = await Promise.all([pool.run(job), pool.run(job, { background: true })]);
    expect(out.every((o) => o.length > 0)).toBe(true);
    pool.resize(0);
    expect(pool.size).toBe(1);
  });
});

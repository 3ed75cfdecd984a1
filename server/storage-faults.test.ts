import { describe, expect, it } from 'vitest';
import { storageFault } from './storage-faults';

const sys = (code: string, message = code) => Object.assign(new Error(message), { code });

describe('storageFault', () => {
  it('reads an unreachable store or database as unavailable', () => {
    for (const err of [
      sys('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:9000'),
      sys('ECONNRESET'),
      sys('ETIMEDOUT'),
      sys('57P01', 'terminating connection due to administrator command'),
      sys('08006'),
      sys('SQLITE_BUSY'),
      sys('SQLITE_IOERR_FSYNC'),
      new Error('Connection terminated unexpectedly'),
      Object.assign(new Error('Service Unavailable'), {
        name: 'SlowDown',
        $metadata: { httpStatusCode: 503 },
      }),
      Object.assign(new Error('timed out'), { name: 'TimeoutError', $metadata: {} }),
      new Error('upload failed', { cause: sys('ECONNREFUSED') }),
      Object.assign(new AggregateError([sys('ECONNREFUSED')], ''), { code: undefined }),
    ]) {
      expect(storageFault(err)?.kind, String(err)).toBe('unavailable');
    }
    expect(storageFault(sys('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:9000'))?.message).toBe(
      "the archive's storage is unavailable (connect ECONNREFUSED 127.0.0.1:9000); try again later",
    );
  });

  it('reads a full disk or database as full', () => {
    for (const err of [sys('ENOSPC'), sys('EDQUOT'), sys('SQLITE_FULL'), sys('53100')])
      expect(storageFault(err)?.kind).toBe('full');
  });

  it('leaves everything else alone (bugs, missing objects, bad requests)', () => {
    for (const err of [
      new TypeError('x is undefined'),
      sys('ENOENT'),
      Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }),
      sys('23505', 'duplicate key value'),
      undefined,
      'a string',
    ]) {
      expect(storageFault(err)).toBeUndefined();
    }
  });
});

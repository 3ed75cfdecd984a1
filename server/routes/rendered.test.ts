import { describe, expect, it } from 'vitest';
import type { StoredInstance } from '../../storage/index';
import { thumbnailCandidates } from './rendered';

const inst = (series: string, n: number) =>
  ({ SeriesInstanceUID: series, SOPInstanceUID: `${series}.${n}` }) as StoredInstance;

describe('thumbnail candidates', () => {
  it('the middle image first, then its neighbours, with one place kept for the next series', () => {
    const a = [1, 2, 3, 4, 5, 6, 7].map((n) => inst('A', n));
    const b = [1, 2, 3].map((n) => inst('B', n));
    expect(thumbnailCandidates([...a, ...b]).map((i) => i.SOPInstanceUID)).toEqual([
      'A.4',
      'A.5',
      'A.3',
      'B.2',
    ]);
    expect(thumbnailCandidates(a).map((i) => i.SOPInstanceUID)).toEqual(['A.4', 'A.5', 'A.3', 'A.6']);
    expect(thumbnailCandidates([inst('A', 1), inst('A', 2)]).map((i) => i.SOPInstanceUID)).toEqual([
      'A.1',
      'A.2',
    ]);
    expect(thumbnailCandidates([])).toEqual([]);
  });
});

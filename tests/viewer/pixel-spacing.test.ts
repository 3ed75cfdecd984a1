/** viewer/src/lib/dicom-json.ts validSpacing: which PixelSpacing/ImagerPixelSpacing values are handed to Cornerstone. */
import { describe, expect, it } from 'vitest';
import { validSpacing } from '../../viewer/src/lib/dicom-json';

describe('validSpacing', () => {
  it('accepts two spacings above zero, as numbers or DS strings', () => {
    expect(validSpacing([0.7, 0.7])).toBe(true);
    expect(validSpacing(['0.143', ' 0.143 '])).toBe(true);
    expect(validSpacing([2.26, 2.26, 9])).toBe(true);
  });
  it('treats zero, negative, missing or non-numeric spacings as unknown', () => {
    expect(validSpacing([0, 0])).toBe(false);
    expect(validSpacing(['0.000', '0.000'])).toBe(false);
    expect(validSpacing([0.5, 0])).toBe(false);
    expect(validSpacing([-0.5, 0.5])).toBe(false);
    expect(validSpacing([0.5])).toBe(false);
    expect(validSpacing([])).toBe(false);
    expect(validSpacing(undefined)).toBe(false);
    expect(validSpacing([null, 0.5])).toBe(false);
    expect(validSpacing(['', ''])).toBe(false);
    expect(validSpacing(['abc', '1'])).toBe(false);
    expect(validSpacing([Number.POSITIVE_INFINITY, 1])).toBe(false);
  });
});

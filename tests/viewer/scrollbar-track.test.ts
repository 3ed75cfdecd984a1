import { describe, expect, it } from 'vitest';
import { trackGradient } from '../../viewer/src/features/viewer/scrollbar-track';

describe('scroll bar track', () => {
  it('draws one band per run of arrived or missing slices, in order from the top', () => {
    const g = trackGradient(Uint8Array.from([1, 1, 0, 0, 0, 1, 0, 0]));
    expect(g).toBe(
      'linear-gradient(to bottom, rgb(70, 130, 180) 0% 25%, rgb(60, 60, 60) 25% 62.5%, ' +
        'rgb(70, 130, 180) 62.5% 75%, rgb(60, 60, 60) 75% 100%)',
    );
  });

  it('is one band when every slice has arrived, or none has', () => {
    expect(trackGradient(new Uint8Array(300).fill(1))).toBe(
      'linear-gradient(to bottom, rgb(70, 130, 180) 0% 100%)',
    );
    expect(trackGradient(new Uint8Array(3))).toBe('linear-gradient(to bottom, rgb(60, 60, 60) 0% 100%)');
    expect(trackGradient(new Uint8Array(0))).toBe('linear-gradient(rgb(60, 60, 60), rgb(60, 60, 60))');
  });

  it('keeps a slice of a long stack distinct (no rounding away of one slice in 3000)', () => {
    const loaded = new Uint8Array(3000);
    loaded[1234] = 1;
    expect(trackGradient(loaded)).toContain('rgb(70, 130, 180) 41.133% 41.167%');
  });
});

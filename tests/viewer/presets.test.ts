/**
 * viewer/src/features/viewer/presets.ts: window width/centre ↔ the VOI range Cornerstone draws with.
 * The overlay reads the range back as W/L, so both ways must be the mapping Cornerstone itself uses for
 * the file's window (DICOM linear, PS3.3 C.11.2.1.2.1), or the overlay is one off the file.
 */
import { Enums, utilities } from '@cornerstonejs/core';
import { describe, expect, it } from 'vitest';
import { CT_PRESETS, toRange, toWindowLevel } from '../../viewer/src/features/viewer/presets';

describe('window presets', () => {
  it('maps a window to the range Cornerstone gives the same window from a file', () => {
    // W 80 L 40 (the head CT's own window): 0 to 79 HU, as the first view and Cornerstone draw it.
    expect(toRange(80, 40)).toEqual({ lower: 0, upper: 79 });
    expect(toRange(400, 40)).toEqual({ lower: -160, upper: 239 });
    expect(toRange(1500, -600)).toEqual({ lower: -1350, upper: 149 });
    for (const p of CT_PRESETS) {
      expect(toRange(p.window, p.level)).toEqual(utilities.windowLevel.toLowHighRange(p.window, p.level));
    }
  });

  it("reads back exactly the file's window and every preset (the overlay's W/L)", () => {
    // The ranges Cornerstone sets for the files' windows: the demo CT 40/400, a lung series -600/1500,
    // the head CT 40/80.
    const file = (w: number, c: number) => utilities.windowLevel.toLowHighRange(w, c);
    expect(toWindowLevel(file(400, 40))).toEqual({ window: 400, level: 40 });
    expect(toWindowLevel(file(1500, -600))).toEqual({ window: 1500, level: -600 });
    expect(toWindowLevel(file(80, 40))).toEqual({ window: 80, level: 40 });
    for (const p of CT_PRESETS) {
      expect(toWindowLevel(toRange(p.window, p.level))).toEqual({ window: p.window, level: p.level });
    }
  });

  it('uses c ± w/2 for LINEAR_EXACT, both ways', () => {
    const exact = Enums.VOILUTFunctionType.LINEAR_EXACT;
    expect(toRange(400, 40, exact)).toEqual({ lower: -160, upper: 240 });
    expect(toWindowLevel({ lower: -160, upper: 240 }, exact)).toEqual({ window: 400, level: 40 });
  });
});

/** viewer/src/features/viewer/orientation.ts: markers from PatientOrientation (PS3.3 C.7.6.1.1.1). */
import { describe, expect, it } from 'vitest';
import {
  markersFrom,
  parsePatientOrientation,
  patientOrientationLetters,
} from '../../viewer/src/features/viewer/orientation';

/** An image shown unrotated: canvas x along the rows (world +x), canvas y along the columns (world +y). */
const plain = (p: [number, number]) => [p[0], p[1], 0];

describe('PatientOrientation markers', () => {
  it('reads the two values, and nothing else', () => {
    expect(parsePatientOrientation(['L', 'F'])).toEqual({ row: 'L', column: 'F' });
    expect(parsePatientOrientation(['a', 'fr'])).toEqual({ row: 'A', column: 'FR' });
    expect(parsePatientOrientation([])).toBeNull();
    expect(parsePatientOrientation(['L'])).toBeNull();
    expect(parsePatientOrientation(['LE', 'CR'])).toBeNull(); // quadruped terms
  });

  it('names the edges: the row runs toward the right edge, the column toward the bottom', () => {
    const letters = (row: string, column: string) =>
      markersFrom(plain, 100, 100, patientOrientationLetters({ row, column }, [1, 0, 0], [0, 1, 0]));
    expect(letters('R', 'F')).toEqual({ left: 'L', right: 'R', top: 'H', bottom: 'F' });
    expect(letters('L', 'F')).toEqual({ left: 'R', right: 'L', top: 'H', bottom: 'F' });
    expect(letters('A', 'FR')).toEqual({ left: 'P', right: 'A', top: 'HL', bottom: 'FR' });
  });

  it('follows a flip and a rotation of the view', () => {
    const po = patientOrientationLetters({ row: 'L', column: 'F' }, [1, 0, 0], [0, 1, 0]);
    const flipped = (p: [number, number]) => [100 - p[0], p[1], 0];
    expect(markersFrom(flipped, 100, 100, po)).toEqual({ left: 'L', right: 'R', top: 'H', bottom: 'F' });
    // turned 90° clockwise: the image's top is on the right
    const turned = (p: [number, number]) => [p[1], 100 - p[0], 0];
    expect(markersFrom(turned, 100, 100, po)).toEqual({ left: 'F', right: 'H', top: 'R', bottom: 'L' });
  });
});

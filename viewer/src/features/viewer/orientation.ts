/**
 * Orientation markers: patient directions of the screen edges, from the viewport's current camera and
 * the image's ImageOrientationPatient, or else its PatientOrientation.
 */
type Vec3 = [number, number, number];

/** Letters for a direction in the patient coordinate system (+x left, +y posterior, +z head). */
export function directionLetters(v: Vec3): string {
  const parts: { letter: string; mag: number }[] = [
    { letter: v[0] > 0 ? 'L' : 'R', mag: Math.abs(v[0]) },
    { letter: v[1] > 0 ? 'P' : 'A', mag: Math.abs(v[1]) },
    { letter: v[2] > 0 ? 'H' : 'F', mag: Math.abs(v[2]) },
  ];
  const len = Math.hypot(v[0], v[1], v[2]) || 1;
  return parts
    .filter((p) => p.mag / len > 0.25)
    .sort((a, b) => b.mag - a.mag)
    .map((p) => p.letter)
    .join('');
}

export interface Markers {
  left: string;
  right: string;
  top: string;
  bottom: string;
}

/**
 * The markers of the screen's edges: `name` gives the letters of a direction in world coordinates
 * (directionLetters by default, for images placed by ImageOrientationPatient).
 */
export function markersFrom(
  canvasToWorld: (p: [number, number]) => Vec3 | number[],
  width: number,
  height: number,
  name: (v: Vec3) => string = directionLetters,
): Markers | null {
  const c = canvasToWorld([width / 2, height / 2]);
  const r = canvasToWorld([width / 2 + 10, height / 2]);
  const d = canvasToWorld([width / 2, height / 2 + 10]);
  const right: Vec3 = [r[0] - c[0], r[1] - c[1], r[2] - c[2]];
  const down: Vec3 = [d[0] - c[0], d[1] - c[1], d[2] - c[2]];
  if (![...right, ...down].every(Number.isFinite)) return null;
  const neg = (v: Vec3): Vec3 => [-v[0], -v[1], -v[2]];
  return {
    right: name(right),
    left: name(neg(right)),
    bottom: name(down),
    top: name(neg(down)),
  };
}

/** The patient directions of an image's rows and columns, from Patient Orientation (0020,0020). */
export interface PatientOrientation {
  /** where the row runs (left to right on the image), e.g. 'L' */
  row: string;
  /** where the column runs (top to bottom on the image), e.g. 'F' */
  column: string;
}

const OPPOSITE: Record<string, string> = { A: 'P', P: 'A', R: 'L', L: 'R', H: 'F', F: 'H' };

/**
 * Patient Orientation (PS3.3 C.7.6.1.1.1): two values, the direction of the rows and of the columns,
 * each one or more of A P R L H F. Anything else (absent, one value, quadruped terms) gives null.
 */
export function parsePatientOrientation(values: readonly unknown[]): PatientOrientation | null {
  if (values.length !== 2) return null;
  const [row, column] = values.map((v) =>
    String(v ?? '')
      .trim()
      .toUpperCase(),
  );
  const valid = (s: string) => /^[APRLHF]{1,3}$/.test(s);
  return valid(row) && valid(column) ? { row, column } : null;
}

/**
 * Letters for a direction in world coordinates, for an image placed without ImageOrientationPatient:
 * its rows run along rowCosines and its columns along columnCosines (Cornerstone's default placement),
 * and Patient Orientation names those two directions.
 */
export function patientOrientationLetters(
  po: PatientOrientation,
  rowCosines: Vec3 | number[],
  columnCosines: Vec3 | number[],
): (v: Vec3) => string {
  const flip = (s: string) => [...s].map((ch) => OPPOSITE[ch]).join('');
  return (v) => {
    const alongRow = v[0] * rowCosines[0] + v[1] * rowCosines[1] + v[2] * rowCosines[2];
    const alongColumn = v[0] * columnCosines[0] + v[1] * columnCosines[1] + v[2] * columnCosines[2];
    const len = Math.hypot(alongRow, alongColumn) || 1;
    return [
      { letters: alongRow > 0 ? po.row : flip(po.row), mag: Math.abs(alongRow) },
      { letters: alongColumn > 0 ? po.column : flip(po.column), mag: Math.abs(alongColumn) },
    ]
      .filter((p) => p.mag / len > 0.25)
      .sort((a, b) => b.mag - a.mag)
      .map((p) => p.letters)
      .join('');
  };
}

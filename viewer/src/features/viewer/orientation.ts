/** Orientation markers: patient directions of the screen edges, from the viewport's current camera. */
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

export function markersFrom(
  canvasToWorld: (p: [number, number]) => Vec3 | number[],
  width: number,
  height: number,
): Markers | null {
  const c = canvasToWorld([width / 2, height / 2]);
  const r = canvasToWorld([width / 2 + 10, height / 2]);
  const d = canvasToWorld([width / 2, height / 2 + 10]);
  const right: Vec3 = [r[0] - c[0], r[1] - c[1], r[2] - c[2]];
  const down: Vec3 = [d[0] - c[0], d[1] - c[1], d[2] - c[2]];
  if (![...right, ...down].every(Number.isFinite)) return null;
  const neg = (v: Vec3): Vec3 => [-v[0], -v[1], -v[2]];
  return {
    right: directionLetters(right),
    left: directionLetters(neg(right)),
    bottom: directionLetters(down),
    top: directionLetters(neg(down)),
  };
}

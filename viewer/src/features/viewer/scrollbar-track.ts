/** The scroll bar's track: which slices of a stack have arrived, drawn as a CSS gradient. */

const ARRIVED = 'rgb(70, 130, 180)';
const MISSING = 'rgb(60, 60, 60)';

/**
 * A top-to-bottom linear-gradient with one band per run of arrived (1) or missing (0) slices. A gradient
 * rather than a canvas: the browser redraws it without a canvas backing store of its own.
 */
export function trackGradient(loaded: Uint8Array): string {
  const n = loaded.length;
  if (n === 0) return `linear-gradient(${MISSING}, ${MISSING})`;
  const bands: string[] = [];
  let start = 0;
  for (let i = 1; i <= n; i++) {
    if (i < n && loaded[i] === loaded[start]) continue;
    const color = loaded[start] === 1 ? ARRIVED : MISSING;
    bands.push(`${color} ${percent(start / n)} ${percent(i / n)}`);
    start = i;
  }
  return `linear-gradient(to bottom, ${bands.join(', ')})`;
}

function percent(f: number): string {
  return `${Number((f * 100).toFixed(3))}%`;
}

/** PS3.5 9.1: a UID is 1..64 chars of digits and dots, components without leading zeros (except "0"). */
const UID_RE = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

export function isValidUID(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= 64 && UID_RE.test(value);
}

/**
 * Lenient check used at ingest: real-world files carry UIDs with leading zeros in a component,
 * which dcmtk and other archives accept. We refuse only what could be dangerous or meaningless:
 * empty, over 64 chars, or any character other than digits and dots (so no "../x", no spaces).
 */
export function isAcceptableUID(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= 64 &&
    /^[0-9.]+$/.test(value) &&
    !value.startsWith('.') &&
    !value.endsWith('.') &&
    !value.includes('..')
  );
}

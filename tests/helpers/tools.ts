/**
 * The Debian tools the tests drive (dcmtk, GDCM) are installed by `npm test`
 * (scripts/install-test-deps.sh). Only absent samples skip a suite: with the samples present, a missing
 * tool fails it with what to install, rather than letting it skip unnoticed.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { samplesPresent } from '../samples';

/** Whether every command is installed (in /usr/bin or /usr/local/bin). */
export function toolsInstalled(tools: readonly string[]): boolean {
  return tools.every((t) => ['/usr/bin', '/usr/local/bin'].some((d) => existsSync(path.join(d, t))));
}

/** Throws, when the samples are present, if one of the tools is missing; else whether they are all there. */
export function requireTools(tools: readonly string[], packages: string): boolean {
  const installed = toolsInstalled(tools);
  if (samplesPresent && !installed)
    throw new Error(
      `${tools.join(', ')}: not all installed (Debian ${packages}): run scripts/install-test-deps.sh (npm test does)`,
    );
  return installed;
}

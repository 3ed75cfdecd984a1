/**
 * A hospital's deployment installs with `npm ci` (exactly the locked versions), which refuses a lock file
 * that is out of step with package.json, including one that lacks the optional packages of another
 * platform (npm may leave those out of a lock file written on Linux; `npm ci` on Linux then fails).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers/server';

interface Locked {
  version?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

describe('package-lock.json', async () => {
  const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as Locked;
  const lock = JSON.parse(await readFile(path.join(REPO, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, Locked>;
  };

  it('has the dependencies of package.json with the same ranges', () => {
    const root = lock.packages[''];
    for (const field of ['dependencies', 'devDependencies', 'optionalDependencies'] as const) {
      expect(root[field] ?? {}, field).toEqual(pkg[field] ?? {});
    }
  });

  it('locks every optional dependency of every locked package, for every platform', () => {
    const missing: string[] = [];
    for (const [where, entry] of Object.entries(lock.packages)) {
      for (const name of Object.keys(entry.optionalDependencies ?? {})) {
        // Resolution as node does it: the package's own node_modules, then each folder above it.
        let dir = where;
        let found = false;
        for (;;) {
          if (lock.packages[`${dir ? `${dir}/` : ''}node_modules/${name}`]) {
            found = true;
            break;
          }
          if (!dir) break;
          const cut = dir.lastIndexOf('/node_modules/');
          dir = cut < 0 ? '' : dir.slice(0, cut);
        }
        if (!found) missing.push(`${name} (of ${where || 'the project'})`);
      }
    }
    expect(missing, 'run `npm install --package-lock-only` to add them').toEqual([]);
  });
});

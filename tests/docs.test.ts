/**
 * The README is what a new user follows: every configuration variable the server reads is in its
 * table with the real default, and every `npm run` command the documentation mentions exists.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VARIABLES } from '../server/config';
import { listFiles, REPO } from './helpers/server';

describe('documentation', () => {
  it('lists every configuration variable with its default in the README table', async () => {
    const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
    const rows = new Map<string, string>();
    for (const m of readme.matchAll(/^\| `([A-Z0-9_]+)` +\| ([^|]*?) +\|/gm)) rows.set(m[1], m[2]);
    for (const [name, [def]] of Object.entries(VARIABLES)) {
      expect(rows.has(name), `${name} is missing from the README configuration table`).toBe(true);
      const shown = rows.get(name)!;
      expect(shown === '(empty)' ? '' : shown.replace(/^`|`$/g, ''), `README default of ${name}`).toBe(def);
    }
  });

  it('mentions only npm scripts that exist', async () => {
    const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    const docs = [
      path.join(REPO, 'README.md'),
      ...(await listFiles(path.join(REPO, 'docs'))).filter((f) => f.endsWith('.md')),
    ];
    let mentions = 0;
    for (const file of docs) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/npm run ([a-z][a-z0-9:-]*)/g)) {
        mentions++;
        expect(pkg.scripts[m[1]], `${path.relative(REPO, file)}: npm run ${m[1]}`).toBeDefined();
      }
    }
    expect(mentions).toBeGreaterThan(5);
  });
});

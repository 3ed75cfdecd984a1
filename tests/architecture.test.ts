/**
 * The direction of imports (DEVELOPERS.md, "Shape of the code"): dicomweb/ is pure protocol and imports
 * nothing of ours and no I/O; storage/ may use dicomweb/; server/ composes both; viewer/ talks to the
 * server only over HTTP, so it imports none of them (pure dicomweb/ helpers excepted).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { listFiles, REPO } from './helpers/server';

const IMPORT_RE = /^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm;

async function importsOf(folder: string): Promise<{ file: string; spec: string }[]> {
  const out: { file: string; spec: string }[] = [];
  const files = (await listFiles(path.join(REPO, folder))).filter(
    (f) => /\.(ts|tsx)$/.test(f) && !/\.test\.tsx?$/.test(f) && !f.includes(`${path.sep}dist${path.sep}`),
  );
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    for (const m of text.matchAll(IMPORT_RE))
      out.push({ file: path.relative(REPO, file), spec: m[1] ?? m[2] });
  }
  return out;
}

function target(file: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  return path.relative(REPO, path.resolve(REPO, path.dirname(file), spec)).split(path.sep)[0];
}

describe('architecture', () => {
  it('dicomweb/ imports nothing of ours and no I/O modules', async () => {
    const all = await importsOf('dicomweb');
    expect(all.length).toBeGreaterThan(10);
    const bad = all.filter(
      ({ file, spec }) =>
        /^(node:)?(fs|net|http|https|child_process|fs\/promises)$/.test(spec) ||
        /^(express|better-sqlite3|pg|@aws-sdk)/.test(spec) ||
        (target(file, spec) !== undefined && target(file, spec) !== 'dicomweb'),
    );
    expect(bad).toEqual([]);
  });

  it('storage/ imports only storage/ and dicomweb/', async () => {
    const all = await importsOf('storage');
    expect(all.some((i) => i.spec.includes('dicomweb'))).toBe(true);
    const bad = all.filter(({ file, spec }) => {
      const t = target(file, spec);
      return t !== undefined && t !== 'storage' && t !== 'dicomweb';
    });
    expect(bad).toEqual([]);
  });

  it('viewer/ does not import the server or storage', async () => {
    const bad = (await importsOf('viewer')).filter(({ file, spec }) => {
      const t = target(file, spec);
      return t === 'server' || t === 'storage' || t === 'scripts';
    });
    expect(bad).toEqual([]);
  });
});

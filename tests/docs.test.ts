/**
 * The README is what a new user follows: every configuration variable the server reads is in its
 * table with the real default, every `npm run` command the documentation mentions exists, and its
 * STOW-RS example stores a folder as modalities export them.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VARIABLES } from '../server/config';
import { listFiles, REPO, SAMPLES, samplesPresent, startServer } from './helpers/server';

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

  it.skipIf(!samplesPresent)(
    "STOW-RS example: stores every file of a folder whose files have no extension (a modality export's I10, I100)",
    async () => {
      const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
      const section = readme.slice(readme.indexOf('### STOW-RS: store'));
      const example = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
      expect(example).toMatch(/curl .*\$B\/studies/);
      const server = await startServer();
      const dir = await mkdtemp(path.join(tmpdir(), 'pacs-readme-stow-'));
      try {
        const series = path.join(SAMPLES, 'ct-series/philips-ingenuity-phantom-S2010');
        await mkdir(path.join(dir, 'DICOM'));
        for (const name of ['I10', 'I100', 'I110'])
          await copyFile(path.join(series, name), path.join(dir, 'DICOM', name));
        await writeFile(path.join(dir, 'README.TXT'), 'Patient CD\n');
        const stdout = await new Promise<string>((resolve, reject) =>
          execFile(
            'bash',
            ['-c', example!],
            { cwd: dir, env: { ...process.env, B: server.dicomweb }, maxBuffer: 16 * 1024 * 1024 },
            (err, out, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(out)),
          ),
        );
        const response = JSON.parse(stdout) as Record<
          string,
          { Value?: Record<string, { Value?: unknown[] }>[] }
        >;
        expect(response['00081199']?.Value).toHaveLength(3); // the three images
        const failed = response['00081198']?.Value ?? [];
        expect(failed).toHaveLength(1); // the text file, refused
        expect(failed[0]['0040A160']?.Value?.[0]).toMatch(/only 11 bytes/);
      } finally {
        await server.close();
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});

/**
 * npm run import -- <folder | DICOMDIR> [--url http://127.0.0.1:8080] [--root /dicomweb]
 *                   [--batch 10] [--concurrency 4] [--quiet] [--json]
 *
 * Sends every DICOM Part 10 file under a folder (a patient CD, a modality export) to a running
 * server over STOW-RS, streaming each file from disk. Given a DICOMDIR, imports the folder that
 * holds it. A DICOM data set stored without its Part 10 header is sent with one added in front of its
 * unchanged bytes (scripts/lib/sniff.ts); other files are skipped and listed as non-DICOM; the
 * DICOMDIR itself (Media Storage Directory Storage) is skipped too. Exit code: 0 when nothing failed,
 * 1 when some file failed, 2 on a usage error, when the server cannot be reached or when it refuses the
 * token (PACS_TOKEN).
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { commandLine, isMain, parseOrExit } from './lib/cli';
import { Progress, formatBytes } from './lib/progress';
import { MEDIA_STORAGE_DIRECTORY_STORAGE, type SniffedFile, sniffDicomFile } from './lib/sniff';
import { mapPool } from './lib/stats';
import { reasonText, stow, type StowResult } from './lib/stow';

export interface ImportOptions {
  /** Folder, or a DICOMDIR file (its folder is imported). */
  input: string;
  /** Server base URL (default env PACS_URL, then http://127.0.0.1:8080). */
  url?: string;
  /** DICOMweb root path on that server (default /dicomweb). */
  root?: string;
  batch?: number;
  concurrency?: number;
  /** Show progress on stderr (default true). */
  progress?: boolean;
  /** CLI only: print the summary as JSON on stdout. */
  json?: boolean;
}

export interface ImportFileOutcome {
  path: string;
  sopInstanceUID?: string;
}

export interface ImportSummary {
  folder: string;
  scanned: number;
  stored: ImportFileOutcome[];
  /**
   * Stored, but the server returned a WarningReason (e.g. 0xB000 coercion of data elements). An
   * instance this archive already held with the same bytes is not among them: it answers one sent
   * again with a plain success (README, STOW-RS), so such an instance is in `stored`.
   */
  warnings: (ImportFileOutcome & { warningReason?: number; reason: string })[];
  failed: (ImportFileOutcome & { failureReason?: number; reason: string })[];
  skippedNonDicom: string[];
  skippedDicomdir: string[];
  /**
   * DICOM data sets stored on the disc without their Part 10 header (or its preamble), sent with one
   * added in front of their unchanged bytes; each is also in stored, warnings or failed.
   */
  headerAdded: { path: string; missing: 'preamble' | 'file meta' }[];
  bytesSent: number;
  seconds: number;
}

interface Candidate {
  path: string;
  size: number;
  /** The data set's SOP Instance UID (0008,0018), else the header's (0002,0003). */
  sopInstanceUID?: string;
  /**
   * The UIDs the archive may name this file by in its response, best first: the data set's own, which
   * the archive stores it under, then the header's, which may differ from it.
   */
  uids: string[];
  /** A data set without a Part 10 header: sent after this prefix, from `start`. */
  prefix?: Uint8Array;
  start?: number;
}

async function walk(dir: string, out: { path: string; size: number }[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile()) out.push({ path: p, size: (await stat(p)).size });
  }
}

export class ServerUnreachableError extends Error {}

/** The archive refused the importer itself (no token, a wrong or revoked one, a role that may not store). */
export class AccessRefusedError extends Error {}

function isUnreachable(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'EAI_AGAIN';
}

export function dicomwebRootOf(url: string, root = '/dicomweb'): string {
  const base = url.replace(/\/+$/, '');
  const r = `/${root.replace(/^\/+|\/+$/g, '')}`;
  return base.endsWith(r) ? base : `${base}${r}`;
}

type ResponseItem =
  | { kind: 'referenced'; referenced: StowResult['referenced'][number] }
  | { kind: 'failed'; failed: StowResult['failed'][number] };

/**
 * Pairs the files of one STOW-RS request with the items of its response by SOP Instance UID: a file is
 * named by the UID of its data set (which the archive answers with) or, failing that, of its header.
 * A file gets no item (undefined) when no item names it, or when the UID is ambiguous: shared by two
 * files of the request, or named by two items. Items are never handed out by position: in a request of
 * several files, a failure reported without a UID could be any of them.
 */
export function matchResponse<C extends { uids: readonly string[] }>(
  batch: readonly C[],
  res: Pick<StowResult, 'referenced' | 'failed'>,
): { candidate: C; item?: ResponseItem }[] {
  const items: ResponseItem[] = [
    ...res.referenced.map((referenced) => ({ kind: 'referenced' as const, referenced })),
    ...res.failed.map((failed) => ({ kind: 'failed' as const, failed })),
  ];
  const byUid = new Map<string, ResponseItem[]>();
  for (const item of items) {
    const uid = item.kind === 'referenced' ? item.referenced.sopInstanceUID : item.failed.sopInstanceUID;
    if (uid) byUid.set(uid, [...(byUid.get(uid) ?? []), item]);
  }
  const filesNamed = new Map<string, number>();
  for (const c of batch)
    for (const uid of new Set(c.uids)) filesNamed.set(uid, (filesNamed.get(uid) ?? 0) + 1);
  const single = batch.length === 1 && items.length === 1;
  return batch.map((candidate) => {
    // A request of one file: its response's only item is that file's, whatever UID it names.
    if (single) return { candidate, item: items[0] };
    const uid = candidate.uids.find((u) => byUid.has(u));
    if (uid === undefined) return { candidate };
    const named = byUid.get(uid) ?? [];
    if (named.length !== 1 || (filesNamed.get(uid) ?? 0) !== 1) return { candidate };
    return { candidate, item: named[0] };
  });
}

/** Imports a folder; never throws for per-file problems (they are in the summary). */
export async function importFolder(opts: ImportOptions): Promise<ImportSummary> {
  const started = performance.now();
  const input = resolve(opts.input);
  const st = await stat(input);
  const folder = st.isDirectory() ? input : dirname(input);
  const dicomwebRoot = dicomwebRootOf(
    opts.url ?? process.env.PACS_URL ?? 'http://127.0.0.1:8080',
    opts.root ?? '/dicomweb',
  );
  const batchSize = Math.max(1, opts.batch ?? 10);
  const concurrency = Math.max(1, opts.concurrency ?? 4);

  const files: { path: string; size: number }[] = [];
  await walk(folder, files);

  const summary: ImportSummary = {
    folder,
    scanned: files.length,
    stored: [],
    warnings: [],
    failed: [],
    skippedNonDicom: [],
    skippedDicomdir: [],
    headerAdded: [],
    bytesSent: 0,
    seconds: 0,
  };

  const candidates: Candidate[] = [];
  await mapPool(files, 16, async (f) => {
    let sniffed: SniffedFile;
    try {
      sniffed = await sniffDicomFile(f.path);
    } catch (err) {
      summary.failed.push({ path: f.path, reason: `cannot read: ${(err as Error).message}` });
      return;
    }
    if (sniffed.kind === 'not-dicom') summary.skippedNonDicom.push(f.path);
    else if (sniffed.kind === 'unstorable') summary.failed.push({ path: f.path, reason: sniffed.reason });
    else if (sniffed.meta.mediaStorageSOPClassUID === MEDIA_STORAGE_DIRECTORY_STORAGE)
      summary.skippedDicomdir.push(f.path);
    else {
      const { sopInstanceUID, mediaStorageSOPInstanceUID } = sniffed.meta;
      const uids = [...new Set([sopInstanceUID, mediaStorageSOPInstanceUID])].filter((u) => u !== undefined);
      if (sniffed.kind === 'part10')
        candidates.push({ path: f.path, size: f.size, sopInstanceUID: uids[0], uids });
      else {
        summary.headerAdded.push({ path: f.path, missing: sniffed.missing });
        candidates.push({
          path: f.path,
          size: f.size - sniffed.skip,
          sopInstanceUID: uids[0],
          uids,
          prefix: sniffed.prefix,
          start: sniffed.skip,
        });
      }
    }
  });
  candidates.sort((a, b) => a.path.localeCompare(b.path));
  summary.skippedNonDicom.sort();
  summary.skippedDicomdir.sort();
  summary.headerAdded.sort((a, b) => a.path.localeCompare(b.path));

  const batches: Candidate[][] = [];
  for (let i = 0; i < candidates.length; i += batchSize) batches.push(candidates.slice(i, i + batchSize));

  const totalBytes = candidates.reduce((n, c) => n + c.size, 0);
  const progress = new Progress('import', process.stderr, opts.progress ?? true);
  // Files (and their bytes) with an outcome: a file sent again on its own is counted once.
  let done = 0;
  let doneBytes = 0;
  const finished = (files: Candidate[]) => {
    done += files.length;
    doneBytes += files.reduce((n, c) => n + c.size, 0);
  };
  const tick = () =>
    progress.update({
      done,
      total: candidates.length,
      bytes: doneBytes,
      totalBytes,
      detail: `${summary.stored.length + summary.warnings.length} stored, ${summary.failed.length} failed`,
    });

  let unreachable: unknown;
  let refused: StowResult | undefined;

  const send = async (batch: Candidate[]): Promise<StowResult | Error> => {
    try {
      const res = await stow(
        batch.map((c) => ({
          kind: 'file' as const,
          path: c.path,
          size: c.size,
          prefix: c.prefix,
          start: c.start,
        })),
        { dicomwebRoot },
      );
      // Every other request would be refused the same way: stop at the first.
      if ((res.status === 401 || res.status === 403) && res.text !== undefined) refused ??= res;
      return res;
    } catch (err) {
      if (isUnreachable(err)) unreachable = err;
      return err as Error;
    }
  };

  /** Records the outcome of a request for each file of `batch`; returns the files its response does not name. */
  const record = (batch: Candidate[], res: StowResult | Error): Candidate[] => {
    if (res instanceof Error) {
      for (const c of batch) summary.failed.push({ path: c.path, reason: `request failed: ${res.message}` });
      return [];
    }
    const json = res.text === undefined;
    if (!json) {
      const reason = `HTTP ${res.status}: ${res.text?.replace(/\s+/g, ' ').trim().slice(0, 300) || '(empty body)'}`;
      for (const c of batch) summary.failed.push({ path: c.path, reason });
      return [];
    }
    summary.bytesSent += res.bytesSent;
    const unmatched: Candidate[] = [];
    for (const { candidate: c, item } of matchResponse(batch, res)) {
      const uid = c.sopInstanceUID;
      if (item?.kind === 'failed') {
        const f = item.failed;
        summary.failed.push({
          path: c.path,
          sopInstanceUID: f.sopInstanceUID ?? uid,
          failureReason: f.failureReason,
          reason: reasonText(f.failureReason) + (f.comment ? ` — ${f.comment}` : ''),
        });
      } else if (item?.kind === 'referenced') {
        const r = item.referenced;
        const stored = r.sopInstanceUID ?? uid;
        const warning = r.warningReason ?? (batch.length === 1 ? res.warningReason : undefined);
        if (warning !== undefined)
          summary.warnings.push({
            path: c.path,
            sopInstanceUID: stored,
            warningReason: warning,
            reason: reasonText(warning),
          });
        else summary.stored.push({ path: c.path, sopInstanceUID: stored });
      } else if (batch.length > 1) {
        unmatched.push(c);
      } else {
        summary.failed.push({
          path: c.path,
          sopInstanceUID: uid,
          reason: `HTTP ${res.status}: not listed in the STOW response (refused without a reason)`,
        });
      }
    }
    return unmatched;
  };

  /** Sends the files one request each, so that each answer is that file's own. */
  const sendOneByOne = async (files: Candidate[]) => {
    for (const c of files) {
      const single = await send([c]);
      if (unreachable || refused) return;
      record([c], single);
      finished([c]);
      tick();
    }
  };

  await mapPool(batches, concurrency, async (batch) => {
    if (unreachable || refused) return;
    const res = await send(batch);
    if (unreachable || refused) return;
    const rejectedWhole = res instanceof Error || res.text !== undefined;
    if (rejectedWhole && batch.length > 1) {
      // The whole request was refused (e.g. 413 for one oversize file): retry file by file so
      // that each failure is attributed to the right file.
      await sendOneByOne(batch);
      return;
    }
    const unmatched = record(batch, res);
    finished(batch.filter((c) => !unmatched.includes(c)));
    tick();
    // Files the response does not name unambiguously (a failure reported without a UID, two files
    // with the same UID): sent again one by one, so that each gets its own outcome. Sending again what
    // was stored is a success that changes nothing; what failed left no trace.
    await sendOneByOne(unmatched);
  });
  progress.finish({ done, total: candidates.length, bytes: doneBytes, totalBytes });
  if (unreachable) {
    throw new ServerUnreachableError(`cannot reach ${dicomwebRoot}: ${(unreachable as Error).message}`);
  }
  if (refused) {
    const token = process.env.PACS_TOKEN
      ? 'PACS_TOKEN was refused: is it a token of a modality or administrator, and not revoked?'
      : 'PACS_TOKEN is not set.';
    throw new AccessRefusedError(
      `the archive refused the import (HTTP ${refused.status}: ${refused.text}). ${token} ` +
        'An administrator makes one with: npm run user -- token create <user> --label import',
    );
  }
  summary.failed.sort((a, b) => a.path.localeCompare(b.path));
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

export function formatSummary(s: ImportSummary, maxList = 50): string {
  const rel = (p: string) => relative(s.folder, p) || basename(p);
  const lines: string[] = [];
  const list = (items: string[]) => {
    for (const it of items.slice(0, maxList)) lines.push(`    ${it}`);
    if (items.length > maxList) lines.push(`    … and ${items.length - maxList} more`);
  };
  lines.push(
    `Imported ${s.folder}: ${s.scanned} files in ${s.seconds.toFixed(1)} s (${formatBytes(s.bytesSent)} sent)`,
  );
  lines.push(`  stored:                 ${s.stored.length} (including any already held with the same bytes)`);
  lines.push(`  stored with a warning:  ${s.warnings.length}`);
  const byReason = new Map<string, number>();
  for (const w of s.warnings) byReason.set(w.reason, (byReason.get(w.reason) ?? 0) + 1);
  for (const [reason, n] of byReason) lines.push(`    ${n} × ${reason}`);
  lines.push(`  failed:                 ${s.failed.length}`);
  list(s.failed.map((f) => `${rel(f.path)}: ${f.reason}`));
  lines.push(`  skipped, not DICOM:     ${s.skippedNonDicom.length}`);
  list(s.skippedNonDicom.map(rel));
  if (s.skippedDicomdir.length) {
    lines.push(`  skipped, DICOMDIR:      ${s.skippedDicomdir.length}`);
    list(s.skippedDicomdir.map(rel));
  }
  if (s.headerAdded.length) {
    lines.push(
      `  sent with a Part 10 header added (their own bytes unchanged after it): ${s.headerAdded.length}`,
    );
    list(
      s.headerAdded.map(
        (h) => `${rel(h.path)}: had no ${h.missing === 'preamble' ? 'preamble' : 'Part 10 header'}`,
      ),
    );
  }
  return lines.join('\n');
}

const USAGE = `usage: npm run import -- <folder | DICOMDIR> [--url http://127.0.0.1:8080] [--root /dicomweb] [--batch 10] [--concurrency 4] [--quiet] [--json]
  --url          server base URL (default: $PACS_URL, else http://127.0.0.1:8080)
  --root         DICOMweb root path on the server (default /dicomweb; /dicom-web for Orthanc)
  --batch        instances per STOW-RS request (default 10)
  --concurrency  requests in flight (default 4)
  --quiet        no progress output
  --json         print the summary as JSON (stored, warnings, failed with reasons, skipped files)`;

export function parseImportArgs(argv: string[]): ImportOptions | string {
  const opts: Partial<ImportOptions> = {};
  const positional: string[] = [];
  for (const { arg: a, flag, value, int } of commandLine(argv)) {
    switch (flag) {
      case '--url':
        opts.url = value();
        break;
      case '--root':
        opts.root = value();
        break;
      case '--batch':
        opts.batch = int();
        break;
      case '--concurrency':
        opts.concurrency = int();
        break;
      case '--quiet':
        opts.progress = false;
        break;
      case '--json':
        opts.json = true;
        break;
      case '-h':
      case '--help':
        return USAGE;
      default:
        if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
        positional.push(a);
    }
  }
  if (positional.length !== 1) throw new Error('expected exactly one folder or DICOMDIR');
  return { ...opts, input: positional[0] };
}

async function main(): Promise<number> {
  const opts = parseOrExit(parseImportArgs, USAGE);
  if (typeof opts === 'number') return opts;
  try {
    await stat(opts.input);
  } catch {
    console.error(`no such file or folder: ${opts.input}`);
    return 2;
  }
  try {
    const summary = await importFolder(opts);
    console.log(opts.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
    return summary.failed.length > 0 ? 1 : 0;
  } catch (err) {
    console.error(`import failed: ${(err as Error).message}`);
    return 2;
  }
}

if (isMain(import.meta.url)) {
  main().then((code) => {
    process.exitCode = code;
  });
}

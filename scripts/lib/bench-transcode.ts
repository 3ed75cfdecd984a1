/**
 * Transcoding in `npm run bench`: WADO-RS frame requests over HTTP against the running archive (our
 * server as a child process, default configuration), for the transfer syntax pairs the viewer uses:
 * - stored Explicit VR Little Endian (the real CT series of the samples, 54 × 512×512, 12 bits) encoded
 *   into JPEG-LS lossless, HTJ2K lossless, JPEG 2000 lossless and RLE on request; an 8-bit image (the
 *   samples' 768×1024 radiograph) into JPEG baseline, which takes 8-bit samples only;
 * - stored compressed (the same CT series, made by the archive's own whole-instance transcoding, and
 *   the radiograph in JPEG baseline) decoded to Explicit VR Little Endian;
 * - with PACS_INGEST_HTJ2K=true: how fast the HTJ2K copies are made after STOW, and HTJ2K frames served
 *   from them.
 * Each stored syntax gets its own server (the compressed copies keep their SOP Instance UIDs). Figures:
 * frames per second and megabytes of decoded pixels per second (the codec's work, whatever the
 * direction), and the response bytes of the whole series in each syntax (the bytes on the wire).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import dicomParser from 'dicom-parser';
import { syntheticSeries } from '../../server/synthetic';
import { httpGet } from './http';
import { mapPool, round } from './stats';
import { stow } from './stow';
import { startOurServer, type Target } from './targets';

const EVRLE = '1.2.840.10008.1.2.1';
const JLS = '1.2.840.10008.1.2.4.80';
const HTJ2K = '1.2.840.10008.1.2.4.201';
const J2K = '1.2.840.10008.1.2.4.90';
const RLE = '1.2.840.10008.1.2.5';
const BASELINE = '1.2.840.10008.1.2.4.50';
const EXTENDED = '1.2.840.10008.1.2.4.51';
const NAME: Record<string, string> = {
  [EVRLE]: 'Explicit VR LE',
  [JLS]: 'JPEG-LS lossless',
  [HTJ2K]: 'HTJ2K lossless',
  [J2K]: 'JPEG 2000 lossless',
  [RLE]: 'RLE lossless',
  [BASELINE]: 'JPEG baseline',
  [EXTENDED]: 'JPEG Extended',
};
const MB = 1e6;

export interface TranscodePairFigures {
  /** e.g. "Explicit VR LE → HTJ2K lossless" */
  pair: string;
  from: string;
  to: string;
  data: string;
  /** Frames requested per run, and requests in flight. */
  frames: number;
  inFlight: number;
  framesPerSec: number;
  /** Decoded pixel megabytes (10^6) per second. */
  pixelMBps: number;
  /** Response bytes of one run (multipart framing included). */
  responseBytes: number;
  errors: number;
  /** Served from the HTJ2K copy made at ingest, not transcoded. */
  fromCopy?: boolean;
}

export interface TranscodeFigures {
  data: string;
  transcodeWorkers: string;
  pairs: TranscodePairFigures[];
  /** Response bytes of the CT series per syntax. */
  wire: { syntax: string; name: string; bytes: number; ratio: number; status: number }[];
  /** PACS_INGEST_HTJ2K=true: STOW of the series, and the copies made after it. */
  ingestCopies?: { instances: number; stowSeconds: number; copiesSeconds: number; copiesPerSec: number };
  notes: string[];
}

interface Inst {
  study: string;
  series: string;
  sop: string;
  bytes: Uint8Array;
  pixelBytes: number;
}

function describe(bytes: Uint8Array): Inst {
  const ds = dicomParser.parseDicom(bytes);
  const rows = ds.uint16('x00280010') ?? 0;
  const cols = ds.uint16('x00280011') ?? 0;
  const spp = ds.uint16('x00280002') ?? 1;
  const bits = ds.uint16('x00280100') ?? 16;
  const frames = Number(ds.string('x00280008') ?? 1);
  return {
    study: ds.string('x0020000d') as string,
    series: ds.string('x0020000e') as string,
    sop: ds.string('x00080018') as string,
    bytes,
    pixelBytes: rows * cols * spp * Math.ceil(bits / 8) * frames,
  };
}

const instanceUrl = (t: Target, i: Inst) =>
  `${t.dicomwebRoot}/studies/${i.study}/series/${i.series}/instances/${i.sop}`;
const frameAccept = (ts?: string) =>
  `multipart/related; type="application/octet-stream"${ts ? `; transfer-syntax=${ts}` : ''}`;

async function stowAll(t: Target, list: Inst[]): Promise<void> {
  for (let i = 0; i < list.length; i += 10) {
    const r = await stow(
      list.slice(i, i + 10).map((x) => ({ kind: 'bytes' as const, bytes: x.bytes })),
      { dicomwebRoot: t.dicomwebRoot },
    );
    if (r.status !== 200)
      throw new Error(`STOW to the transcoding bench server: HTTP ${r.status} ${r.text ?? ''}`);
  }
}

/** Whole instances in another syntax, by the archive's own transcoding (kept in memory: a few MB). */
async function fetchAs(t: Target, list: Inst[], ts: string): Promise<Inst[]> {
  return mapPool(list, 2, async (i) => {
    const r = await httpGet(instanceUrl(t, i), {
      headers: { Accept: `application/dicom; transfer-syntax=${ts}` },
      collect: true,
    });
    if (r.status !== 200) throw new Error(`instance in ${ts}: HTTP ${r.status}`);
    return describe(new Uint8Array(r.body!));
  });
}

/** Frame 1 of each instance (`repeat` times over), `inFlight` at once, runs times: the best run. */
async function measurePair(
  t: Target,
  list: Inst[],
  from: string,
  to: string | undefined,
  data: string,
  opts: { repeat?: number; inFlight?: number; runs?: number; accept?: string; fromCopy?: boolean } = {},
): Promise<TranscodePairFigures> {
  const inFlight = opts.inFlight ?? 4;
  const urls: { url: string; pixels: number }[] = [];
  for (let k = 0; k < (opts.repeat ?? 1); k++)
    for (const i of list) urls.push({ url: `${instanceUrl(t, i)}/frames/1`, pixels: i.pixelBytes });
  const accept = opts.accept ?? frameAccept(to);
  let best = { seconds: Number.POSITIVE_INFINITY, bytes: 0, errors: 0 };
  for (let run = 0; run < (opts.runs ?? 2); run++) {
    let bytes = 0;
    let errors = 0;
    const t0 = performance.now();
    await mapPool(urls, inFlight, async (u) => {
      const r = await httpGet(u.url, { headers: { Accept: accept } });
      bytes += r.bytes;
      if (r.status !== 200) errors++;
    });
    const seconds = (performance.now() - t0) / 1000;
    if (seconds < best.seconds) best = { seconds, bytes, errors };
  }
  const pixels = urls.reduce((n, u) => n + u.pixels, 0);
  const target = to ?? EVRLE;
  return {
    pair: `${NAME[from] ?? from} → ${NAME[target] ?? target}${opts.fromCopy ? ' (copy)' : ''}`,
    from,
    to: target,
    data,
    frames: urls.length,
    inFlight,
    framesPerSec: round(urls.length / best.seconds, 1),
    pixelMBps: round(pixels / MB / best.seconds, 1),
    responseBytes: best.bytes,
    errors: best.errors,
    fromCopy: opts.fromCopy,
  };
}

/** The CT series of the samples, or a synthetic one (its pixels compress unlike a real CT's: said in notes). */
function ctSeries(samplesDir: string, notes: string[]): { list: Inst[]; data: string } {
  const dir = join(samplesDir, 'ct-series', 'philips-ingenuity-phantom-S2010');
  try {
    const files = readdirSync(dir).sort();
    return {
      list: files.map((f) => describe(new Uint8Array(readFileSync(join(dir, f))))),
      data: `real CT series (${files.length} × 512×512, 12 bits stored, ${dir})`,
    };
  } catch {
    notes.push(
      `samples not found at ${samplesDir}: synthetic CT used, its compression ratios are not a real CT's`,
    );
    const list = [
      ...syntheticSeries({
        patientName: 'Bench^Transcode',
        patientId: 'TRANSCODE',
        instances: 54,
        seed: 5150,
      }),
    ];
    return { list: list.map(describe), data: 'synthetic CT series (54 × 512×512)' };
  }
}

async function countCopies(dataDir: string): Promise<number> {
  let n = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (e.name.endsWith('.htj2k')) n++;
    }
  };
  await walk(join(dataDir, 'blobs'));
  return n;
}

async function withServer<T>(env: Record<string, string>, fn: (t: Target) => Promise<T>): Promise<T> {
  const t = await startOurServer({ env: { LOG_LEVEL: 'warn', ...env } });
  try {
    return await fn(t);
  } finally {
    await t.close();
  }
}

export async function benchTranscode(opts: {
  samplesDir: string;
  log: (line: string) => void;
}): Promise<TranscodeFigures> {
  const notes: string[] = [];
  const { list: ct, data } = ctSeries(opts.samplesDir, notes);
  const pairs: TranscodePairFigures[] = [];
  const wire: TranscodeFigures['wire'] = [];
  const say = (p: TranscodePairFigures) => {
    pairs.push(p);
    opts.log(
      `  transcode: ${p.pair}: ${p.framesPerSec} frames/s, ${p.pixelMBps} MB/s of pixels${p.errors ? ` (${p.errors} errors)` : ''}`,
    );
  };
  const dxFile = join(opts.samplesDir, 'transfer-syntaxes', 'JPGLosslessP14SV1_1s_1f_8b.dcm');
  let dx: Inst | undefined;
  try {
    dx = describe(new Uint8Array(readFileSync(dxFile)));
  } catch {
    notes.push('no 8-bit sample image: JPEG baseline not measured');
  }
  const dxData = '8-bit radiograph (768×1024, 1 frame requested 20 times per run)';

  // 1. Stored uncompressed: encoded on request; and the compressed copies for the next servers.
  const made = await withServer({}, async (t) => {
    await stowAll(t, ct);
    const asStored = await measurePair(t, ct, EVRLE, undefined, data, { accept: frameAccept('*') });
    say({ ...asStored, pair: `${NAME[EVRLE]} as stored (no codec)` });
    wire.push({ syntax: EVRLE, name: NAME[EVRLE], bytes: asStored.responseBytes, ratio: 1, status: 200 });
    for (const to of [JLS, HTJ2K, J2K, RLE]) {
      const p = await measurePair(t, ct, EVRLE, to, data);
      say(p);
      wire.push({ syntax: to, name: NAME[to], bytes: p.responseBytes, ratio: 0, status: p.errors ? 0 : 200 });
    }
    // Lossy JPEG of the 12-bit CT: baseline takes 8 bits (406); Extended is made by DCMTK when installed.
    for (const to of [BASELINE, EXTENDED]) {
      const r = await httpGet(`${instanceUrl(t, ct[0])}/frames/1`, { headers: { Accept: frameAccept(to) } });
      if (r.status !== 200) {
        wire.push({ syntax: to, name: NAME[to], bytes: 0, ratio: 0, status: r.status });
        continue;
      }
      const p = await measurePair(t, ct, EVRLE, to, data);
      say(p);
      wire.push({ syntax: to, name: NAME[to], bytes: p.responseBytes, ratio: 0, status: p.errors ? 0 : 200 });
    }
    const out: Record<string, Inst[]> = {};
    for (const ts of [JLS, HTJ2K, J2K]) out[ts] = await fetchAs(t, ct, ts);
    if (dx) {
      await stowAll(t, [dx]);
      out.dxNative = await fetchAs(t, [dx], EVRLE);
    }
    return out;
  });
  const base = wire[0].bytes;
  for (const w of wire) w.ratio = w.bytes ? round(base / w.bytes, 2) : 0;

  // 2. Stored compressed: decoded on request (and the 8-bit image encoded into JPEG baseline).
  for (const ts of [JLS, HTJ2K, J2K]) {
    await withServer({}, async (t) => {
      await stowAll(t, made[ts]);
      say(await measurePair(t, made[ts], ts, undefined, data));
      if (ts === JLS && made.dxNative) {
        await stowAll(t, made.dxNative);
        say(await measurePair(t, made.dxNative, EVRLE, BASELINE, dxData, { repeat: 20 }));
        made.dxBaseline = await fetchAs(t, made.dxNative, BASELINE); // a derived SOP Instance UID
      }
      if (ts === HTJ2K && made.dxBaseline) {
        await stowAll(t, made.dxBaseline);
        say(await measurePair(t, made.dxBaseline, BASELINE, undefined, dxData, { repeat: 20 }));
      }
    });
  }

  // 3. PACS_INGEST_HTJ2K=true: copies made after STOW, then HTJ2K served from them.
  const ingestCopies = await withServer({ PACS_INGEST_HTJ2K: 'true' }, async (t) => {
    const t0 = performance.now();
    await stowAll(t, ct);
    const stowSeconds = (performance.now() - t0) / 1000;
    while ((await countCopies(t.dataDir)) < ct.length) {
      if (performance.now() - t0 > 10 * 60_000) throw new Error('HTJ2K copies not made within 10 minutes');
      await new Promise((r) => setTimeout(r, 100));
    }
    const copiesSeconds = (performance.now() - t0) / 1000;
    say(await measurePair(t, ct, EVRLE, HTJ2K, data, { fromCopy: true }));
    return {
      instances: ct.length,
      stowSeconds: round(stowSeconds, 2),
      copiesSeconds: round(copiesSeconds, 2),
      copiesPerSec: round(ct.length / copiesSeconds, 1),
    };
  });
  return { data, transcodeWorkers: 'auto', pairs, wire, ingestCopies, notes };
}

export function formatTranscode(f: TranscodeFigures): string {
  const lines = [`Transcoding over HTTP (${f.data}; PACS_TRANSCODE_WORKERS=${f.transcodeWorkers}):`];
  const rows = f.pairs.map((p) => [
    p.pair,
    `${p.framesPerSec}`,
    `${p.pixelMBps}`,
    `${round(p.responseBytes / MB, 2)}`,
    `${p.frames} × ${p.inFlight} in flight${p.errors ? `, ${p.errors} errors` : ''}`,
  ]);
  const header = ['pair', 'frames/s', 'pixel MB/s', 'response MB', 'requests'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (c: string[]) =>
    c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
  lines.push(line(header), ...rows.map(line), '', 'Bytes on the wire, whole CT series, frame by frame:');
  for (const w of f.wire)
    lines.push(
      `  ${w.name.padEnd(20)} ${w.status === 200 ? `${round(w.bytes / MB, 2)} MB (${w.ratio}:1)` : `HTTP ${w.status}`}`,
    );
  if (f.ingestCopies)
    lines.push(
      `PACS_INGEST_HTJ2K=true: STOW of ${f.ingestCopies.instances} instances ${f.ingestCopies.stowSeconds} s; all copies made ${f.ingestCopies.copiesSeconds} s after the STOW began (${f.ingestCopies.copiesPerSec} instances/s)`,
    );
  for (const n of f.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

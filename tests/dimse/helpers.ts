/**
 * DIMSE test helpers: the archive with its DICOM listener on free ports (in this process), dcmtk tools
 * run as child processes (the real peers: echoscu, storescu, findscu, movescu, getscu, storescp), and
 * byte comparisons of DICOM files by their data set (what DIMSE carries; each side writes its own
 * File Meta Information).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../server/config';
import { readFileMeta } from '../../server/dimse/part10';
import { createLogger } from '../../server/log';
import { startServer } from '../../server/main';
import { expect } from 'vitest';
import { getMultipart, type Json, value } from '../e2e/dicomweb';
import { requireTools } from '../helpers/tools';
import { REPO } from '../samples';
import { freePort } from '../../scripts/lib/net';

const DCMTK_TOOLS = ['storescu', 'findscu', 'movescu', 'getscu', 'echoscu', 'storescp'];
export const DCMTK_MISSING = `dcmtk (${DCMTK_TOOLS.join(', ')}) is not installed`;

export interface Archive {
  baseUrl: string;
  dicomweb: string;
  /** The plain DICOM listener's port (0 when started with only the TLS one). */
  dimsePort: number;
  /** The DICOM TLS listener's port, when PACS_DIMSE_TLS_PORT was given. */
  dimseTlsPort?: number;
  dataDir: string;
  /** Every JSON log line the server wrote. */
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/**
 * The archive on free ports, in a temporary data folder removed at close; or in opts.dataDir, kept (an
 * archive started again on the same storage, or two sharing it as PACS_WORKERS processes do).
 */
export async function startArchive(
  env: Record<string, string> = {},
  opts: { dataDir?: string } = {},
): Promise<Archive> {
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'pacs-dimse-')));
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    PACS_DATA_DIR: dataDir,
    PACS_AUTH: 'off', // loopback only: no sign-in
    PACS_VIEWER_DIR: path.join(REPO, 'viewer/dist'),
    PACS_DIMSE_PORT: '0',
    ...env,
  });
  const logs: Record<string, unknown>[] = [];
  const log = createLogger('info', {}, (line) => logs.push(JSON.parse(line)));
  const running = await startServer(config, log);
  if (!running.dimse) throw new Error('the DIMSE listener did not start');
  return {
    baseUrl: running.url,
    dicomweb: `${running.url}/dicomweb`,
    dimsePort: running.dimse.port ?? 0,
    dimseTlsPort: running.dimse.tlsPort,
    dataDir,
    logs,
    close: async () => {
      await running.close();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export { type RunResult, run } from '../helpers/process';

/** Whether dcmtk is installed; with the samples present its absence fails the suite (tests/helpers/tools.ts). */
export async function dcmtkPresent(): Promise<boolean> {
  return requireTools(DCMTK_TOOLS, 'dcmtk');
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = new Socket();
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.connect(port, '127.0.0.1');
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on port ${port}`);
}

export interface StoreScp {
  aeTitle: string;
  port: number;
  dir: string;
  /** The files received so far (full paths). */
  files(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * dcmtk storescp in a temporary folder: accepts every transfer syntax it knows (+xa) and writes each
 * received data set as it came (+B, bit preserving) behind its own File Meta Information. `extra`: more
 * options (TLS: +tls key cert -pw +cf ca). `env`: more environment variables; with TCP_NODELAY=1 it
 * answers each C-STORE at once (without, Debian's dcmtk leaves Nagle's algorithm on, and the second of
 * the two writes of each response waits for the delayed ACK of the first, about 40 ms).
 */
export async function startStorescp(
  aeTitle = 'STORESCP',
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<StoreScp> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pacs-storescp-'));
  const port = await freePort();
  const args = ['-aet', aeTitle, '+xa', '+B', ...extra, '-od', dir, String(port)];
  const child: ChildProcess = spawn('storescp', args, {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, ...env },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForPort(port);
  return {
    aeTitle,
    port,
    dir,
    files: async () => (await readdir(dir)).filter((f) => !f.startsWith('.')).map((f) => path.join(dir, f)),
    close: async () => {
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The data set of a Part 10 file: the bytes after its File Meta Information. */
export function datasetOf(file: Uint8Array): Uint8Array {
  const meta = readFileMeta(file);
  if (!meta) throw new Error('not a Part 10 file');
  return file.subarray(meta.datasetOffset);
}

export function metaOf(file: Uint8Array) {
  const meta = readFileMeta(file);
  if (!meta) throw new Error('not a Part 10 file');
  return meta;
}

/** WADO-RS of one instance, as stored (transfer-syntax=*). */
export async function retrieveInstance(
  dicomweb: string,
  study: string,
  series: string,
  sop: string,
): Promise<Buffer | undefined> {
  const r = await getMultipart(
    `${dicomweb}/studies/${study}/series/${series}/instances/${sop}`,
    'multipart/related; type="application/dicom"; transfer-syntax=*',
  );
  return r.status === 200 ? r.parts[0]?.body : undefined;
}

/**
 * A storescu configuration file (-xf FILE Samples) proposing one context per SOP Class and transfer
 * syntax, written in dir.
 */
export async function storescuConfig(
  dir: string,
  combos: Iterable<[sopClass: string, ts: string]>,
): Promise<string> {
  const list = [...new Map([...combos].map(([c, t]) => [`${c} ${t}`, [c, t] as const])).values()];
  const syntaxes = [...new Set(list.map(([, t]) => t))];
  const lines = ['[[TransferSyntaxes]]'];
  for (const [i, t] of syntaxes.entries()) lines.push(`[TS${i}]`, `TransferSyntax1 = ${t}`);
  lines.push('[[PresentationContexts]]', '[Samples]');
  for (const [i, [c, t]] of list.entries())
    lines.push(`PresentationContext${i + 1} = ${c}\\TS${syntaxes.indexOf(t)}`);
  lines.push('[[Profiles]]', '[Samples]', 'PresentationContexts = Samples');
  const file = path.join(dir, 'storescu.cfg');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

/**
 * The identifiers of C-FIND responses as findscu prints them (-v): one map per Pending response, from
 * "(gggg,eeee)" to the value as printed (trimmed), in order.
 */
export function findResponses(output: string): Record<string, string>[] {
  const blocks = output.split(/Find Response: \d+ \(Pending\)/).slice(1);
  return blocks.map((block) => {
    const out: Record<string, string> = {};
    for (const m of block.matchAll(
      /\(([0-9a-f]{4}),([0-9a-f]{4})\) \w\w (?:\[([^\]]*)\]|(\(no value available\)|=\S+))/g,
    ))
      out[`${m[1]}${m[2]}`.toUpperCase()] = (m[3] ?? (m[4]?.startsWith('=') ? m[4] : ''))
        .replace(/\0/g, '')
        .trim();
    return out;
  });
}

/** All files under a folder, recursively. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

export interface RecordingProxy {
  port: number;
  /** The data set bytes of every C-STORE request that went through, by Affected SOP Instance UID. */
  datasets: Map<string, Buffer>;
  close(): Promise<void>;
}

/** The value of an element of a DIMSE command set (Implicit VR Little Endian), as text. */
function commandElement(command: Buffer, group: number, element: number): string | undefined {
  for (let pos = 0; pos + 8 <= command.length; ) {
    const g = command.readUInt16LE(pos);
    const e = command.readUInt16LE(pos + 2);
    const len = command.readUInt32LE(pos + 4);
    if (g === group && e === element)
      return command
        .subarray(pos + 8, pos + 8 + len)
        .toString('latin1')
        .replace(/[\0 ]+$/, '');
    pos += 8 + len;
  }
  return undefined;
}

/**
 * A TCP proxy in front of a DICOM node that records, from the requester's P-DATA-TF PDUs, the data set
 * of each C-STORE request exactly as it went over the wire: what the archive must have stored.
 */
export async function startRecordingProxy(targetPort: number, port = 0): Promise<RecordingProxy> {
  const datasets = new Map<string, Buffer>();
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = new Socket();
    sockets.add(client);
    sockets.add(upstream);
    upstream.connect(targetPort, '127.0.0.1');
    upstream.on('data', (d) => client.write(d));
    upstream.on('close', () => client.destroy());
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    let pending = Buffer.alloc(0);
    let command: Buffer[] = [];
    let data: Buffer[] = [];
    let sop: string | undefined;
    client.on('data', (d: Buffer) => {
      upstream.write(d);
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 6) {
        const length = pending.readUInt32BE(2);
        if (pending.length < 6 + length) break;
        const pdu = pending.subarray(0, 6 + length);
        pending = pending.subarray(6 + length);
        if (pdu[0] !== 0x04) continue;
        for (let pos = 6; pos + 6 <= pdu.length; ) {
          const itemLength = pdu.readUInt32BE(pos);
          const control = pdu[pos + 5];
          const value = Buffer.from(pdu.subarray(pos + 6, pos + 4 + itemLength));
          pos += 4 + itemLength;
          if (control & 1) {
            command.push(value);
            if (control & 2) {
              const c = Buffer.concat(command);
              command = [];
              // CommandField 0x0001 is C-STORE-RQ; other messages carry no instance to record.
              sop = readCommandField(c) === 0x0001 ? commandElement(c, 0x0000, 0x1000) : undefined;
            }
          } else {
            data.push(value);
            if (control & 2) {
              if (sop) datasets.set(sop, Buffer.concat(data));
              data = [];
            }
          }
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    datasets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function readCommandField(command: Buffer): number | undefined {
  for (let pos = 0; pos + 8 <= command.length; ) {
    const g = command.readUInt16LE(pos);
    const e = command.readUInt16LE(pos + 2);
    const len = command.readUInt32LE(pos + 4);
    if (g === 0 && e === 0x0100) return command.readUInt16LE(pos + 8);
    pos += 8 + len;
  }
  return undefined;
}

/** Polls until check() is true (at most timeoutMs); returns its last value. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** The DICOM files under a folder (what storescp or getscu received), by SOP Instance UID. */
export async function receivedBySop(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const f of await filesUnder(dir)) {
    const bytes = new Uint8Array(await readFile(f));
    out.set(metaOf(bytes).MediaStorageSOPInstanceUID!, bytes);
  }
  return out;
}

/** Each instance (QIDO-RS JSON of one study) was received with the data set the archive stores, byte for byte. */
export async function expectReceivedAsStored(
  dicomweb: string,
  study: string,
  instances: Json[],
  received: Map<string, Uint8Array>,
): Promise<void> {
  for (const ds of instances) {
    const stored = await retrieveInstance(dicomweb, study, value(ds, '0020000E'), value(ds, '00080018'));
    const got = received.get(value(ds, '00080018'));
    expect(got, value(ds, '00080018')).toBeDefined();
    expect(
      Buffer.compare(Buffer.from(datasetOf(got!)), Buffer.from(datasetOf(new Uint8Array(stored!)))),
    ).toBe(0);
  }
}

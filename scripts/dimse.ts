/**
 * npm run dimse -- send <folder|file>... <AET@host:port[/tls]> [--aet OURS] [--associations 1] [--quiet] [--json]
 * npm run dimse -- echo <AET@host:port[/tls]> [--aet OURS]
 *   with /tls: --tls-cert our-cert.pem --tls-key our-key.pem [--tls-ca hospital-ca.pem] [--tls-crl hospital.crl]
 *
 * `send` stores every DICOM Part 10 file under the folders (or the files given) into a DICOM node by
 * C-STORE, each data set byte for byte as in the file (the File Meta Information is not sent: the
 * receiver writes its own). Files without 'DICM' at 128 are skipped and listed; so is a DICOMDIR.
 * `--associations N` sends over N associations at once. `echo` checks that the node answers (C-ECHO).
 * A node given as AET@host:port/tls is reached over DICOM TLS, as the archive reaches a /tls remote AE:
 * our certificate and key (--tls-cert, --tls-key) as the client certificate, the node's certificate
 * verified against --tls-ca (default: the usual public CAs) and its host name or address.
 * Exit code: 0 when everything was stored, 1 when some instance failed, 2 on a usage error or when the
 * node cannot be reached.
 */
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { findElement, type ScanResult, scanPart10 } from '../dicomweb/part10';
import { type DimseTls, readDimseTls } from '../server/config';
import { type FileMetaRead, readFileMeta } from '../server/dimse/part10';
import { isValidAETitle, parseRemoteAE, type RemoteAE, remoteAEName } from '../server/dimse/negotiation';
import {
  AssociationError,
  echo,
  isStored,
  type OutgoingInstance,
  type StoreResult,
  storeInstances,
} from '../server/dimse/scu';
import { commandLine, isMain, parseOrExit } from './lib/cli';
import { formatBytes, Progress } from './lib/progress';
import { MEDIA_STORAGE_DIRECTORY_STORAGE } from './lib/sniff';

export interface SendOptions {
  inputs: string[];
  remote: RemoteAE;
  /** Our (calling) AE title; default OPENPACS. */
  aeTitle?: string;
  associations?: number;
  progress?: boolean;
  json?: boolean;
  /** Our certificate, key and trusted CAs, for a node reached over TLS. */
  tls?: DimseTls;
}

export interface SendSummary {
  remote: string;
  scanned: number;
  stored: { path: string; SOPInstanceUID: string; status: string }[];
  failed: { path: string; SOPInstanceUID: string; status?: string; reason: string }[];
  skipped: { path: string; reason: string }[];
  bytes: number;
  seconds: number;
}

const hex = (n: number) => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

async function walk(path: string, out: string[]): Promise<void> {
  if (!(await stat(path)).isDirectory()) {
    out.push(path);
    return;
  }
  const entries = await readdir(path, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const p = join(path, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile()) out.push(p);
  }
}

/**
 * The File Meta Information of a file from its first 64 KiB, or why it cannot be sent. When the meta
 * lacks the SOP Class or Instance UID, they are read from the data set.
 */
async function sniff(path: string): Promise<FileMetaRead | string> {
  const fh = await open(path, 'r');
  let meta: FileMetaRead | undefined;
  try {
    const head = new Uint8Array(64 * 1024);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    meta = readFileMeta(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
  if (!meta) return 'not a DICOM Part 10 file';
  if (meta.MediaStorageSOPClassUID === MEDIA_STORAGE_DIRECTORY_STORAGE) return 'DICOMDIR';
  if (!meta.TransferSyntaxUID) return 'File Meta Information without Transfer Syntax UID';
  if (!meta.MediaStorageSOPClassUID || !meta.MediaStorageSOPInstanceUID) {
    let scan: ScanResult;
    try {
      scan = scanPart10(new Uint8Array(await readFile(path)));
    } catch (err) {
      return `unreadable: ${(err as Error).message}`;
    }
    const uid = (tag: string) => {
      const v = findElement(scan.dataset, tag)?.value;
      return v ? String.fromCharCode(...v).replace(/[\0 ]+$/, '') : undefined;
    };
    meta.MediaStorageSOPClassUID ??= uid('00080016');
    meta.MediaStorageSOPInstanceUID ??= uid('00080018');
    if (!meta.MediaStorageSOPClassUID || !meta.MediaStorageSOPInstanceUID)
      return 'no SOP Class or SOP Instance UID';
  }
  return meta;
}

export async function sendFiles(opts: SendOptions): Promise<SendSummary> {
  const started = performance.now();
  const files: string[] = [];
  for (const input of opts.inputs) await walk(resolve(input), files);
  const base = opts.inputs.length === 1 ? resolve(opts.inputs[0]) : process.cwd();
  const rel = (p: string) => relative(base, p) || p;
  const summary: SendSummary = {
    remote: remoteAEName(opts.remote),
    scanned: files.length,
    stored: [],
    failed: [],
    skipped: [],
    bytes: 0,
    seconds: 0,
  };
  const items: (OutgoingInstance & { path: string })[] = [];
  for (const path of files) {
    const meta = await sniff(path);
    if (typeof meta === 'string') {
      summary.skipped.push({ path: rel(path), reason: meta });
      continue;
    }
    items.push({
      path,
      size: (await stat(path)).size,
      SOPClassUID: meta.MediaStorageSOPClassUID ?? '',
      SOPInstanceUID: meta.MediaStorageSOPInstanceUID ?? '',
      TransferSyntaxUID: meta.TransferSyntaxUID ?? '',
      dataset: async () => {
        const file = new Uint8Array(await readFile(path));
        const m = readFileMeta(file);
        if (!m) throw new Error('not a DICOM Part 10 file');
        summary.bytes += file.length - m.datasetOffset;
        return file.subarray(m.datasetOffset);
      },
    });
  }
  const progress = new Progress('send', process.stderr, opts.progress !== false);
  let totalBytes = 0;
  for (const item of items) totalBytes += item.size ?? 0;
  const state = () => ({
    done: summary.stored.length + summary.failed.length,
    total: items.length,
    bytes: summary.bytes,
    totalBytes,
  });
  const lanes = Math.max(1, Math.min(opts.associations ?? 1, items.length));
  const byLane: (typeof items)[] = Array.from({ length: lanes }, () => []);
  for (const [i, item] of items.entries()) byLane[i % lanes].push(item);
  let unreachable: string | undefined;
  await Promise.all(
    byLane.map(async (lane) => {
      let i = 0;
      const results = await storeInstances(opts.remote, lane, {
        callingAETitle: opts.aeTitle ?? 'OPENPACS',
        tls: opts.tls,
        onResult: (r: StoreResult) => {
          const item = lane[i++];
          if (isStored(r))
            summary.stored.push({
              path: rel(item.path),
              SOPInstanceUID: r.SOPInstanceUID,
              status: hex(r.status ?? 0),
            });
          else
            summary.failed.push({
              path: rel(item.path),
              SOPInstanceUID: r.SOPInstanceUID,
              ...(r.status === undefined ? {} : { status: hex(r.status) }),
              reason: r.error ?? 'refused',
            });
          progress.update(state());
        },
      });
      if (results.length > 0 && results.every((r) => r.noAssociation)) unreachable ??= results[0].error;
    }),
  );
  progress.finish(state());
  summary.seconds = (performance.now() - started) / 1000;
  if (unreachable !== undefined && summary.stored.length === 0) throw new AssociationError(unreachable);
  return summary;
}

const USAGE = `usage: npm run dimse -- send <folder|file>... <AET@host:port[/tls]> [--aet OURS] [--associations N] [--quiet] [--json]
       npm run dimse -- echo <AET@host:port[/tls]> [--aet OURS]
  --aet OURS          our calling AE title (default OPENPACS)
  --associations N    send over N associations at once (default 1)
  --quiet             no progress on stderr
  --json              print the summary as JSON on stdout
  --tls-cert FILE     with /tls (DICOM TLS): our certificate (PEM), sent as the client certificate
  --tls-key FILE      its private key (PEM, not encrypted)
  --tls-ca FILE       CAs (PEM) the node's certificate must be signed by (default: the usual public CAs)
  --tls-crl FILE      CRLs (PEM, one or more): a node whose certificate is revoked is refused`;

interface Command {
  command: 'send' | 'echo';
  inputs: string[];
  remote: RemoteAE;
  aeTitle: string;
  associations: number;
  quiet: boolean;
  json: boolean;
  tls?: DimseTls;
}

export function parseDimseArgs(argv: string[]): Command | string {
  const positional: string[] = [];
  const opts = { aeTitle: 'OPENPACS', associations: 1, quiet: false, json: false };
  const tlsFiles = { cert: '', key: '', ca: '', crl: '' };
  for (const a of commandLine(argv)) {
    if (a.flag === '-h' || a.flag === '--help') return USAGE;
    else if (a.flag === '--aet') opts.aeTitle = a.value();
    else if (a.flag === '--associations') opts.associations = a.int();
    else if (a.flag === '--quiet') opts.quiet = true;
    else if (a.flag === '--json') opts.json = true;
    else if (a.flag === '--tls-cert') tlsFiles.cert = a.value();
    else if (a.flag === '--tls-key') tlsFiles.key = a.value();
    else if (a.flag === '--tls-ca') tlsFiles.ca = a.value();
    else if (a.flag === '--tls-crl') tlsFiles.crl = a.value();
    else if (a.flag.startsWith('--')) throw new Error(`unknown option ${a.flag}`);
    else positional.push(a.arg);
  }
  const [command, ...rest] = positional;
  if (command !== 'send' && command !== 'echo') throw new Error('expected a command: send or echo');
  const target = rest.pop();
  if (!target) throw new Error('expected the remote node as AET@host:port');
  const remote = parseRemoteAE(target);
  if (typeof remote === 'string') throw new Error(remote);
  if (!isValidAETitle(opts.aeTitle)) throw new Error(`--aet ${opts.aeTitle}: not a valid AE title`);
  if (command === 'send' && rest.length === 0) throw new Error('send: expected a folder or files');
  if (command === 'echo' && rest.length > 0) throw new Error('echo takes only AET@host:port');
  const errors: string[] = [];
  const tls = readDimseTls(tlsFiles, errors, remote.tls ? remoteAEName(remote) : undefined, {
    cert: '--tls-cert',
    key: '--tls-key',
    ca: '--tls-ca',
    crl: '--tls-crl',
  });
  if (errors.length > 0) throw new Error(errors.join('; '));
  return { command, inputs: rest, remote, ...opts, ...(tls ? { tls } : {}) };
}

async function main(): Promise<number> {
  const cmd = parseOrExit(parseDimseArgs, USAGE);
  if (typeof cmd === 'number') return cmd;
  const where = remoteAEName(cmd.remote);
  try {
    if (cmd.command === 'echo') {
      const status = await echo(cmd.remote, cmd.aeTitle, cmd.tls);
      console.log(`C-ECHO ${where}: ${status === 0 ? 'success' : `status ${hex(status)}`}`);
      return status === 0 ? 0 : 1;
    }
    const s = await sendFiles({
      inputs: cmd.inputs,
      remote: cmd.remote,
      aeTitle: cmd.aeTitle,
      associations: cmd.associations,
      progress: !cmd.quiet && !cmd.json,
      tls: cmd.tls,
    });
    if (cmd.json) console.log(JSON.stringify(s, null, 2));
    else {
      console.log(
        `${where}: ${s.stored.length} stored, ${s.failed.length} failed, ${s.skipped.length} skipped ` +
          `(${formatBytes(s.bytes)} in ${s.seconds.toFixed(1)} s, ${(s.stored.length / Math.max(s.seconds, 1e-3)).toFixed(1)} instances/s)`,
      );
      for (const f of s.failed)
        console.log(`  failed  ${f.path}: ${f.status ? `${f.status} ` : ''}${f.reason}`);
      for (const f of s.skipped) console.log(`  skipped ${f.path}: ${f.reason}`);
    }
    return s.failed.length > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof AssociationError) {
      // The error names the remote AE already (AET@host:port: why).
      const why = err.message.startsWith(`${where}: `) ? err.message.slice(where.length + 2) : err.message;
      console.error(`cannot ${cmd.command === 'echo' ? 'reach' : 'send to'} ${where}: ${why}`);
      return 2;
    }
    throw err;
  }
}

if (isMain(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err?.stack ?? err);
      process.exit(2);
    },
  );
}

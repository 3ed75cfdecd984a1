/**
 * s3rver (an S3 server over HTTP, for tests and benchmarks) in a process of its own, started by
 * scripts/lib/s3rver.ts and tests/helpers/s3rver-restartable.ts.
 * Usage: node --openssl-legacy-provider s3rver-child.mjs DIR PORT BUCKET... (PORT 0: a free port);
 * prints {"port":N} once listening, then {"aborted":"uploadId"} lines; exits when its stdin closes.
 *
 * Where s3rver differs from S3 in a way the archive's tests would notice, this server behaves like S3:
 * - --openssl-legacy-provider: s3rver's ListObjectsV2 continuation tokens use DES, which Node's OpenSSL 3
 *   only has in the legacy provider.
 * - AbortMultipartUpload: s3rver does not implement it (it answers 405); this server removes the upload's
 *   parts and reports the upload id on stdout.
 * - DeleteObject: s3rver removes the folders a deleted key leaves empty, which races with a PUT into the
 *   same folder (the PUT's file cannot be opened: an unhandled ENOENT that kills the process). S3 has no
 *   folders; here they are left in place (listing walks files, so an empty folder lists nothing).
 * - SIGTERM (a test stopping the store): it stops listening and cuts every open connection at once
 *   (requests in flight fail), then gives the writes it has already acknowledged a moment to reach the
 *   disk before exiting. s3rver answers a PUT before its file writes complete, so a SIGKILL could lose
 *   or tear an object it acknowledged, which a real object store never does.
 */
import { readdir, rm, unlink } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import S3rver from 's3rver';
import FilesystemStore from 's3rver/lib/stores/filesystem.js';

const [dir, port, ...buckets] = process.argv.slice(2);

FilesystemStore.prototype.deleteObject = async function deleteObject(bucket, key) {
  await Promise.all(
    ['object', 'object.md5', 'metadata.json'].map((resource) =>
      unlink(this.getResourcePath(bucket, key, resource)).catch((err) => {
        if (err.code !== 'ENOENT') throw err;
      }),
    ),
  );
};

async function findDirs(root, name) {
  const out = [];
  for (const e of await readdir(root, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const p = path.join(root, e.name);
    if (e.name === name) out.push(p);
    else out.push(...(await findDirs(p, name)));
  }
  return out;
}

const s3rver = new S3rver({
  directory: dir,
  silent: true,
  configureBuckets: buckets.map((name) => ({ name })),
});
await s3rver.configureBuckets();
const handle = s3rver.callback();
const server = createServer((req, res) => {
  const uploadId = new URL(req.url ?? '/', 'http://localhost').searchParams.get('uploadId');
  if (req.method === 'DELETE' && uploadId) {
    findDirs(dir, uploadId)
      .then(async (dirs) => {
        for (const d of dirs) await rm(d, { recursive: true, force: true });
        process.stdout.write(`${JSON.stringify({ aborted: uploadId })}\n`);
        res.writeHead(204).end();
      })
      .catch((err) => res.writeHead(500).end(String(err)));
    return;
  }
  handle(req, res);
});
const sockets = new Set();
server.on('connection', (socket) => {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
});
server.once('error', (err) => {
  process.stderr.write(`${err.code ?? ''} ${err.message}\n`);
  process.exit(1);
});
server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  for (const socket of sockets) socket.destroy();
  setTimeout(() => process.exit(0), 300);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

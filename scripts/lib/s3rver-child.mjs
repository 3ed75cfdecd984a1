/**
 * s3rver (an S3 server over HTTP, for tests) in a process of its own, started by tests/helpers/s3rver.ts.
 * Run with --openssl-legacy-provider: s3rver's ListObjectsV2 continuation tokens use DES, which Node's
 * OpenSSL 3 only has in the legacy provider. s3rver does not implement AbortMultipartUpload (it answers
 * 405), so this server answers that request itself, as S3 does: it removes the upload's parts and
 * reports the upload id on stdout.
 * Usage: node --openssl-legacy-provider s3rver-child.mjs DIR BUCKET...; prints {"port":N}, then
 * {"aborted":"uploadId"} lines; exits when its stdin closes.
 */
import { readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import S3rver from 's3rver';

const [dir, ...buckets] = process.argv.slice(2);

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
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

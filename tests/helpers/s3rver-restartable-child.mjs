/**
 * s3rver on a fixed port, for tests that stop the object store and start it again on the same port and
 * folder (tests/helpers/s3rver-restartable.ts). Usage: node --openssl-legacy-provider
 * s3rver-restartable-child.mjs DIR PORT BUCKET...; prints {"port":N} once listening; exits when its stdin
 * closes. On SIGTERM the store goes down at once: it stops listening and cuts every open connection
 * (requests in flight fail), then gives the writes it has already acknowledged a moment to reach the disk
 * before exiting. s3rver answers a PUT before its file writes complete, so a SIGKILL could lose or tear an
 * object it acknowledged, which a real object store never does.
 */
import S3rver from 's3rver';

const [dir, port, ...buckets] = process.argv.slice(2);
const s3rver = new S3rver({
  directory: dir,
  silent: true,
  address: '127.0.0.1',
  port: Number(port),
  configureBuckets: buckets.map((name) => ({ name })),
});
const addr = await s3rver.run();
const sockets = new Set();
s3rver.httpServer.on('connection', (socket) => {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
});
process.stdout.write(`${JSON.stringify({ port: addr.port })}\n`);
process.on('SIGTERM', () => {
  s3rver.httpServer.close();
  for (const socket of sockets) socket.destroy();
  setTimeout(() => process.exit(0), 300);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

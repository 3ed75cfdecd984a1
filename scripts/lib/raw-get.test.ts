/** The benchmark's frame client: what it reports must be what the server sent, however the bytes arrive. */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RawGetPool } from './raw-get';

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

async function listen(server: net.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function pool(origin: string, size: number): RawGetPool {
  const p = new RawGetPool(origin, size);
  closers.push(() => p.close());
  return p;
}

/** A server that answers every request on a connection with `answer(n)` bytes, written in `pieces`. */
async function rawServer(answer: (n: number) => string, pieces = 1, gapMs = 2): Promise<string> {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let n = 0;
    let pending = '';
    socket.on('data', async (d) => {
      pending += d.toString('latin1');
      while (pending.includes('\r\n\r\n')) {
        pending = pending.slice(pending.indexOf('\r\n\r\n') + 4);
        const bytes = Buffer.from(answer(n++), 'latin1');
        const size = Math.ceil(bytes.length / pieces);
        for (let i = 0; i < bytes.length; i += size) {
          socket.write(bytes.subarray(i, i + size));
          if (pieces > 1) await new Promise((r) => setTimeout(r, gapMs));
        }
      }
    });
  });
  return listen(server);
}

describe('RawGetPool', () => {
  it('counts Content-Length bodies over kept-alive connections, never more connections than its size', async () => {
    const sizes = [0, 1, 70_000, 600_000, 12];
    let connections = 0;
    const server = http.createServer((req, res) => {
      const size = sizes[Number(req.url!.slice(1)) % sizes.length];
      res.writeHead(req.headers.accept === 'x/y' ? 200 : 406, { 'Content-Length': size });
      res.end(Buffer.alloc(size, 7));
    });
    server.on('connection', () => connections++);
    const p = pool(await listen(server), 2);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => p.get(`/${i}`, { Accept: i === 3 ? 'a/b' : 'x/y' })),
    );
    expect(results.map((r) => r.bytes)).toEqual(Array.from({ length: 20 }, (_, i) => sizes[i % 5]));
    expect(results.map((r) => r.status)).toEqual(Array.from({ length: 20 }, (_, i) => (i === 3 ? 406 : 200)));
    expect(connections).toBe(2);
  });

  it('decodes chunked bodies split anywhere (inside the head, a size line, the data, the trailer)', async () => {
    const body = 'hello, world: 0123456789';
    const chunked =
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5\r\nhello\r\n' +
      '13;ext=1\r\n, world: 0123456789\r\n' +
      '0\r\nX-Trailer: yes\r\n\r\n';
    const origin = await rawServer(() => chunked, chunked.length, 1); // one byte per write
    const p = pool(origin, 1);
    const a = await p.get('/');
    const b = await p.get('/'); // the same connection, after a response that ended with trailers
    expect(a).toMatchObject({ status: 200, bytes: body.length });
    expect(b).toMatchObject({ status: 200, bytes: body.length });
  });

  it('reads a chunked body without trailers, and a Content-Length body split across reads', async () => {
    const origin = await rawServer(
      (n) =>
        n % 2 === 0
          ? 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n'
          : `HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n${'x'.repeat(30)}`,
      7,
    );
    const p = pool(origin, 1);
    for (let i = 0; i < 4; i++) expect((await p.get('/')).bytes).toBe(i % 2 === 0 ? 10 : 30);
  });

  it('opens a new connection after "Connection: close"', async () => {
    let connections = 0;
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': 3, Connection: 'close' });
      res.end('abc');
    });
    server.on('connection', () => connections++);
    const p = pool(await listen(server), 1);
    for (let i = 0; i < 3; i++) expect(await p.get('/')).toMatchObject({ status: 200, bytes: 3 });
    expect(connections).toBe(3);
  });

  it('rejects a response cut short, and serves the next request on a new connection', async () => {
    let n = 0;
    const server = net.createServer((socket) => {
      const first = n++ === 0;
      socket.once('data', () => {
        if (first) socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this');
        else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      });
    });
    const p = pool(await listen(server), 1);
    await expect(p.get('/')).rejects.toThrow(/closed the connection before the response ended/);
    expect(await p.get('/')).toMatchObject({ status: 200, bytes: 2 });
  });

  it('rejects what is not HTTP, and bytes beyond the response', async () => {
    const junk = await rawServer(() => 'SSH-2.0-OpenSSH\r\n\r\n');
    await expect(pool(junk, 1).get('/')).rejects.toThrow(/not an HTTP response/);
    const extra = await rawServer(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA');
    await expect(pool(extra, 1).get('/')).rejects.toThrow(/5 bytes arrived after the end of the response/);
    const neither = await rawServer(() => 'HTTP/1.1 200 OK\r\n\r\nbody');
    await expect(pool(neither, 1).get('/')).rejects.toThrow(/neither Content-Length nor chunked/);
  });
});

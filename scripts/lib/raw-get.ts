/**
 * A keep-alive HTTP/1.1 GET client for the benchmark's frame passes that reads every response into one
 * reused buffer per connection (`net.Socket`'s `onread`) and only counts the body's bytes.
 *
 * The bench client shares the 2 cores with the server it measures. With `node:http` each socket read
 * becomes a new Buffer, and receiving 300 frames of 512 kB cost the client 0.2–1.2 ms of CPU per frame,
 * as much as the server it was timing. This client does only the kernel's copy per read. Both servers
 * of a comparison are timed with it. Content-Length and chunked bodies are both read.
 */
import net from 'node:net';

export interface RawGetResult {
  status: number;
  /** Body bytes received (after chunked decoding). */
  bytes: number;
  ms: number;
}

const READ_BUFFER = 256 * 1024;
const MAX_HEAD = 64 * 1024;

type State =
  | { kind: 'head' }
  | { kind: 'length'; left: number }
  | { kind: 'chunk-size' }
  | { kind: 'chunk-data'; left: number }
  | { kind: 'chunk-crlf'; left: number }
  | { kind: 'trailer' }
  | { kind: 'done' };

interface Pending {
  request: Buffer;
  t0: number;
  resolve: (r: RawGetResult) => void;
  reject: (e: Error) => void;
}

/** One connection, one request at a time. */
class Connection {
  private socket: net.Socket | undefined;
  private current: Pending | undefined;
  private state: State = { kind: 'head' };
  /** Header bytes (and chunk-size or trailer lines) gathered across reads. */
  private line = Buffer.alloc(MAX_HEAD);
  private lineLength = 0;
  private status = 0;
  private bytes = 0;
  private closeAfter = false;
  private readonly buffer = Buffer.allocUnsafe(READ_BUFFER);

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  get busy(): boolean {
    return this.current !== undefined;
  }

  send(p: Pending): void {
    this.current = p;
    this.state = { kind: 'head' };
    this.lineLength = 0;
    this.status = 0;
    this.bytes = 0;
    this.closeAfter = false;
    if (!this.socket || this.socket.destroyed) this.connect();
    this.socket!.write(p.request);
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connect(): void {
    const socket = net.connect({
      host: this.host,
      port: this.port,
      onread: { buffer: this.buffer, callback: (n: number, buf: Uint8Array) => this.onRead(n, buf) },
    });
    socket.setNoDelay(true);
    // Events of a socket this connection has already given up (closed after a response that said
    // "Connection: close") must not touch the request now in flight on its successor.
    socket.on('error', (e) => {
      if (this.socket === socket) this.fail(e);
    });
    socket.on('close', () => {
      if (this.socket === socket)
        this.fail(new Error('the server closed the connection before the response ended'));
    });
    this.socket = socket;
  }

  private fail(e: Error): void {
    const p = this.current;
    this.current = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    p?.reject(e);
  }

  /** Ends the current response; `extra` bytes after it in the same read are a protocol error. */
  private finish(extra: number): void {
    if (extra > 0) {
      this.fail(new Error(`${extra} bytes arrived after the end of the response`));
      return;
    }
    const p = this.current!;
    this.current = undefined;
    if (this.closeAfter) this.close();
    p.resolve({ status: this.status, bytes: this.bytes, ms: performance.now() - p.t0 });
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    let i = 0;
    try {
      while (i < n) {
        if (!this.current) throw new Error(`${n - i} bytes arrived with no request in flight`);
        const s = this.state;
        if (s.kind === 'length' || s.kind === 'chunk-data') {
          const take = Math.min(s.left, n - i);
          this.bytes += take;
          s.left -= take;
          i += take;
          if (s.left === 0) {
            if (s.kind === 'length') {
              this.finish(n - i);
              return true;
            }
            this.state = { kind: 'chunk-crlf', left: 2 };
          }
          continue;
        }
        if (s.kind === 'chunk-crlf') {
          const take = Math.min(s.left, n - i);
          s.left -= take;
          i += take;
          if (s.left === 0) this.state = { kind: 'chunk-size' };
          continue;
        }
        // A line-oriented state: gather up to the end of the head, the chunk-size line or the trailer.
        const end = s.kind === 'chunk-size' ? '\n' : '\r\n\r\n';
        const start = this.lineLength;
        const take = Math.min(n - i, MAX_HEAD - start);
        if (take === 0) throw new Error(`response head or chunk line longer than ${MAX_HEAD} bytes`);
        this.line.set(buf.subarray(i, i + take), start);
        this.lineLength += take;
        const at = this.line
          .subarray(0, this.lineLength)
          .indexOf(end, Math.max(0, start - (end.length - 1)), 'latin1');
        if (at < 0) {
          i += take;
          continue;
        }
        i += at + end.length - start; // the bytes of this read that belong to the line
        const text = this.line.toString('latin1', 0, at);
        this.lineLength = 0;
        if (s.kind === 'head') this.onHead(text);
        else if (s.kind === 'chunk-size') this.onChunkSize(text);
        else this.state = { kind: 'done' }; // the trailer section ended
        if (this.state.kind === 'done') {
          this.finish(n - i);
          return true;
        }
      }
    } catch (e) {
      this.fail(e as Error);
      return false;
    }
    return true;
  }

  private onHead(head: string): void {
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) throw new Error(`not an HTTP response: ${lines[0].slice(0, 80)}`);
    this.status = Number(m[1]);
    let length: number | undefined;
    let chunked = false;
    for (const l of lines.slice(1)) {
      const colon = l.indexOf(':');
      if (colon < 0) continue;
      const name = l.slice(0, colon).trim().toLowerCase();
      const value = l
        .slice(colon + 1)
        .trim()
        .toLowerCase();
      if (name === 'content-length') length = Number(value);
      else if (name === 'transfer-encoding') chunked = value.split(',').some((v) => v.trim() === 'chunked');
      else if (name === 'connection') this.closeAfter = value.split(',').some((v) => v.trim() === 'close');
    }
    if (chunked) this.state = { kind: 'chunk-size' };
    else if (length !== undefined && Number.isSafeInteger(length) && length >= 0) {
      this.state = length === 0 ? { kind: 'done' } : { kind: 'length', left: length };
    } else if (this.status === 204 || this.status === 304) this.state = { kind: 'done' };
    else throw new Error('a response with neither Content-Length nor chunked encoding');
  }

  private onChunkSize(line: string): void {
    const size = Number.parseInt(line.split(';')[0].trim(), 16);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`bad chunk size line: ${line.slice(0, 40)}`);
    if (size === 0) {
      // The last chunk: what follows is optional trailers and an empty line. The gathered "\r\n" of
      // an empty trailer section is found as the head's terminator once the line buffer is primed.
      this.line.write('\r\n', 0, 'latin1');
      this.lineLength = 2;
      this.state = { kind: 'trailer' };
    } else this.state = { kind: 'chunk-data', left: size };
  }
}

/** A pool of keep-alive connections to one origin; GETs wait for a free connection. */
export class RawGetPool {
  private readonly connections: Connection[];
  private readonly queue: Pending[] = [];
  private readonly host: string;
  private readonly port: number;
  private readonly hostHeader: string;

  constructor(origin: string, size: number) {
    const u = new URL(origin);
    if (u.protocol !== 'http:') throw new Error(`RawGetPool speaks plain HTTP only, not ${u.protocol}`);
    this.host = u.hostname;
    this.port = Number(u.port || 80);
    this.hostHeader = u.host;
    this.connections = Array.from({ length: size }, () => new Connection(this.host, this.port));
  }

  get(pathAndQuery: string, headers: Record<string, string> = {}): Promise<RawGetResult> {
    let head = `GET ${pathAndQuery} HTTP/1.1\r\nHost: ${this.hostHeader}\r\nConnection: keep-alive\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    const request = Buffer.from(`${head}\r\n`, 'latin1');
    return new Promise((resolve, reject) => {
      const p: Pending = {
        request,
        t0: performance.now(),
        resolve: (r) => {
          resolve(r);
          this.next();
        },
        reject: (e) => {
          reject(e);
          this.next();
        },
      };
      this.queue.push(p);
      this.next();
    });
  }

  close(): void {
    for (const c of this.connections) c.close();
  }

  private next(): void {
    while (this.queue.length > 0) {
      const free = this.connections.find((c) => !c.busy);
      if (!free) return;
      free.send(this.queue.shift()!);
    }
  }
}

/**
 * A deliberately minimal DICOM upper-layer peer (PS3.8 9.3) written byte by byte, independent of the
 * library the archive uses: to propose exactly the presentation contexts a test wants, read the
 * results off the wire, and misbehave (garbage PDUs, a data set cut off by an abort).
 */
import { Socket } from 'node:net';

const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const item = (type: number, body: Buffer) => Buffer.concat([Buffer.from([type, 0]), u16(body.length), body]);
const pdu = (type: number, body: Buffer) => Buffer.concat([Buffer.from([type, 0]), u32(body.length), body]);
const ae = (s: string) => Buffer.from(s.padEnd(16, ' ').slice(0, 16), 'latin1');

export interface ProposedContext {
  id: number;
  abstractSyntax: string;
  transferSyntaxes: string[];
}

export function associateRQ(calling: string, called: string, contexts: ProposedContext[]): Buffer {
  const body = Buffer.concat([
    u16(1),
    Buffer.alloc(2),
    ae(called),
    ae(calling),
    Buffer.alloc(32),
    item(0x10, Buffer.from('1.2.840.10008.3.1.1.1')),
    ...contexts.map((c) =>
      item(
        0x20,
        Buffer.concat([
          Buffer.from([c.id, 0, 0, 0]),
          item(0x30, Buffer.from(c.abstractSyntax)),
          ...c.transferSyntaxes.map((t) => item(0x40, Buffer.from(t))),
        ]),
      ),
    ),
    item(0x50, Buffer.concat([item(0x51, u32(65536)), item(0x52, Buffer.from('1.2.3.4.5.6'))])),
  ]);
  return pdu(0x01, body);
}

/** P-DATA-TF with one PDV. */
export function pData(contextId: number, command: boolean, last: boolean, value: Buffer): Buffer {
  const pdv = Buffer.concat([
    u32(value.length + 2),
    Buffer.from([contextId, (command ? 1 : 0) | (last ? 2 : 0)]),
    value,
  ]);
  return pdu(0x04, pdv);
}

export const abortPDU = () => pdu(0x07, Buffer.from([0, 0, 0, 0]));
export const releaseRQ = () => pdu(0x05, Buffer.alloc(4));

/** Implicit VR Little Endian element of a command set. */
function el(element: number, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0x0000, 0);
  h.writeUInt16LE(element, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}
const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};
const ui = (s: string) => Buffer.from(s.length % 2 ? `${s}\0` : s, 'latin1');

/** A C-STORE-RQ command set (PS3.7 9.3.1.1). */
export function cStoreCommand(sopClass: string, sopInstance: string, messageId = 1): Buffer {
  const rest = Buffer.concat([
    el(0x0002, ui(sopClass)),
    el(0x0100, us(0x0001)),
    el(0x0110, us(messageId)),
    el(0x0700, us(0)),
    el(0x0800, us(0x0000)),
    el(0x1000, ui(sopInstance)),
  ]);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(rest.length);
  return Buffer.concat([el(0x0000, length), rest]);
}

/** A TCP connection that collects what the peer sends and says when it closed. */
export class RawPeer {
  readonly socket = new Socket();
  private received = Buffer.alloc(0);
  readonly closed: Promise<void>;

  private constructor() {
    this.socket.on('data', (d) => {
      this.received = Buffer.concat([this.received, d]);
    });
    this.socket.on('error', () => {});
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  /** Connects to 127.0.0.1:port, from localAddress when given (any 127.x.y.z is loopback on Linux). */
  static async connect(port: number, localAddress?: string): Promise<RawPeer> {
    const peer = new RawPeer();
    await new Promise<void>((resolve, reject) => {
      peer.socket.once('error', reject);
      peer.socket.connect({ port, host: '127.0.0.1', localAddress }, () => resolve());
    });
    return peer;
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next whole PDU from the peer (waits up to timeoutMs); undefined if the connection closed first. */
  async nextPDU(timeoutMs = 5000): Promise<{ type: number; body: Buffer } | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.received.length >= 6) {
        const length = this.received.readUInt32BE(2);
        if (this.received.length >= 6 + length) {
          const type = this.received[0];
          const body = this.received.subarray(6, 6 + length);
          this.received = this.received.subarray(6 + length);
          return { type, body };
        }
      }
      if (this.socket.destroyed || this.socket.readableEnded) return undefined;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('no PDU from the peer in time');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Presentation context results of an A-ASSOCIATE-AC body: id → [result, accepted transfer syntax]. */
export function contextResults(acBody: Buffer): Map<number, { result: number; transferSyntax: string }> {
  const out = new Map<number, { result: number; transferSyntax: string }>();
  for (let pos = 68; pos + 4 <= acBody.length; ) {
    const type = acBody[pos];
    const length = acBody.readUInt16BE(pos + 2);
    if (type === 0x21) {
      const id = acBody[pos + 4];
      const result = acBody[pos + 6];
      const sub = pos + 8;
      const tsLength = acBody.readUInt16BE(sub + 2);
      out.set(id, {
        result,
        transferSyntax: acBody.subarray(sub + 4, sub + 4 + tsLength).toString('latin1'),
      });
    }
    pos += 4 + length;
  }
  return out;
}

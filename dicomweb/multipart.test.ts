import { describe, expect, it } from 'vitest';
import { DicomwebError } from './status';
import { indexOfPortable, newBoundary, parseMultipart, writeMultipart } from './multipart';

const enc = new TextEncoder();

async function* chunks(buf: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function collect(body: Uint8Array, boundary: string, chunkSize: number) {
  const out: { headers: Record<string, string>; body: Uint8Array }[] = [];
  for await (const part of parseMultipart(chunks(body, chunkSize), boundary)) {
    const parts: Uint8Array[] = [];
    for await (const c of part.body) parts.push(c);
    out.push({ headers: part.headers, body: Buffer.concat(parts) });
  }
  return out;
}

async function toBytes(gen: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

describe('multipart/related', () => {
  const boundary = newBoundary();
  const a = new Uint8Array(70_000).map((_, i) => (i % 7 === 0 ? 13 : i % 11 === 0 ? 10 : i & 0xff));
  const b = enc.encode(`binary with a fake delimiter \r\n--${boundary.slice(0, -1)}x inside`);

  it('round-trips parts at every chunk size, including delimiters split across chunks', async () => {
    const body = await toBytes(
      writeMultipart(
        [
          { contentType: 'application/dicom', body: a },
          { contentType: 'application/dicom', headers: { 'Content-Location': '/x' }, body: b },
        ],
        boundary,
      ),
    );
    for (const size of [1, 2, 3, 7, 64, 1000, 65536, body.length]) {
      const parts = await collect(body, boundary, size);
      expect(parts.map((p) => p.headers['content-type'])).toEqual(['application/dicom', 'application/dicom']);
      expect(parts[1].headers['content-location']).toBe('/x');
      expect(Buffer.compare(Buffer.from(parts[0].body), Buffer.from(a))).toBe(0);
      expect(Buffer.from(parts[1].body).toString()).toBe(Buffer.from(b).toString());
    }
  });

  it('accepts a preamble, transport padding and parts without headers', async () => {
    const body = enc.encode(
      `preamble\r\n--${boundary}  \r\n\r\nAAA\r\n--${boundary}\r\nX-A: 1\r\n\r\nBB\r\n--${boundary}--\r\nepilogue`,
    );
    const parts = await collect(body, boundary, 5);
    expect(parts.map((p) => Buffer.from(p.body).toString())).toEqual(['AAA', 'BB']);
    expect(parts[1].headers).toEqual({ 'x-a': '1' });
  });

  it('finds the first delimiter after a preamble that mentions the boundary mid-line (RFC 2046 5.1.1)', async () => {
    const body = enc.encode(
      `This preamble mentions --${boundary} in its text\r\n--${boundary}\r\n\r\nAAA\r\n--${boundary}--\r\n`,
    );
    for (const size of [1, 3, 16, body.length]) {
      const parts = await collect(body, boundary, size);
      expect(
        parts.map((p) => Buffer.from(p.body).toString()),
        `chunks of ${size}`,
      ).toEqual(['AAA']);
    }
  });

  it('unfolds part headers continued on the next line', async () => {
    const body = enc.encode(
      `--${boundary}\r\nContent-Type: application/dicom;\r\n transfer-syntax=1.2.840.10008.1.2.1\r\n\r\nX\r\n--${boundary}--`,
    );
    const [part] = await collect(body, boundary, 7);
    expect(part.headers['content-type']).toBe('application/dicom; transfer-syntax=1.2.840.10008.1.2.1');
  });

  it('finds the next part when the consumer abandons a part after its first chunk', async () => {
    const body = await toBytes(
      writeMultipart(
        [
          { contentType: 'application/dicom', body: a },
          { contentType: 'application/dicom', body: b },
        ],
        boundary,
      ),
    );
    const seen: string[] = [];
    for await (const part of parseMultipart(chunks(body, 1024), boundary)) {
      for await (const c of part.body) {
        seen.push(c.length === b.length ? 'b' : 'a-start');
        break;
      }
    }
    expect(seen).toEqual(['a-start', 'b']);
  });

  it('rejects a body that does not start with the boundary', async () => {
    await expect(collect(enc.encode('--other\r\n\r\nx\r\n--other--'), boundary, 10)).rejects.toBeInstanceOf(
      DicomwebError,
    );
  });

  it('rejects a truncated body (no closing delimiter)', async () => {
    const body = enc.encode(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\nhalf of a file`);
    await expect(collect(body, boundary, 4)).rejects.toThrow(/truncated/);
  });

  it('rejects malformed part headers and invalid boundaries', async () => {
    await expect(
      collect(enc.encode(`--${boundary}\r\nno colon here\r\n\r\nx\r\n--${boundary}--`), boundary, 8),
    ).rejects.toThrow(/header/);
    await expect(collect(enc.encode('x'), 'bad"boundary', 8)).rejects.toThrow(/boundary/);
  });

  it("accepts boundaries longer than RFC 2046's 70 characters, as Orthanc's DICOMweb client sends", async () => {
    // Orthanc 1.10 / DICOMweb plugin 1.7, POST /dicom-web/servers/{name}/stow: two UUIDs, 73 characters.
    const uuid = '6cb534fc-4ae8-4266-af81-46ff4f1c06f7';
    const orthanc = `${uuid}-${uuid}`;
    expect(orthanc.length).toBe(73);
    const body = enc.encode(
      `--${orthanc}\r\nContent-Type: application/dicom\r\nContent-Length: 3\r\n\r\nabc\r\n--${orthanc}--\r\n`,
    );
    const parts = await collect(body, orthanc, 7);
    expect(parts).toHaveLength(1);
    expect(new TextDecoder().decode(parts[0].body)).toBe('abc');
    // Still bounded, and still RFC 2046 characters not ending in a space.
    await expect(collect(enc.encode('x'), 'b'.repeat(201), 8)).rejects.toThrow(/boundary/);
    await expect(collect(enc.encode('x'), 'ends in a space ', 8)).rejects.toThrow(/boundary/);
  });

  it('finds byte sequences the same way without Node Buffer (browser path)', () => {
    const hay = new Uint8Array(5000).map((_, i) => (i * 7919) % 13);
    for (const [start, len] of [
      [0, 3],
      [17, 5],
      [4990, 10],
      [1234, 1],
    ]) {
      const needle = hay.slice(start, start + len);
      expect(indexOfPortable(hay, needle)).toBe(Buffer.from(hay).indexOf(Buffer.from(needle)));
      expect(indexOfPortable(hay, needle, start + 1)).toBe(
        Buffer.from(hay).indexOf(Buffer.from(needle), start + 1),
      );
    }
    expect(indexOfPortable(hay, Uint8Array.of(99, 98))).toBe(-1);
  });
});

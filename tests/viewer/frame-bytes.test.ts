/** The frame body parser of the viewer's own frame requests (single-part and multipart/related). */
import { describe, expect, it } from 'vitest';
import { FRAME_ACCEPT, frameFromResponse } from '../../viewer/src/lib/frame-bytes';

const pixels = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff);

function multipart(partType: string, body: Uint8Array, boundary = 'b0undary'): Uint8Array {
  const head = new TextEncoder().encode(`--${boundary}\r\nContent-Type: ${partType}\r\n\r\n`);
  const tail = new TextEncoder().encode(`\r\n--${boundary}--\r\n`);
  const out = new Uint8Array(head.length + body.length + tail.length);
  out.set(head, 0);
  out.set(body, head.length);
  out.set(tail, head.length + body.length);
  return out;
}

describe('frameFromResponse', () => {
  it('takes a single-part body as it is, explicit VR little endian when no syntax is named', () => {
    const f = frameFromResponse('application/octet-stream', pixels);
    expect(f?.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(f?.pixelData).toBe(pixels);
    const g = frameFromResponse('application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.90', pixels);
    expect(g?.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.90');
  });

  it('finds the one part of a multipart/related body, even when the pixels hold the boundary text', () => {
    const tricky = new Uint8Array([...pixels, ...new TextEncoder().encode('\r\n--b0undary'), ...pixels]);
    const body = multipart('application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1', tricky);
    const f = frameFromResponse(
      'multipart/related; type="application/octet-stream"; boundary=b0undary',
      body,
    );
    expect(f?.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(Array.from(f?.pixelData ?? [])).toEqual(Array.from(tricky));
  });

  it('gives up when the transfer syntax cannot be told', () => {
    expect(frameFromResponse('image/x-unknown', pixels)).toBeUndefined();
    expect(frameFromResponse('multipart/related; type="application/octet-stream"', pixels)).toBeUndefined();
  });

  it('asks for single-part frames first and multipart/related as the fallback', () => {
    expect(FRAME_ACCEPT.split(',')[0].trim()).toBe('application/octet-stream; transfer-syntax=*');
    expect(FRAME_ACCEPT).toContain('multipart/related; type="application/octet-stream"; transfer-syntax=*');
  });
});

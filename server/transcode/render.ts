/**
 * Rendered images (PS3.18 8.3.5, 10.4.1.1.3): native pixels through the modality LUT (rescale), the VOI
 * LUT (the `window` parameter, else the file's window, else the frame's range), the photometric
 * interpretation (MONOCHROME1 inverted, YBR to RGB) and planar configuration, to 8-bit grey or RGB; then
 * scaled to the `viewport`, and written as PNG (node:zlib) or JPEG (the libjpeg-turbo codec).
 */
import { deflateSync } from 'node:zlib';
import type { ImageInfo } from '../../dicomweb/transfer-syntax';
import type { Pixels } from './codecs';

/** A PALETTE COLOR lookup table (PS3.3 C.7.6.3.1.5): first mapped value, entry bits, 16-bit LE entries. */
export interface Palette {
  first: number;
  bits: number;
  red: Uint8Array;
  green: Uint8Array;
  blue: Uint8Array;
}

export interface RenderParams {
  format: 'image/png' | 'image/jpeg';
  /** JPEG quality, 1-100 */
  quality: number;
  window?: { center: number; width: number; fn: 'linear' | 'linear-exact' | 'sigmoid' };
  /** output size (fitted, keeping the aspect ratio) and optional source region */
  viewport?: { vw: number; vh: number; sx?: number; sy?: number; sw?: number; sh?: number };
  /** the lookup tables of a PALETTE COLOR image */
  palette?: Palette;
  /** the Modality LUT Sequence's table (PS3.3 C.11.1), used instead of the rescale */
  modalityLut?: { first: number; values: Uint16Array };
}

/** An 8-bit image: 1 (grey) or 3 (RGB) samples per pixel, interleaved. */
export interface Raster {
  width: number;
  height: number;
  channels: 1 | 3;
  data: Uint8Array;
}

function sampleReader(image: ImageInfo, data: Uint8Array): (i: number) => number {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const bits = image.BitsStored;
  const signed = image.PixelRepresentation === 1;
  const mask = bits >= 32 ? 0xffffffff : (1 << bits) - 1;
  const sign = bits >= 32 ? 0 : 1 << (bits - 1);
  const ext = (v: number) => {
    if (bits >= 32) return signed ? v | 0 : v >>> 0;
    const m = v & mask;
    return signed && m & sign ? m - (mask + 1) : m;
  };
  if (image.BitsAllocated === 8) return (i) => ext(data[i]);
  if (image.BitsAllocated === 16) return (i) => ext(view.getUint16(i * 2, true));
  if (image.BitsAllocated === 32) return (i) => ext(view.getUint32(i * 4, true));
  throw new Error(`${image.BitsAllocated}-bit pixel data cannot be rendered`);
}

/** Grey levels (0-255) of a monochrome frame after modality LUT, VOI LUT and MONOCHROME1 inversion. */
export function renderMonochrome(
  image: ImageInfo,
  px: Pixels,
  params: Pick<RenderParams, 'window' | 'modalityLut'>,
): Raster {
  const n = image.Rows * image.Columns;
  const read = sampleReader(image, px.data);
  const slope = image.RescaleSlope || 1;
  const intercept = image.RescaleIntercept;
  const lut = params.modalityLut;
  const last = lut ? lut.values.length - 1 : 0;
  const modality = lut
    ? (x: number) => lut.values[Math.max(0, Math.min(last, x - lut.first))]
    : (x: number) => x * slope + intercept;
  const values = new Float64Array(n);
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const v = modality(read(i));
    values[i] = v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  let center: number;
  let width: number;
  let fn: string;
  if (params.window) {
    ({ center, width, fn } = params.window);
  } else if (image.WindowCenter !== undefined && image.WindowWidth !== undefined && image.WindowWidth > 0) {
    center = image.WindowCenter;
    width = image.WindowWidth;
    fn = (image.VOILUTFunction ?? 'LINEAR').toLowerCase().replace('_', '-');
  } else {
    // No VOI: the full range of this frame, exactly.
    center = (min + max) / 2;
    width = Math.max(max - min, 1);
    fn = 'linear-exact';
  }
  const out = new Uint8Array(n);
  const invert = image.PhotometricInterpretation === 'MONOCHROME1';
  for (let i = 0; i < n; i++) {
    const x = values[i];
    let y: number;
    if (fn === 'sigmoid') {
      y = 255 / (1 + Math.exp((-4 * (x - center)) / width));
    } else if (fn === 'linear-exact') {
      y = x <= center - width / 2 ? 0 : x > center + width / 2 ? 255 : ((x - center) / width + 0.5) * 255;
    } else {
      // PS3.3 C.11.2.1.2.1 (LINEAR)
      y =
        x <= center - 0.5 - (width - 1) / 2
          ? 0
          : x > center - 0.5 + (width - 1) / 2
            ? 255
            : ((x - (center - 0.5)) / (width - 1) + 0.5) * 255;
    }
    const g = Math.max(0, Math.min(255, Math.round(y)));
    out[i] = invert ? 255 - g : g;
  }
  return { width: image.Columns, height: image.Rows, channels: 1, data: out };
}

const clamp8 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** RGB (0-255) of a colour frame: planar or interleaved, RGB or YBR_FULL / YBR_FULL_422. */
export function renderColor(image: ImageInfo, px: Pixels): Raster {
  const n = image.Rows * image.Columns;
  const read = sampleReader({ ...image, PixelRepresentation: 0 }, px.data);
  const shift = Math.max(0, image.BitsStored - 8);
  const out = new Uint8Array(n * 3);
  const pi = px.photometric;
  if (pi === 'YBR_FULL_422' && image.BitsAllocated === 8) {
    // Native YBR_FULL_422: Y1 Y2 Cb Cr for each pair of pixels (PS3.3 C.7.6.3.1.2).
    for (let p = 0; p < n; p += 2) {
      const b = p * 2;
      const cb = px.data[b + 2];
      const cr = px.data[b + 3];
      for (let k = 0; k < 2 && p + k < n; k++) ybr(px.data[b + k], cb, cr, out, (p + k) * 3);
    }
    return { width: image.Columns, height: image.Rows, channels: 3, data: out };
  }
  const at = (i: number, c: number) => read(px.planar === 1 ? c * n + i : i * 3 + c) >> shift;
  for (let i = 0; i < n; i++) {
    if (pi.startsWith('YBR')) ybr(at(i, 0), at(i, 1), at(i, 2), out, i * 3);
    else {
      out[i * 3] = at(i, 0);
      out[i * 3 + 1] = at(i, 1);
      out[i * 3 + 2] = at(i, 2);
    }
  }
  return { width: image.Columns, height: image.Rows, channels: 3, data: out };
}

function ybr(y: number, cb: number, cr: number, out: Uint8Array, o: number) {
  out[o] = clamp8(y + 1.402 * (cr - 128));
  out[o + 1] = clamp8(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128));
  out[o + 2] = clamp8(y + 1.772 * (cb - 128));
}

/** The source region fitted into the viewport, keeping the aspect ratio (area average when shrinking). */
export function applyViewport(src: Raster, vp: RenderParams['viewport']): Raster {
  if (!vp) return src;
  const sx = Math.max(0, Math.min(src.width - 1, vp.sx ?? 0));
  const sy = Math.max(0, Math.min(src.height - 1, vp.sy ?? 0));
  const sw = Math.max(1, Math.min(src.width - sx, vp.sw ?? src.width - sx));
  const sh = Math.max(1, Math.min(src.height - sy, vp.sh ?? src.height - sy));
  const scale = Math.min(vp.vw / sw, vp.vh / sh);
  const width = Math.max(1, Math.round(sw * scale));
  const height = Math.max(1, Math.round(sh * scale));
  const ch = src.channels;
  const out = new Uint8Array(width * height * ch);
  for (let y = 0; y < height; y++) {
    const y0 = sy + Math.floor((y * sh) / height);
    const y1 = Math.max(y0 + 1, sy + Math.floor(((y + 1) * sh) / height));
    for (let x = 0; x < width; x++) {
      const x0 = sx + Math.floor((x * sw) / width);
      const x1 = Math.max(x0 + 1, sx + Math.floor(((x + 1) * sw) / width));
      for (let c = 0; c < ch; c++) {
        let sum = 0;
        for (let yy = y0; yy < y1; yy++)
          for (let xx = x0; xx < x1; xx++) sum += src.data[(yy * src.width + xx) * ch + c];
        out[(y * width + x) * ch + c] = Math.round(sum / ((y1 - y0) * (x1 - x0)));
      }
    }
  }
  return { width, height, channels: ch, data: out };
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** An 8-bit grey or RGB PNG (ISO/IEC 15948), filter type 0 on every row. */
export function encodePng(r: Raster): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(r.width, 0);
  ihdr.writeUInt32BE(r.height, 4);
  ihdr[8] = 8;
  ihdr[9] = r.channels === 1 ? 0 : 2;
  const stride = r.width * r.channels;
  const raw = Buffer.alloc((stride + 1) * r.height);
  for (let y = 0; y < r.height; y++)
    raw.set(r.data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** RGB of a PALETTE COLOR frame through its lookup tables. */
export function renderPalette(image: ImageInfo, px: Pixels, palette: Palette): Raster {
  const n = image.Rows * image.Columns;
  const read = sampleReader({ ...image, PixelRepresentation: 0 }, px.data);
  const luts = [palette.red, palette.green, palette.blue].map(
    (b) => new DataView(b.buffer, b.byteOffset, b.byteLength),
  );
  const entries = Math.min(...[palette.red, palette.green, palette.blue].map((b) => b.length >> 1));
  if (entries === 0) throw new Error('the palette lookup tables are empty');
  const shift = palette.bits > 8 ? palette.bits - 8 : 0;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const k = Math.max(0, Math.min(entries - 1, read(i) - palette.first));
    for (let c = 0; c < 3; c++) out[i * 3 + c] = luts[c].getUint16(k * 2, true) >> shift;
  }
  return { width: image.Columns, height: image.Rows, channels: 3, data: out };
}

/** The 8-bit raster of a decoded frame (monochrome, palette or colour). */
export function toRaster(
  image: ImageInfo,
  px: Pixels,
  params: Pick<RenderParams, 'window' | 'palette' | 'modalityLut'>,
): Raster {
  if (image.SamplesPerPixel === 1) {
    if (image.PhotometricInterpretation === 'PALETTE COLOR') {
      if (!params.palette) throw new Error('the PALETTE COLOR image has no usable lookup tables');
      return renderPalette(image, px, params.palette);
    }
    return renderMonochrome(image, px, params);
  }
  if (image.SamplesPerPixel === 3) return renderColor(image, px);
  throw new Error(`${image.SamplesPerPixel} samples per pixel cannot be rendered`);
}

/** Draws a series thumbnail from a decoded image with a 2D canvas (no WebGL context per thumbnail). */
import { Enums, imageLoader, type Types } from '@cornerstonejs/core';

export async function drawThumbnail(canvas: HTMLCanvasElement, imageId: string): Promise<void> {
  const image = (await imageLoader.loadAndCacheImage(imageId, {
    requestType: Enums.RequestType.Thumbnail,
    priority: 0,
  } as any)) as Types.IImage;
  const { width, height } = image;
  const pixels = image.getPixelData();
  const scale = Math.min(canvas.width / width, canvas.height / height);
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const off = new OffscreenCanvas(width, height);
  const octx = off.getContext('2d')!;
  const out = octx.createImageData(width, height);
  const n = width * height;
  if (image.color) {
    const comps = pixels.length / n;
    for (let i = 0; i < n; i++) {
      out.data[i * 4] = pixels[i * comps];
      out.data[i * 4 + 1] = pixels[i * comps + 1];
      out.data[i * 4 + 2] = pixels[i * comps + 2];
      out.data[i * 4 + 3] = 255;
    }
  } else {
    const slope = image.slope ?? 1;
    const intercept = image.intercept ?? 0;
    let wc = Array.isArray(image.windowCenter) ? image.windowCenter[0] : image.windowCenter;
    let ww = Array.isArray(image.windowWidth) ? image.windowWidth[0] : image.windowWidth;
    if (!(Number(ww) > 0)) {
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < n; i += 7) {
        const v = pixels[i];
        if (v < min) min = v;
        if (v > max) max = v;
      }
      // Stored pixel values may already be modality-scaled by the loader.
      const scaled = (image as any).preScale?.scaled;
      const lo = scaled ? min : min * slope + intercept;
      const hi = scaled ? max : max * slope + intercept;
      wc = (lo + hi) / 2;
      ww = Math.max(1, hi - lo);
    }
    const scaled = (image as any).preScale?.scaled;
    const lower = Number(wc) - Number(ww) / 2;
    const invert = (image as any).photometricInterpretation === 'MONOCHROME1' || image.invert;
    for (let i = 0; i < n; i++) {
      const mv = scaled ? pixels[i] : pixels[i] * slope + intercept;
      let g = ((mv - lower) / Number(ww)) * 255;
      g = g < 0 ? 0 : Math.min(g, 255);
      if (invert) g = 255 - g;
      out.data[i * 4] = g;
      out.data[i * 4 + 1] = g;
      out.data[i * 4 + 2] = g;
      out.data[i * 4 + 3] = 255;
    }
  }
  octx.putImageData(out, 0, 0);
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(off, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
}

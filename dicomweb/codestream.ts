/**
 * What a compressed frame's own codestream says about its decoded layout, where the DICOM attributes do
 * not (PS3.5 8.2.3: a JPEG-LS frame declares PlanarConfiguration 0 whatever its interleave mode). Pure.
 */

/**
 * For a JPEG-LS codestream (ISO 14495-1): whether its decoded samples come plane by plane (a frame of
 * several components coded one component per scan, interleave mode 0); undefined when it is not one.
 */
export function jpegLsPlanar(data: Uint8Array): boolean | undefined {
  if (data[0] !== 0xff || data[1] !== 0xd8) return undefined;
  let components = 0;
  let i = 2;
  while (i + 4 <= data.length) {
    if (data[i] !== 0xff) return undefined;
    const marker = data[i + 1];
    if (marker === 0xff) {
      i++;
      continue;
    }
    const length = (data[i + 2] << 8) | data[i + 3];
    if (marker === 0xf7) components = data[i + 9]; // SOF55: Ls P Y X Nf
    if (marker === 0xda) return components > 1 && data[i + 4] === 1; // SOS: Ls Ns ...
    i += 2 + length;
  }
  return undefined;
}

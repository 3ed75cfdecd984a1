/** dicom-parser in node, with the inflater it needs for Deflated Explicit VR Little Endian. */
import { inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';

/** A Part 10 file's data set (up to untilTag, when given); a deflated data set is inflated. */
export function parseDicom(bytes: Uint8Array, untilTag?: string): dicomParser.DataSet {
  return dicomParser.parseDicom(new Uint8Array(bytes), {
    untilTag,
    inflater: (arr: Uint8Array, pos: number) => {
      const inflated = inflateRawSync(arr.subarray(pos));
      const out = new Uint8Array(pos + inflated.length);
      out.set(arr.subarray(0, pos));
      out.set(inflated, pos);
      return out;
    },
  } as dicomParser.ParseDicomOptions);
}

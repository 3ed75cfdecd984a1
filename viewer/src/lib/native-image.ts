/**
 * The page's side of native-frame.ts: what the frame-fetch worker needs to decode an instance's
 * frames, and the Cornerstone image made from a frame it decoded, as dicom-image-loader's createImage
 * makes it for a greyscale frame (5.14; same attributes, same metadata modules read). The image then
 * costs the page's main thread no copy: the worker's pixels are used as they arrive.
 */
import { canRenderFloatTextures, Enums, metaData, type Types, utilities } from '@cornerstonejs/core';
import { type DecodedFrame, decodableNative, type NativeFrameParams } from './native-frame';

type Module = Record<string, any>;
const get = (module: string, imageId: string): Module => metaData.get(module, imageId) ?? {};

/**
 * What the worker needs to decode imageId's frame as the loader would, or undefined when the loader
 * must do it (colour, PET or RT dose scaling, other bit depths, metadata it does not expect).
 */
export function nativeFrameParams(imageId: string): NativeFrameParams | undefined {
  const pixel = get(Enums.MetadataModules.IMAGE_PIXEL, imageId);
  const modality = get(Enums.MetadataModules.GENERAL_SERIES, imageId).modality as string | undefined;
  if (!decodableNative({ ...pixel, modality })) return undefined;
  const lut = get(Enums.MetadataModules.MODALITY_LUT, imageId);
  const slope = lut.rescaleSlope ?? 1;
  const intercept = lut.rescaleIntercept ?? 0;
  if (!Number.isFinite(slope) || !Number.isFinite(intercept)) return undefined;
  if (typeof pixel.rows !== 'number' || typeof pixel.columns !== 'number') return undefined;
  return {
    rows: pixel.rows,
    columns: pixel.columns,
    bitsAllocated: pixel.bitsAllocated,
    bitsStored: pixel.bitsStored,
    pixelRepresentation: pixel.pixelRepresentation ?? 0,
    // The loader's getScalingParameters: no modality LUT at slope 1, intercept 0.
    rescale:
      slope === 1 && intercept === 0
        ? undefined
        : { rescaleSlope: slope, rescaleIntercept: intercept, modality },
    allowFloat: canRenderFloatTextures(),
  };
}

/** Images made here (for the browser tests: which path an image took). */
export const madeFromDecoded = new WeakSet<object>();

/** The Cornerstone image of a decoded greyscale frame (createImage and wadors loadImage's fields). */
export function imageFromDecoded(
  imageId: string,
  frame: DecodedFrame,
  transferSyntaxUid: string,
  loadTimeInMS: number,
): Types.IImage {
  const M = Enums.MetadataModules;
  const pixel = get(M.IMAGE_PIXEL, imageId);
  const plane = get(M.IMAGE_PLANE, imageId);
  const voi = get(M.VOI_LUT, imageId);
  const lut = get(M.MODALITY_LUT, imageId);
  const sop = get(M.SOP_COMMON, imageId);
  const calibration = get(M.CALIBRATION, imageId);
  const { pixelData } = frame;
  const imageFrame = {
    samplesPerPixel: pixel.samplesPerPixel,
    photometricInterpretation: pixel.photometricInterpretation,
    planarConfiguration: pixel.planarConfiguration,
    rows: pixel.rows,
    columns: pixel.columns,
    bitsAllocated: pixel.bitsAllocated,
    bitsStored: pixel.bitsStored,
    pixelRepresentation: pixel.pixelRepresentation,
    imageId,
    pixelData,
    pixelDataLength: pixelData.length,
    preScale: frame.preScale,
    smallestPixelValue: frame.min,
    largestPixelValue: frame.max,
    decodeTimeInMS: 0,
  };
  const voxelManager = utilities.VoxelManager.createImageVoxelManager({
    scalarData: pixelData as Types.PixelDataTypedArray,
    width: pixel.columns,
    height: pixel.rows,
    numberOfComponents: 1,
  });
  const image: Record<string, unknown> = {
    imageId,
    dataType: pixelData.constructor.name,
    color: false,
    calibration,
    columnPixelSpacing: plane.columnPixelSpacing,
    columns: pixel.columns,
    height: pixel.rows,
    preScale: frame.preScale,
    intercept: lut.rescaleIntercept ? lut.rescaleIntercept : 0,
    slope: lut.rescaleSlope ? lut.rescaleSlope : 1,
    invert: pixel.photometricInterpretation === 'MONOCHROME1',
    minPixelValue: frame.min,
    maxPixelValue: frame.max,
    rowPixelSpacing: plane.rowPixelSpacing,
    rows: pixel.rows,
    sizeInBytes: pixelData.byteLength,
    width: pixel.columns,
    windowCenter: voi.windowCenter ? voi.windowCenter[0] : undefined,
    windowWidth: voi.windowWidth ? voi.windowWidth[0] : undefined,
    voiLUTFunction: (voi.voiLUTFunction?.length && voi.voiLUTFunction[0]) || voi.voiLutFunction || undefined,
    decodeTimeInMS: 0,
    floatPixelData: undefined,
    imageFrame,
    voxelManager,
    rgba: false,
    getPixelData: () => imageFrame.pixelData,
    getCanvas: undefined,
    numberOfComponents: 1,
    loadTimeInMS,
    transferSyntaxUID: transferSyntaxUid,
    imageQualityStatus: Enums.ImageQualityStatus.FULL_RESOLUTION,
  };
  if (lut.modalityLUTSequence?.length > 0 && modalityLutForDisplay(sop.sopClassUID)) {
    image.modalityLUT = lut.modalityLUTSequence[0];
  }
  if (voi.voiLUTSequence?.length > 0) image.voiLUT = voi.voiLUTSequence[0];
  if (image.windowCenter === undefined || image.windowWidth === undefined) {
    const wl = utilities.windowLevel.toWindowLevel(frame.min, frame.max);
    image.windowWidth = wl.windowWidth;
    image.windowCenter = wl.windowCenter;
  }
  madeFromDecoded.add(image);
  return image as unknown as Types.IImage;
}

/** The loader's isModalityLUTForDisplay: not for XA and XRF (their LUT is applied by the VOI). */
function modalityLutForDisplay(sopClassUid: string | undefined): boolean {
  return sopClassUid !== '1.2.840.10008.5.1.4.1.1.12.1' && sopClassUid !== '1.2.840.10008.5.1.4.1.1.12.2.1';
}

/**
 * Cornerstone's ProbeTool, reading a stack viewport's value from the image shown.
 *
 * Cornerstone 5.x's ProbeTool._calculateCachedStats sets k of the probed index to the stack index of
 * the current image, then reads the voxel manager of getTargetImageData(), which for a stack viewport is
 * the current image's own: one slice, k = 0 only. On every image but the first it reads past the end
 * and the probe shows no value. The ROI tools (Length, Rectangle, Ellipse) use k as transformWorldToIndex
 * gives it, 0 on the image shown, and are right.
 *
 * Here a stack target's single-slice voxels are read at k = 0 whatever k the tool asks for; the index
 * kept in the stats still names the stack index. Volume targets are left as they are.
 */
import type { Types } from '@cornerstonejs/core';
import { ProbeTool } from '@cornerstonejs/tools';

export class StackProbeTool extends ProbeTool {
  static override toolName = ProbeTool.toolName;

  protected override getTargetImageData(targetId: string): ReturnType<ProbeTool['getTargetImageData']> {
    const image = super.getTargetImageData(targetId);
    const voxels = image?.voxelManager as Types.IVoxelManager<number> | undefined;
    if (!image || !voxels || !targetId.startsWith('imageId:') || image.dimensions[2] !== 1) return image;
    const onSlice: Partial<Types.IVoxelManager<number>> = {
      getAtIJKPoint: ([i, j]) => voxels.getAtIJK(i, j, 0),
    };
    // Everything else as Cornerstone gave it (its getters included): only the voxel read changes.
    return Object.create(image, {
      voxelManager: { value: Object.assign(Object.create(voxels), onSlice), enumerable: true },
    });
  }
}

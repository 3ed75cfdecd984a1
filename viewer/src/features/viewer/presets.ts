import { Enums, utilities } from '@cornerstonejs/core';
import type { MessageKey } from '../../i18n';

export interface VoiPreset {
  id: string;
  label: MessageKey;
  window: number;
  level: number;
  key: string;
}

/** CT window presets (HU). */
export const CT_PRESETS: VoiPreset[] = [
  { id: 'brain', label: 'preset.brain', window: 80, level: 40, key: '1' },
  { id: 'lung', label: 'preset.lung', window: 1500, level: -600, key: '2' },
  { id: 'bone', label: 'preset.bone', window: 2000, level: 300, key: '3' },
  { id: 'abdomen', label: 'preset.abdomen', window: 400, level: 40, key: '4' },
  { id: 'mediastinum', label: 'preset.mediastinum', window: 350, level: 50, key: '5' },
];

/**
 * Window width/centre → the VOI range Cornerstone uses, as it maps the file's own window: for LINEAR
 * (PS3.3 C.11.2.1.2.1) the range runs from c − 0.5 − (w − 1)/2 to c − 0.5 + (w − 1)/2, so W 80 L 40 is
 * 0 to 79; LINEAR_EXACT (C.11.2.1.3.2) is c ± w/2.
 */
export function toRange(
  window: number,
  level: number,
  fn: Enums.VOILUTFunctionType = Enums.VOILUTFunctionType.LINEAR,
): { lower: number; upper: number } {
  return utilities.windowLevel.toLowHighRange(window, level, fn);
}

/** The inverse of toRange: the window width/centre of a VOI range (what the overlay shows). */
export function toWindowLevel(
  range: { lower: number; upper: number },
  fn: Enums.VOILUTFunctionType = Enums.VOILUTFunctionType.LINEAR,
): { window: number; level: number } {
  if (fn === Enums.VOILUTFunctionType.LINEAR_EXACT)
    return { window: range.upper - range.lower, level: (range.upper + range.lower) / 2 };
  const { windowWidth, windowCenter } = utilities.windowLevel.toWindowLevel(range.lower, range.upper);
  return { window: windowWidth, level: windowCenter };
}

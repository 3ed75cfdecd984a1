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

/** Window/level → the range cornerstone uses (linear VOI LUT, PS3.3 C.11.2.1.2). */
export function toRange(window: number, level: number): { lower: number; upper: number } {
  return { lower: level - window / 2, upper: level + window / 2 };
}

export function toWindowLevel(range: { lower: number; upper: number }): { window: number; level: number } {
  return { window: range.upper - range.lower, level: (range.upper + range.lower) / 2 };
}

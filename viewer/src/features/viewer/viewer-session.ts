/** One rendering engine and one tool group for the viewer page. */
import { type Types as CoreTypes, getRenderingEngine, RenderingEngine } from '@cornerstonejs/core';
import {
  AngleTool,
  EllipticalROITool,
  Enums as ToolEnums,
  LengthTool,
  PanTool,
  RectangleROITool,
  StackScrollTool,
  ToolGroupManager,
  type Types as ToolTypes,
  WindowLevelTool,
  ZoomTool,
} from '@cornerstonejs/tools';
import { initCornerstone, toolConfigurations } from '../../lib/cornerstone';
import { StackProbeTool } from '../../lib/stack-probe-tool';

export const ENGINE_ID = 'pacs-engine';
export const TOOL_GROUP_ID = 'pacs-tools';
const { MouseBindings } = ToolEnums;

/** Tools that the left button can carry, in toolbar order. */
export const PRIMARY_TOOLS = {
  windowLevel: WindowLevelTool.toolName,
  scroll: StackScrollTool.toolName,
  pan: PanTool.toolName,
  zoom: ZoomTool.toolName,
  length: LengthTool.toolName,
  angle: AngleTool.toolName,
  rectangle: RectangleROITool.toolName,
  ellipse: EllipticalROITool.toolName,
  probe: StackProbeTool.toolName,
} as const;
export type PrimaryTool = keyof typeof PRIMARY_TOOLS;

export const MEASUREMENT_TOOLS = [
  LengthTool.toolName,
  AngleTool.toolName,
  RectangleROITool.toolName,
  EllipticalROITool.toolName,
  StackProbeTool.toolName,
];

export interface Session {
  engine: RenderingEngine;
  toolGroup: ToolTypes.IToolGroup;
}

let session: Session | null = null;

export function getSession(): Session {
  if (session) return session;
  initCornerstone();
  const engine = getRenderingEngine(ENGINE_ID) ?? new RenderingEngine(ENGINE_ID);
  ToolGroupManager.destroyToolGroup(TOOL_GROUP_ID);
  const toolGroup = ToolGroupManager.createToolGroup(TOOL_GROUP_ID)!;
  for (const name of Object.values(PRIMARY_TOOLS)) toolGroup.addTool(name, toolConfigurations[name] ?? {});
  session = { engine, toolGroup };
  setPrimaryTool(defaultPrimaryTool());
  return session;
}

/**
 * The tool of the left button and of one finger when the viewer opens: window/level at a PC; on a phone
 * or a tablet (a coarse primary pointer), scrolling through the images, which is what a patient or a
 * referring doctor opening a link does first (window/level stays one tap away in the toolbar).
 */
export function defaultPrimaryTool(): PrimaryTool {
  return typeof matchMedia === 'function' && matchMedia('(pointer: coarse)').matches
    ? 'scroll'
    : 'windowLevel';
}

/** Buttons and gestures a tool keeps when another one has the left button (and one finger). */
const SECONDARY_BINDINGS: Record<string, ToolTypes.IToolBinding[]> = {
  [StackScrollTool.toolName]: [{ mouseButton: MouseBindings.Wheel }],
  [PanTool.toolName]: [{ mouseButton: MouseBindings.Auxiliary }],
  // Two fingers pinch to zoom (ZoomTool's pinchToZoom).
  [ZoomTool.toolName]: [{ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 }],
};

export function setPrimaryTool(tool: PrimaryTool): void {
  const { toolGroup } = getSession();
  const name = PRIMARY_TOOLS[tool];
  for (const other of Object.values(PRIMARY_TOOLS)) {
    if (other === name) continue;
    // Measurements stay visible and editable; navigation tools keep their other buttons and gestures.
    // setToolActive adds bindings to those a tool had, so the left button is taken away first
    // (setToolPassive removes it): a tool chosen before must not keep it ahead of the new one.
    toolGroup.setToolPassive(other);
    const kept = SECONDARY_BINDINGS[other];
    if (kept) toolGroup.setToolActive(other, { bindings: kept });
  }
  toolGroup.setToolActive(name, {
    bindings: [{ mouseButton: MouseBindings.Primary }, ...(SECONDARY_BINDINGS[name] ?? [])],
  });
}

export function destroySession(): void {
  if (!session) return;
  ToolGroupManager.destroyToolGroup(TOOL_GROUP_ID);
  session.engine.destroy();
  session = null;
}

export function getStackViewport(viewportId: string): CoreTypes.IStackViewport | undefined {
  return session?.engine.getViewport(viewportId) as CoreTypes.IStackViewport | undefined;
}

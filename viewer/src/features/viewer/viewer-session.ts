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
  toolGroup.addTool(StackScrollTool.toolName);
  toolGroup.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  session = { engine, toolGroup };
  setPrimaryTool('windowLevel');
  return session;
}

export function setPrimaryTool(tool: PrimaryTool): void {
  const { toolGroup } = getSession();
  const name = PRIMARY_TOOLS[tool];
  for (const other of Object.values(PRIMARY_TOOLS)) {
    if (other !== name) {
      // Measurements stay visible and editable; navigation tools keep their other buttons.
      if (other === PanTool.toolName) {
        toolGroup.setToolActive(other, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      } else if (other === ZoomTool.toolName) {
        toolGroup.setToolActive(other, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
      } else {
        toolGroup.setToolPassive(other);
      }
    }
  }
  const bindings: { mouseButton: number }[] = [{ mouseButton: MouseBindings.Primary }];
  if (name === PanTool.toolName) bindings.push({ mouseButton: MouseBindings.Auxiliary });
  if (name === ZoomTool.toolName) bindings.push({ mouseButton: MouseBindings.Secondary });
  toolGroup.setToolActive(name, { bindings });
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

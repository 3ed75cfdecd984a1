/**
 * What each role may do. Every route of the route table (server/app.ts) names one rule with allow();
 * a route without one is refused by the route × role test.
 */
import type { Role } from '../../storage/access';

export type Rule =
  /** anyone, signed in or not (health check, login, opening a share link) */
  | 'public'
  /** any signed-in principal (who am I, sign out, change my password) */
  | 'signed-in'
  /** search and retrieve images; referring physicians and link viewers only within their studies */
  | 'read'
  /** store images (STOW-RS) */
  | 'store'
  /** delete studies, series, instances */
  | 'delete'
  /** create, list, print and revoke share links */
  | 'share'
  /** send a study to another DICOM node */
  | 'send'
  /** users, API tokens, the audit trail, the demo study, the DIMSE configuration */
  | 'admin';

export const PERMISSIONS: Record<Role, readonly Rule[]> = {
  administrator: ['public', 'signed-in', 'read', 'store', 'delete', 'share', 'send', 'admin'],
  radiologist: ['public', 'signed-in', 'read', 'share', 'send'],
  referring: ['public', 'signed-in', 'read'],
  modality: ['public', 'signed-in', 'store'],
  link: ['public', 'signed-in', 'read'],
};

/** Roles that read only some studies (the others read every study). */
export const SCOPED_ROLES: ReadonlySet<Role> = new Set(['referring', 'link']);

export function permits(role: Role, rule: Rule): boolean {
  return PERMISSIONS[role].includes(rule);
}

/**
 * Opens the security services of a server: sign-in and rules (auth.ts), the audit trail (audit.ts),
 * OpenID Connect sign-in when PACS_OIDC_ISSUER is set (oidc.ts).
 */
import { AccessStore } from '../../storage/access';
import type { Storage } from '../../storage/open';
import type { Security } from '../app';
import type { Config } from '../config';
import type { Logger } from '../log';
import { AuditTrail } from './audit';
import { Auth } from './auth';
import { openOidc } from './oidc';

export async function openSecurity(config: Config, storage: Storage, log: Logger): Promise<Security> {
  const access = new AccessStore(storage.index.sql());
  const auth = new Auth(config, access, storage.index, log);
  await auth.init();
  if (!config.auth.enabled)
    log.warn('PACS_AUTH=off: no sign-in, every request acts as an administrator (development only)');
  const oidc = await openOidc(config, auth, log);
  const audit = new AuditTrail(access, storage.index, log);
  audit.keepFor(config.auth.auditRetentionDays);
  return { auth, audit, oidc };
}

/** Administration (administrators only): the audit trail, users, API tokens, storage. */
import type { AdminPage as Page } from '../../app/router';
import { navigate } from '../../app/router';
import { type MessageKey, useT } from '../../i18n';
import { AuditPage } from './audit-page';
import { StoragePage } from './storage-page';
import { TokensPage } from './tokens-page';
import { UsersPage } from './users-page';
import './admin.css';

const TABS: { page: Page; label: MessageKey }[] = [
  { page: 'audit', label: 'admin.audit' },
  { page: 'users', label: 'admin.users' },
  { page: 'tokens', label: 'admin.tokens' },
  { page: 'storage', label: 'admin.storage' },
];

export function AdminPage({ page, username }: { page: Page; username: string }) {
  const t = useT();
  return (
    <div className="admin-page">
      <nav className="admin-tabs" aria-label={t('admin.title')}>
        {TABS.map((tab) => (
          <a
            key={tab.page}
            href={`/admin/${tab.page}`}
            aria-current={tab.page === page ? 'page' : undefined}
            onClick={(e) => {
              e.preventDefault();
              navigate(`/admin/${tab.page}`);
            }}
          >
            {t(tab.label)}
          </a>
        ))}
      </nav>
      {page === 'audit' && <AuditPage />}
      {page === 'users' && <UsersPage username={username} />}
      {page === 'tokens' && <TokensPage />}
      {page === 'storage' && <StoragePage />}
    </div>
  );
}

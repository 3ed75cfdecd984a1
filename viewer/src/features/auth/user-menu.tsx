/** The account menu in the header: who is signed in, with which role; password, administration, sign out. */
import { useEffect, useRef, useState } from 'react';
import { navigate } from '../../app/router';
import { type MessageKey, useT } from '../../i18n';
import type { Me } from '../../lib/server-api';
import { signOut } from '../../lib/session';
import './auth.css';

const ADMIN_PAGES: { path: string; label: MessageKey }[] = [
  { path: '/admin/audit', label: 'admin.audit' },
  { path: '/admin/users', label: 'admin.users' },
  { path: '/admin/tokens', label: 'admin.tokens' },
  { path: '/admin/storage', label: 'admin.storage' },
];

export function UserMenu({ me }: { me: Me }) {
  const t = useT();
  const [open, setOpen] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  const name = me.displayName || me.username;

  useEffect(() => {
    if (!open) return;
    const close = (e: Event) => {
      if (e instanceof KeyboardEvent ? e.key === 'Escape' : !ref.current?.contains(e.target as Node))
        setOpen(false);
    };
    document.addEventListener('pointerdown', close);
    document.addEventListener('keydown', close);
    return () => {
      document.removeEventListener('pointerdown', close);
      document.removeEventListener('keydown', close);
    };
  }, [open]);

  const go = (path: string) => {
    setOpen(false);
    navigate(path);
  };

  return (
    <div className="user-menu" ref={ref}>
      <button
        type="button"
        aria-haspopup="menu"
        aria-expanded={open}
        title={t('auth.userMenu', { name })}
        onClick={() => setOpen((o) => !o)}
        data-testid="user-menu"
      >
        <span className="user-name" translate="no">
          {name}
        </span>
        <span className="user-role">{t(`role.${me.role}` as MessageKey)}</span>
      </button>
      {open && (
        <div className="user-menu-list" role="menu">
          {me.role === 'administrator' &&
            ADMIN_PAGES.map((p) => (
              <button type="button" role="menuitem" key={p.path} onClick={() => go(p.path)}>
                {t(p.label)}
              </button>
            ))}
          {me.via === 'session' && (
            <button type="button" role="menuitem" onClick={() => go('/account/password')}>
              {t('auth.changePassword')}
            </button>
          )}
          <button type="button" role="menuitem" onClick={() => void signOut()} data-testid="sign-out">
            {t('auth.signOut')}
          </button>
        </div>
      )}
    </div>
  );
}

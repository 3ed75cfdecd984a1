/** Users: the list, a new user, and per user the role, disabling and a password reset. */
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { type MessageKey, useLanguage, useT } from '../../i18n';
import { formatDate } from '../../i18n/dates';
import { describeError } from '../../lib/describe-error';
import {
  ACCOUNT_ROLES,
  type AccountRole,
  createUser,
  errorStatus,
  listUsers,
  type UserAccount,
  type UserChange,
  updateUser,
} from '../../lib/server-api';
import { FormError } from '../../components/form-error';
import { DataTable } from '../../components/data-table';
import { Field } from '../../components/field';

const MIN_PASSWORD = 10;

interface NewUser {
  username: string;
  displayName: string;
  role: AccountRole;
  password: string;
  referringName: string;
  mustChangePassword: boolean;
}

const EMPTY: NewUser = {
  username: '',
  displayName: '',
  role: 'radiologist',
  password: '',
  referringName: '',
  mustChangePassword: true,
};

export function UsersPage({ username: me }: { username: string }) {
  const t = useT();
  useLanguage();
  const [users, setUsers] = useState<UserAccount[] | null>(null);
  const [form, setForm] = useState<NewUser>(EMPTY);
  const [message, setMessage] = useState('');
  const [error, setError] = useState('');
  const [resetting, setResetting] = useState<string | null>(null);
  const [newPassword, setNewPassword] = useState('');

  // biome-ignore lint/correctness/useExhaustiveDependencies: t only formats messages
  const reload = useCallback(async () => {
    try {
      setUsers(await listUsers());
    } catch (e) {
      setError(describeError(e, t));
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);

  const act = async (work: () => Promise<unknown>, done: string, name = '') => {
    setError('');
    setMessage('');
    try {
      await work();
      setMessage(done);
      await reload();
      return true;
    } catch (e) {
      const status = errorStatus(e);
      const text = e instanceof Error ? e.message : '';
      setError(
        status === 409
          ? t('users.exists', { name })
          : status === 400 && /^username/.test(text)
            ? t('users.usernameInvalid')
            : describeError(e, t),
      );
      return false;
    }
  };

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const username = form.username.trim();
    if (form.password && [...form.password].length < MIN_PASSWORD)
      return setError(t('auth.passwordTooShort'));
    const ok = await act(
      () =>
        createUser({
          username,
          role: form.role,
          displayName: form.displayName.trim() || undefined,
          referringName: form.referringName.trim() || undefined,
          password: form.password || undefined,
          mustChangePassword: form.mustChangePassword,
        }),
      t('users.created', { name: username }),
      username,
    );
    if (ok) setForm(EMPTY);
  };

  const change = (u: UserAccount, c: UserChange, done = t('users.updated', { name: u.username })) =>
    act(() => updateUser(u.username, c), done);

  const resetPassword = async (u: UserAccount) => {
    if ([...newPassword].length < MIN_PASSWORD) return setError(t('auth.passwordTooShort'));
    const ok = await change(
      u,
      { password: newPassword, mustChangePassword: true },
      t('users.passwordReset', { name: u.username }),
    );
    if (ok) {
      setResetting(null);
      setNewPassword('');
    }
  };

  const text = (name: 'username' | 'displayName' | 'password' | 'referringName') => ({
    name,
    value: form[name],
    onChange: (e: { target: { value: string } }) => setForm((f) => ({ ...f, [name]: e.target.value })),
  });

  return (
    <section className="admin-section" data-testid="users-page">
      <form className="admin-filters" onSubmit={create} data-testid="user-create">
        <Field
          label={t('users.username')}
          required
          autoCapitalize="none"
          autoComplete="off"
          {...text('username')}
        />
        <Field label={t('users.displayName')} autoComplete="off" {...text('displayName')} />
        <label>
          <span>{t('users.role')}</span>
          <select
            name="role"
            value={form.role}
            onChange={(e) => setForm((f) => ({ ...f, role: e.target.value as AccountRole }))}
          >
            {ACCOUNT_ROLES.map((r) => (
              <option key={r} value={r}>
                {t(`role.${r}` as MessageKey)}
              </option>
            ))}
          </select>
        </label>
        <Field
          label={t('users.password')}
          type="password"
          autoComplete="new-password"
          {...text('password')}
        />
        {form.role === 'referring' && (
          <Field label={t('users.referringName')} autoComplete="off" {...text('referringName')} />
        )}
        <label className="check">
          <input
            type="checkbox"
            name="mustChangePassword"
            checked={form.mustChangePassword}
            onChange={(e) => setForm((f) => ({ ...f, mustChangePassword: e.target.checked }))}
          />
          <span>{t('users.mustChange')}</span>
        </label>
        <div className="admin-buttons">
          <button type="submit" className="primary">
            {t('users.create')}
          </button>
        </div>
      </form>
      {message && (
        <p className="notice" role="status" data-testid="admin-message">
          {message}
        </p>
      )}
      <FormError message={error} testId="admin-error" />
      {users === null && !error && <p className="muted">{t('admin.loading')}</p>}
      {users && (
        <DataTable
          headers={[
            t('users.username'),
            t('users.displayName'),
            t('users.role'),
            t('users.status'),
            t('users.createdAt'),
            t('admin.actions'),
          ]}
        >
          {users.map((u) => {
            const self = u.username === me;
            return (
              <tr key={u.username} data-testid="user-row" data-username={u.username}>
                <td>
                  <span translate="no">{u.username}</span>
                  {self && <span className="muted"> ({t('users.you')})</span>}
                  {u.oidc && <span className="muted"> · {t('users.sso')}</span>}
                </td>
                <td translate="no">{u.displayName}</td>
                <td>
                  <select
                    aria-label={t('users.role')}
                    value={u.role}
                    disabled={self}
                    onChange={(e) => void change(u, { role: e.target.value as AccountRole })}
                  >
                    {ACCOUNT_ROLES.map((r) => (
                      <option key={r} value={r}>
                        {t(`role.${r}` as MessageKey)}
                      </option>
                    ))}
                  </select>
                </td>
                <td className={u.disabled ? 'error-text' : 'ok'}>
                  {u.disabled ? t('users.disabled') : t('users.active')}
                </td>
                <td>{formatDate(u.createdAt)}</td>
                <td>
                  <div className="actions">
                    {!self && (
                      <button
                        type="button"
                        onClick={() => void change(u, { disabled: !u.disabled })}
                        data-testid="user-toggle"
                      >
                        {u.disabled ? t('users.enable') : t('users.disable')}
                      </button>
                    )}
                    {resetting === u.username ? (
                      <form
                        className="inline-form"
                        onSubmit={(e) => {
                          e.preventDefault();
                          void resetPassword(u);
                        }}
                      >
                        <input
                          type="password"
                          autoComplete="new-password"
                          aria-label={t('users.newPassword')}
                          placeholder={t('users.newPassword')}
                          value={newPassword}
                          onChange={(e) => setNewPassword(e.target.value)}
                        />
                        <button type="submit">{t('users.save')}</button>
                        <button type="button" onClick={() => setResetting(null)}>
                          {t('auth.cancel')}
                        </button>
                      </form>
                    ) : (
                      <button
                        type="button"
                        onClick={() => {
                          setResetting(u.username);
                          setNewPassword('');
                        }}
                      >
                        {t('users.resetPassword')}
                      </button>
                    )}
                  </div>
                </td>
              </tr>
            );
          })}
        </DataTable>
      )}
    </section>
  );
}

/** API tokens for programs (a RIS, a modality gateway): create one (shown once), list, revoke. */
import { type FormEvent, useCallback, useEffect, useRef, useState } from 'react';
import { useLanguage, useT } from '../../i18n';
import { formatDate, formatDateTime } from '../../i18n/dates';
import { describeError } from '../../lib/describe-error';
import {
  type ApiToken,
  createToken,
  listTokens,
  listUsers,
  revokeToken,
  type UserAccount,
} from '../../lib/server-api';
import { FormError } from '../../components/form-error';
import { DataTable } from '../../components/data-table';
import { Field } from '../../components/field';

export function TokensPage() {
  const t = useT();
  useLanguage();
  const [tokens, setTokens] = useState<ApiToken[] | null>(null);
  const [users, setUsers] = useState<UserAccount[]>([]);
  const [username, setUsername] = useState('');
  const [label, setLabel] = useState('');
  const [days, setDays] = useState('');
  const [created, setCreated] = useState<{ id: string; token: string } | null>(null);
  const [copied, setCopied] = useState(false);
  const [error, setError] = useState('');
  const tokenInput = useRef<HTMLInputElement>(null);

  // biome-ignore lint/correctness/useExhaustiveDependencies: t only formats messages
  const reload = useCallback(async () => {
    try {
      const [list, people] = await Promise.all([listTokens(), listUsers()]);
      setTokens(list);
      setUsers(people);
      setUsername((u) => u || people.find((p) => !p.disabled)?.username || '');
    } catch (e) {
      setError(describeError(e, t));
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setError('');
    setCopied(false);
    const n = days.trim() ? Number(days) : undefined;
    if (n !== undefined && !(Number.isInteger(n) && n >= 1 && n <= 3650))
      return setError(t('share.daysInvalid'));
    try {
      const r = await createToken({ username, label: label.trim() || undefined, expiresInDays: n });
      setCreated({ id: r.id, token: r.token });
      setLabel('');
      await reload();
    } catch (err) {
      setError(describeError(err, t));
    }
  };

  const revoke = async (tok: ApiToken) => {
    if (!window.confirm(t('tokens.revokeConfirm'))) return;
    setError('');
    try {
      await revokeToken(tok.id);
      await reload();
    } catch (err) {
      setError(describeError(err, t));
    }
  };

  const copy = async () => {
    if (!created) return;
    try {
      await navigator.clipboard.writeText(created.token);
      setCopied(true);
    } catch {
      tokenInput.current?.select();
      setCopied(document.execCommand('copy'));
    }
  };

  const now = Date.now();
  return (
    <section className="admin-section" data-testid="tokens-page">
      <form className="admin-filters" onSubmit={create}>
        <label>
          <span>{t('tokens.user')}</span>
          <select name="username" value={username} onChange={(e) => setUsername(e.target.value)}>
            {users.map((u) => (
              <option key={u.username} value={u.username} translate="no">
                {u.username}
              </option>
            ))}
          </select>
        </label>
        <Field
          label={t('tokens.label')}
          name="label"
          value={label}
          onChange={(e) => setLabel(e.target.value)}
        />
        <Field
          label={t('tokens.days')}
          name="expiresInDays"
          type="number"
          min={1}
          max={3650}
          value={days}
          onChange={(e) => setDays(e.target.value)}
        />
        <div className="admin-buttons">
          <button type="submit" className="primary" disabled={!username}>
            {t('tokens.create')}
          </button>
        </div>
      </form>
      {created && (
        <div className="token-once" data-testid="token-created">
          <p>{t('tokens.shownOnce')}</p>
          <div className="row">
            <input
              ref={tokenInput}
              readOnly
              value={created.token}
              onFocus={(e) => e.target.select()}
              translate="no"
            />
            <button type="button" onClick={() => void copy()}>
              {copied ? t('share.copied') : t('tokens.copy')}
            </button>
          </div>
        </div>
      )}
      <FormError message={error} />
      {tokens === null && !error && <p className="muted">{t('admin.loading')}</p>}
      {tokens?.length === 0 && <p className="muted">{t('tokens.none')}</p>}
      {tokens && tokens.length > 0 && (
        <DataTable
          headers={[
            t('tokens.id'),
            t('tokens.user'),
            t('tokens.label'),
            t('tokens.created'),
            t('tokens.expires'),
            t('tokens.lastUsed'),
            t('tokens.status'),
            '',
          ]}
        >
          {tokens.map((tok) => {
            const status =
              tok.revokedAt !== null
                ? 'revoked'
                : tok.expiresAt !== null && tok.expiresAt <= now
                  ? 'expired'
                  : 'active';
            return (
              <tr key={tok.id} data-testid="token-row" data-status={status}>
                <td translate="no" className="uid">
                  {tok.id}
                </td>
                <td translate="no">{tok.username}</td>
                <td translate="no">{tok.label}</td>
                <td>{formatDate(tok.createdAt)}</td>
                <td>{tok.expiresAt === null ? '—' : formatDate(tok.expiresAt)}</td>
                <td>{tok.lastUsedAt === null ? t('admin.never') : formatDateTime(tok.lastUsedAt)}</td>
                <td className={status === 'active' ? 'ok' : 'muted'}>
                  {status === 'active'
                    ? t('tokens.active')
                    : status === 'revoked'
                      ? t('tokens.revoked')
                      : t('tokens.expired')}
                </td>
                <td>
                  {status === 'active' && (
                    <button type="button" onClick={() => void revoke(tok)}>
                      {t('tokens.revoke')}
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </DataTable>
      )}
    </section>
  );
}

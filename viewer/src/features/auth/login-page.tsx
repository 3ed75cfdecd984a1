/** The sign-in page: username and password, or the hospital's single sign-on when it is configured. */
import { type FormEvent, useState } from 'react';
import { useT } from '../../i18n';
import { describeError } from '../../lib/describe-error';
import { type AuthConfig, errorStatus, oidcLoginUrl } from '../../lib/server-api';
import { type SignedOutReason, signIn } from '../../lib/session';
import './auth.css';
import { FormError } from '../../components/form-error';
import { Field } from '../../components/field';

export function LoginPage({
  config,
  reason,
  notice,
}: {
  config: AuthConfig;
  reason?: SignedOutReason;
  /** Why sign-in is asked for here (a share link made for a named account). */
  notice?: string;
}) {
  const t = useT();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!username.trim() || !password) {
      setError(t('auth.missingFields'));
      return;
    }
    setBusy(true);
    setError('');
    try {
      await signIn(username.trim(), password);
    } catch (err) {
      const status = errorStatus(err);
      setError(
        status === 401
          ? t('auth.wrongPassword')
          : status === 429
            ? t('auth.rateLimited')
            : describeError(err, t),
      );
      setPassword('');
      setBusy(false);
    }
  };

  return (
    <div className="auth-page">
      <form className="auth-card" onSubmit={submit} data-testid="login-form">
        <h1>{t('auth.signInTitle')}</h1>
        {notice && (
          <p className="notice" role="status" data-testid="login-notice">
            {notice}
          </p>
        )}
        {reason === 'expired' && (
          <p className="notice" role="status" data-testid="session-expired">
            {t('auth.sessionExpired')}
          </p>
        )}
        <label>
          <span>{t('auth.username')}</span>
          <input
            name="username"
            autoComplete="username"
            autoCapitalize="none"
            spellCheck={false}
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            disabled={busy}
            // biome-ignore lint/a11y/noAutofocus: the one thing to do on this page
            autoFocus
          />
        </label>
        <Field
          label={t('auth.password')}
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          disabled={busy}
        />
        <FormError message={error} />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? t('auth.signingIn') : t('auth.signIn')}
        </button>
        {config.oidc.enabled && (
          <>
            <p className="or">{t('auth.or')}</p>
            <a className="button-link" href={oidcLoginUrl()} data-testid="oidc-login">
              {t('auth.signInWith', { label: config.oidc.label })}
            </a>
          </>
        )}
      </form>
    </div>
  );
}

/**
 * Changing one's own password: forced before anything else when the account must change it (the
 * first-start administrator's one-time password, a password reset by an administrator), or chosen
 * from the account menu.
 */
import { type FormEvent, useState } from 'react';
import { navigate } from '../../app/router';
import { useT } from '../../i18n';
import { describeError } from '../../lib/describe-error';
import { errorStatus } from '../../lib/server-api';
import { changeOwnPassword } from '../../lib/session';
import './auth.css';
import { FormError } from '../../components/form-error';
import { Field } from '../../components/field';

const MIN_LENGTH = 10;

export function PasswordPage({ forced }: { forced: boolean }) {
  const t = useT();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [again, setAgain] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [done, setDone] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setDone(false);
    if ([...next].length < MIN_LENGTH) return setError(t('auth.passwordTooShort'));
    if (next !== again) return setError(t('auth.passwordMismatch'));
    if (next === current) return setError(t('auth.passwordSame'));
    setBusy(true);
    setError('');
    try {
      await changeOwnPassword(current, next);
      setCurrent('');
      setNext('');
      setAgain('');
      setDone(true);
    } catch (err) {
      setError(errorStatus(err) === 401 ? t('auth.wrongCurrent') : describeError(err, t));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="auth-page">
      <form className="auth-card" onSubmit={submit} data-testid="password-form">
        <h1>{t('auth.changePasswordTitle')}</h1>
        {forced && <p className="notice">{t('auth.mustChange')}</p>}
        <Field
          label={t('auth.currentPassword')}
          name="currentPassword"
          type="password"
          autoComplete="current-password"
          value={current}
          onChange={(e) => setCurrent(e.target.value)}
          disabled={busy}
        />
        <Field
          label={t('auth.newPassword')}
          hint={t('auth.passwordRule')}
          name="newPassword"
          type="password"
          autoComplete="new-password"
          value={next}
          onChange={(e) => setNext(e.target.value)}
          disabled={busy}
        />
        <Field
          label={t('auth.confirmPassword')}
          name="confirmPassword"
          type="password"
          autoComplete="new-password"
          value={again}
          onChange={(e) => setAgain(e.target.value)}
          disabled={busy}
        />
        <FormError message={error} />
        {done && (
          <p className="notice" role="status" data-testid="password-changed">
            {t('auth.passwordChanged')}
          </p>
        )}
        <div className="row">
          <button type="submit" className="primary" disabled={busy}>
            {busy ? t('auth.saving') : t('auth.savePassword')}
          </button>
          {!forced && (
            <button type="button" onClick={() => navigate('/')}>
              {done ? t('auth.toStudies') : t('auth.cancel')}
            </button>
          )}
        </div>
      </form>
    </div>
  );
}

/**
 * The page a share link opens (/s/{token}), on a phone as often as not: checks the link, asks for the
 * patient's birth date or the PIN when the link wants one, opens it (a session that reads this one
 * study), then shows the study. An invalid, expired or withdrawn link says so in words.
 * A link made for a named account (a referring physician) opens only in that account's own session: not
 * signed in, the page asks for sign-in and opens the study afterwards; signed in as someone else, it
 * says the link is for another user.
 */
import { type FormEvent, useEffect, useState } from 'react';
import { navigate } from '../../app/router';
import { type T, useT } from '../../i18n';
import { formatDate } from '../../i18n/dates';
import { describeError } from '../../lib/describe-error';
import { describeLink, errorStatus, openLink, type ShareVerify } from '../../lib/server-api';
import { endLinkSession, refreshSession, rememberLink, useAuth } from '../../lib/session';
import { LoginPage } from '../auth/login-page';
import './share.css';
import { FormError } from '../../components/form-error';
import { Field } from '../../components/field';

type State =
  | { kind: 'checking' }
  | { kind: 'refused'; message: string }
  /** A link for a named account, and no account signed in: sign in first. */
  | { kind: 'signIn' }
  | {
      kind: 'ask';
      verify: ShareVerify;
      expiresAt: string;
      /** Made for a named account: opens in the signed-in account's own session. */
      named?: boolean;
      error?: string;
      busy?: boolean;
    };

/** Why a link cannot be used, from the server's answer. */
function refusal(e: unknown, t: T): string | undefined {
  const status = errorStatus(e);
  if (status === 404) return t('link.invalid');
  if (status === 429) return t('link.rateLimited');
  if (status === 410) {
    const message = e instanceof Error ? e.message : '';
    if (/revoked/i.test(message)) return t('link.revoked');
    if (/expired/i.test(message)) return t('link.expired');
    return t('link.ended');
  }
  return undefined;
}

export function LinkPage({ token }: { token: string }) {
  const t = useT();
  const auth = useAuth();
  const [state, setState] = useState<State>({ kind: 'checking' });
  const [birthDate, setBirthDate] = useState('');
  const [pin, setPin] = useState('');
  // Someone signed in with an account (a radiologist trying the link): opening it would replace that
  // session, so it waits for a click.
  const signedInAs =
    auth.status === 'signed-in' && auth.me.role !== 'link' ? auth.me.displayName || auth.me.username : '';
  const account = auth.status === 'signed-in' && auth.me.role !== 'link' ? auth.me.username : '';
  const known = auth.status !== 'loading';

  const open = async (
    verify: ShareVerify,
    expiresAt: string,
    answer: { birthDate?: string; pin?: string },
    named = false,
  ) => {
    setState({ kind: 'ask', verify, expiresAt, named, busy: true });
    try {
      const { studyInstanceUID } = await openLink(token, answer);
      if (!named) {
        // A link session replaced whatever this browser had.
        rememberLink(token);
        await refreshSession();
      }
      navigate(`/viewer/${studyInstanceUID}`, { replace: true });
    } catch (e) {
      const refused = refusal(e, t);
      if (refused) return setState({ kind: 'refused', message: refused });
      if (named && errorStatus(e) === 403)
        return setState({ kind: 'refused', message: t('link.otherUser', { name: signedInAs }) });
      if (named && errorStatus(e) === 401 && !account) return setState({ kind: 'signIn' });
      const error =
        errorStatus(e) === 401
          ? verify === 'pin'
            ? t('link.wrongPin')
            : t('link.wrongBirthdate')
          : describeError(e, t);
      setState({ kind: 'ask', verify, expiresAt, named, error });
    }
  };

  // biome-ignore lint/correctness/useExhaustiveDependencies: checked once per link, and again once someone signs in
  useEffect(() => {
    // Who is signed in decides what the link does: wait until that is known.
    if (!known) return;
    let cancelled = false;
    setState({ kind: 'checking' });
    describeLink(token).then(
      (link) => {
        if (cancelled) return;
        if (link.forNamedUser) {
          // Only the account it was made for opens it, in its own session (nothing is replaced).
          if (!account) setState({ kind: 'signIn' });
          else if (link.verify === 'none') void open('none', link.expiresAt, {}, true);
          else setState({ kind: 'ask', verify: link.verify, expiresAt: link.expiresAt, named: true });
        } else if (link.verify === 'none' && !signedInAs) void open('none', link.expiresAt, {});
        else setState({ kind: 'ask', verify: link.verify, expiresAt: link.expiresAt });
      },
      (e) => {
        if (!cancelled) setState({ kind: 'refused', message: refusal(e, t) ?? describeError(e, t) });
      },
    );
    return () => {
      cancelled = true;
    };
  }, [token, account, known]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (state.kind !== 'ask') return;
    const named = state.named ?? false;
    if (state.verify === 'birthdate') void open(state.verify, state.expiresAt, { birthDate }, named);
    else if (state.verify === 'pin') void open(state.verify, state.expiresAt, { pin }, named);
    else void open(state.verify, state.expiresAt, {}, named);
  };

  // Not signed in with an account: the sign-in form, on this page; once signed in, the link opens.
  if (state.kind === 'signIn' && auth.status === 'signed-out')
    return <LoginPage config={auth.config} notice={t('link.forNamedUser')} />;

  return (
    <div className="link-page" data-testid="link-page">
      <div className="link-card">
        <h1>{t('link.title')}</h1>
        {state.kind === 'checking' && <p className="muted">{t('link.checking')}</p>}
        {state.kind === 'refused' && (
          <p className="refused" role="alert" data-testid="link-refused">
            {state.message}
          </p>
        )}
        {state.kind === 'signIn' && (
          // A share link's session (of another link) is open in this browser: it ends, then sign-in.
          <div className="link-form">
            <p className="notice" data-testid="link-named-user">
              {t('link.forNamedUser')}
            </p>
            <button type="button" className="primary" onClick={() => void endLinkSession()}>
              {t('link.signInToOpen')}
            </button>
          </div>
        )}
        {state.kind === 'ask' && (
          <form onSubmit={submit} className="link-form">
            {signedInAs && !state.named && (
              <p className="notice">{t('link.signedInNote', { name: signedInAs })}</p>
            )}
            {state.verify === 'birthdate' && (
              <>
                <p>{t('link.askBirthdate')}</p>
                <Field
                  label={t('link.birthDate')}
                  type="date"
                  name="birthDate"
                  required
                  max={new Date().toISOString().slice(0, 10)}
                  value={birthDate}
                  onChange={(e) => setBirthDate(e.target.value)}
                  disabled={state.busy}
                />
              </>
            )}
            {state.verify === 'pin' && (
              <>
                <p>{t('link.askPin')}</p>
                <Field
                  label={t('link.pin')}
                  name="pin"
                  inputMode="numeric"
                  autoComplete="one-time-code"
                  pattern="\d{4,12}"
                  required
                  value={pin}
                  onChange={(e) => setPin(e.target.value.replace(/\D/g, ''))}
                  disabled={state.busy}
                />
              </>
            )}
            <FormError message={state.error} testId="link-error" />
            <button type="submit" className="primary" disabled={state.busy} data-testid="link-open">
              {state.busy ? t('link.opening') : t('link.open')}
            </button>
            <p className="muted">{t('link.validUntil', { date: formatDate(state.expiresAt) })}</p>
          </form>
        )}
      </div>
    </div>
  );
}

/**
 * Sharing a study from the viewer (radiologists and administrators): a link with an expiry, optionally
 * checked by the patient's birth date or a PIN, optionally for one referring physician; its QR code
 * and printable result slip (made by the server); the study's links, with their status, to revoke.
 */
import { type FormEvent, useCallback, useEffect, useRef, useState } from 'react';
import { type MessageKey, type T, useLanguage, useT } from '../../i18n';
import { formatDate } from '../../i18n/dates';
import { describeError } from '../../lib/describe-error';
import {
  createShare,
  errorStatus,
  listShares,
  type NewShare,
  revokeShare,
  type Share,
  type ShareVerify,
} from '../../lib/server-api';
import './share.css';
import { FormError } from '../../components/form-error';
import { DataTable } from '../../components/data-table';
import { Field } from '../../components/field';

const DEFAULT_DAYS = 30;

/** The toolbar button that opens the share dialog. */
export function ShareButton({ studyUID }: { studyUID: string }) {
  const t = useT();
  const [open, setOpen] = useState(false);
  return (
    <>
      <button type="button" onClick={() => setOpen(true)} data-testid="share-button">
        {t('share.button')}
      </button>
      {open && <ShareDialog studyUID={studyUID} onClose={() => setOpen(false)} />}
    </>
  );
}

function statusKey(s: Share): MessageKey | undefined {
  if (s.status === 'active') return 'share.statusActive';
  if (/revoked/i.test(s.status)) return 'share.statusRevoked';
  if (/expired/i.test(s.status)) return 'share.statusExpired';
  return undefined;
}

const VERIFY_LABEL: Record<ShareVerify, MessageKey> = {
  none: 'share.verifyNone',
  birthdate: 'share.verifyBirthdate',
  pin: 'share.verifyPin',
};

async function copyText(text: string, fallback: HTMLInputElement | null): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API outside a secure context (plain http on the hospital network): select and copy.
    if (!fallback) return false;
    fallback.select();
    return document.execCommand('copy');
  }
}

export function ShareDialog({ studyUID, onClose }: { studyUID: string; onClose(): void }) {
  const t = useT();
  useLanguage();
  const ref = useRef<HTMLDialogElement>(null);
  const [days, setDays] = useState(String(DEFAULT_DAYS));
  const [verify, setVerify] = useState<ShareVerify>('none');
  const [pin, setPin] = useState('');
  const [grantee, setGrantee] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [shares, setShares] = useState<Share[] | null>(null);
  const [listError, setListError] = useState('');
  const [shown, setShown] = useState<{ share: Share; fresh: boolean } | null>(null);

  useEffect(() => {
    ref.current?.showModal?.();
  }, []);

  // biome-ignore lint/correctness/useExhaustiveDependencies: t only formats messages
  const reload = useCallback(async () => {
    try {
      setShares(await listShares(studyUID));
      setListError('');
    } catch (e) {
      setListError(describeError(e, t));
    }
  }, [studyUID]);

  useEffect(() => {
    void reload();
  }, [reload]);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const n = Number(days);
    if (!Number.isInteger(n) || n < 1 || n > 3650) return setError(t('share.daysInvalid'));
    if (verify === 'pin' && !/^\d{4,12}$/.test(pin)) return setError(t('share.pinInvalid'));
    const request: NewShare = { expiresInDays: n, verify };
    if (verify === 'pin') request.pin = pin;
    if (grantee.trim()) request.grantee = grantee.trim();
    setBusy(true);
    setError('');
    try {
      const share = await createShare(studyUID, request);
      setShown({ share, fresh: true });
      setPin('');
      await reload();
    } catch (err) {
      const message = err instanceof Error ? err.message : '';
      setError(
        errorStatus(err) === 400 && /^grantee/.test(message)
          ? t('share.granteeInvalid')
          : errorStatus(err) === 400 && /birth date/.test(message)
            ? t('share.noBirthDate')
            : describeError(err, t),
      );
    } finally {
      setBusy(false);
    }
  };

  const revoke = async (s: Share) => {
    if (!window.confirm(t('share.revokeConfirm'))) return;
    try {
      await revokeShare(s.id);
      if (shown?.share.id === s.id) setShown(null);
      await reload();
    } catch (err) {
      setListError(describeError(err, t));
    }
  };

  return (
    // Keys typed here are not viewer shortcuts (Space would start the cine, Escape reset the view).
    <dialog
      ref={ref}
      className="share-dialog"
      onClose={onClose}
      onKeyDown={(e) => e.stopPropagation()}
      aria-label={t('share.title')}
      data-testid="share-dialog"
    >
      <div className="share-head">
        <h2>{t('share.title')}</h2>
        <button type="button" onClick={onClose} aria-label={t('app.close')} title={t('app.close')}>
          ✕
        </button>
      </div>
      <form className="share-form" onSubmit={create}>
        <Field
          label={t('share.expiresIn')}
          name="expiresInDays"
          type="number"
          min={1}
          max={3650}
          value={days}
          onChange={(e) => setDays(e.target.value)}
        />
        <fieldset>
          <legend>{t('share.verify')}</legend>
          {(['none', 'birthdate', 'pin'] as ShareVerify[]).map((v) => (
            <label key={v} className="radio">
              <input
                type="radio"
                name="verify"
                value={v}
                checked={verify === v}
                onChange={() => setVerify(v)}
              />
              <span>{t(VERIFY_LABEL[v])}</span>
            </label>
          ))}
          {verify === 'pin' && (
            <Field
              label={t('share.pin')}
              name="pin"
              inputMode="numeric"
              autoComplete="off"
              pattern="\d{4,12}"
              value={pin}
              onChange={(e) => setPin(e.target.value.replace(/\D/g, ''))}
            />
          )}
        </fieldset>
        <Field
          label={t('share.grantee')}
          name="grantee"
          autoComplete="off"
          autoCapitalize="none"
          value={grantee}
          onChange={(e) => setGrantee(e.target.value)}
        />
        <FormError message={error} />
        <button type="submit" className="primary" disabled={busy} data-testid="share-create">
          {busy ? t('share.creating') : t('share.create')}
        </button>
      </form>
      {shown && <ShareResult share={shown.share} fresh={shown.fresh} t={t} />}
      <section className="share-list">
        <h3>{t('share.existing')}</h3>
        <FormError message={listError} />
        {shares === null && !listError && <p className="muted">{t('share.loading')}</p>}
        {shares?.length === 0 && <p className="muted">{t('share.none')}</p>}
        {shares && shares.length > 0 && (
          <DataTable
            headers={[
              t('share.created'),
              t('share.expires'),
              t('share.check'),
              t('share.for'),
              t('share.by'),
              t('share.status'),
              '',
            ]}
          >
            {[...shares].reverse().map((s) => {
              const key = statusKey(s);
              return (
                <tr key={s.id} data-testid="share-row" data-share-id={s.id} data-status={s.status}>
                  <td>{formatDate(s.createdAt)}</td>
                  <td>{formatDate(s.expiresAt)}</td>
                  <td>{t(VERIFY_LABEL[s.verify])}</td>
                  <td translate={s.grantee ? 'no' : undefined}>{s.grantee ?? t('share.anyone')}</td>
                  <td translate="no">{s.createdBy}</td>
                  <td className={s.status === 'active' ? 'ok' : 'muted'}>
                    {key ? t(key) : <span translate="no">{s.status}</span>}
                  </td>
                  <td className="actions">
                    {s.status === 'active' && (
                      <>
                        <button type="button" onClick={() => setShown({ share: s, fresh: false })}>
                          {t('share.show')}
                        </button>
                        <button type="button" onClick={() => void revoke(s)} data-testid="share-revoke">
                          {t('share.revoke')}
                        </button>
                      </>
                    )}
                  </td>
                </tr>
              );
            })}
          </DataTable>
        )}
      </section>
    </dialog>
  );
}

function ShareResult({ share, fresh, t }: { share: Share; fresh: boolean; t: T }) {
  const input = useRef<HTMLInputElement>(null);
  const [copied, setCopied] = useState(false);
  useEffect(() => setCopied(false), []);
  return (
    <section className="share-result" data-testid="share-result" data-share-id={share.id}>
      <div className="share-link">
        <label>
          <span>{t('share.link')}</span>
          <input
            ref={input}
            readOnly
            value={share.url}
            onFocus={(e) => e.target.select()}
            data-testid="share-url"
            translate="no"
          />
        </label>
        <div className="row">
          <button
            type="button"
            onClick={async () => setCopied(await copyText(share.url, input.current))}
            data-testid="share-copy"
          >
            {copied ? t('share.copied') : t('share.copy')}
          </button>
          <button
            type="button"
            onClick={() => window.open(share.slip, '_blank', 'noopener')}
            data-testid="share-slip"
          >
            {t('share.printSlip')}
          </button>
        </div>
        {fresh && share.verify === 'pin' && <p className="notice">{t('share.pinNote')}</p>}
        <p className="muted">
          {t('share.expires')}: {formatDate(share.expiresAt)} · {t('share.check')}:{' '}
          {t(VERIFY_LABEL[share.verify])}
        </p>
      </div>
      <img
        className="share-qr"
        src={share.qrSvg}
        alt={t('share.qr')}
        width={176}
        height={176}
        data-testid="share-qr"
      />
    </section>
  );
}

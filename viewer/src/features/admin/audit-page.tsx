/** The audit trail: who did what, to which study, when, with what outcome; filters, pages, export. */
import { type FormEvent, useEffect, useState } from 'react';
import { type MessageKey, type T, useLanguage, useT } from '../../i18n';
import { formatDateTime } from '../../i18n/dates';
import { describeError } from '../../lib/describe-error';
import { type AuditEvent, type AuditFilter, auditExportUrl, queryAudit } from '../../lib/server-api';
import { FormError } from '../../components/form-error';
import { DataTable } from '../../components/data-table';
import { Field } from '../../components/field';

const PAGE_SIZE = 50;

interface Form {
  from: string;
  to: string;
  user: string;
  action: string;
  study: string;
  patient: string;
  result: string;
}

const EMPTY: Form = { from: '', to: '', user: '', action: '', study: '', patient: '', result: '' };

/** The API filter of the form: dates are whole local days. */
function toFilter(f: Form): AuditFilter {
  const day = (d: string, end: boolean) =>
    d ? new Date(`${d}T${end ? '23:59:59.999' : '00:00:00'}`).toISOString() : undefined;
  return {
    from: day(f.from, false),
    to: day(f.to, true),
    user: f.user.trim() || undefined,
    action: f.action.trim() || undefined,
    study: f.study.trim() || undefined,
    patient: f.patient.trim() || undefined,
    result: f.result || undefined,
  };
}

const ROLES = new Set(['administrator', 'radiologist', 'referring', 'modality', 'link']);

/** A role in words; other principals (the PACS_ADMIN_TOKEN, nobody signed in) as the server names them. */
function roleName(role: string | null, t: T) {
  if (!role) return null;
  return ROLES.has(role) ? t(`role.${role}` as MessageKey) : <span translate="no">{role}</span>;
}

export function AuditPage() {
  const t = useT();
  useLanguage();
  const [form, setForm] = useState<Form>(EMPTY);
  const [filter, setFilter] = useState<AuditFilter>({});
  const [before, setBefore] = useState<number | undefined>(undefined);
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [next, setNext] = useState<number | null>(null);
  const [error, setError] = useState('');

  // biome-ignore lint/correctness/useExhaustiveDependencies: t only formats messages
  useEffect(() => {
    const controller = new AbortController();
    setEvents(null);
    setError('');
    queryAudit({ ...filter, limit: PAGE_SIZE, before }, controller.signal).then(
      (r) => {
        setEvents(r.events);
        setNext(r.next);
      },
      (e) => {
        if ((e as Error).name !== 'AbortError') setError(describeError(e, t));
      },
    );
    return () => controller.abort();
  }, [filter, before]);

  const search = (e: FormEvent) => {
    e.preventDefault();
    setFilter(toFilter(form));
    setBefore(undefined);
  };
  const field = (name: keyof Form) => ({
    name,
    value: form[name],
    onChange: (e: { target: { value: string } }) => setForm((f) => ({ ...f, [name]: e.target.value })),
  });

  return (
    <section className="admin-section" data-testid="audit-page">
      <form className="admin-filters" onSubmit={search}>
        <Field label={t('audit.from')} type="date" {...field('from')} />
        <Field label={t('audit.to')} type="date" {...field('to')} />
        <Field label={t('audit.user')} autoCapitalize="none" {...field('user')} />
        <Field label={t('audit.action')} autoCapitalize="none" {...field('action')} />
        <Field label={t('audit.study')} {...field('study')} />
        <Field label={t('audit.patient')} {...field('patient')} />
        <label>
          <span>{t('audit.result')}</span>
          <select {...field('result')}>
            <option value="">{t('audit.any')}</option>
            <option value="success">{t('audit.success')}</option>
            <option value="failure">{t('audit.failure')}</option>
          </select>
        </label>
        <div className="admin-buttons">
          <button type="submit" className="primary">
            {t('audit.search')}
          </button>
          <button
            type="button"
            onClick={() => {
              setForm(EMPTY);
              setFilter({});
              setBefore(undefined);
            }}
          >
            {t('audit.clear')}
          </button>
          <a
            className="button-link"
            href={auditExportUrl(filter)}
            download="audit.jsonl"
            data-testid="audit-export"
          >
            {t('audit.export')}
          </a>
        </div>
      </form>
      <FormError message={error} />
      {events === null && !error && <p className="muted">{t('admin.loading')}</p>}
      {events?.length === 0 && <p className="muted">{t('audit.none')}</p>}
      {events && events.length > 0 && (
        <>
          <DataTable
            className="audit-table"
            headers={[
              t('audit.time'),
              t('audit.user'),
              t('audit.role'),
              t('audit.action'),
              t('audit.study'),
              t('audit.patient'),
              t('audit.status'),
              t('audit.source'),
              t('audit.detail'),
            ]}
          >
            {events.map((e) => (
              <tr key={e.id} data-testid="audit-row" data-action={e.action} className={e.outcome}>
                <td className="nowrap">{formatDateTime(e.time)}</td>
                <td translate="no">{e.user}</td>
                <td>{roleName(e.role, t)}</td>
                <td translate="no" className="nowrap">
                  {e.action}
                </td>
                <td translate="no" className="uid">
                  {e.study}
                </td>
                <td translate="no">{e.patient}</td>
                <td className={e.outcome === 'failure' ? 'error-text' : 'ok'}>{e.status}</td>
                <td translate="no">{e.source}</td>
                <td translate="no" className="detail">
                  {e.detail}
                </td>
              </tr>
            ))}
          </DataTable>
          <div className="pager">
            <span className="muted">{t('audit.count', { count: events.length })}</span>
            <button type="button" disabled={before === undefined} onClick={() => setBefore(undefined)}>
              {t('audit.newest')}
            </button>
            <button type="button" disabled={next === null} onClick={() => setBefore(next ?? undefined)}>
              {t('audit.older')}
            </button>
          </div>
        </>
      )}
    </section>
  );
}

/** Dates and times of the server API (ISO 8601 or milliseconds), in the reader's language. */
import { getLanguage, type Language } from './index';

const locale = (lang: Language) => (lang === 'vi' ? 'vi-VN' : 'en-GB');

function toDate(value: string | number): Date | undefined {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** 23/11/2026 (Vietnamese and British order), in local time. */
export function formatDate(value: string | number, lang: Language = getLanguage()): string {
  const d = toDate(value);
  return d ? d.toLocaleDateString(locale(lang), { day: '2-digit', month: '2-digit', year: 'numeric' }) : '';
}

/** 23/11/2026 14:05:09, in local time. */
export function formatDateTime(value: string | number, lang: Language = getLanguage()): string {
  const d = toDate(value);
  if (!d) return '';
  return `${formatDate(d.getTime(), lang)} ${d.toLocaleTimeString(locale(lang), { hour12: false })}`;
}

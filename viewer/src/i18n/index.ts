import { useSyncExternalStore } from 'react';
import { en, type MessageKey } from './en';
import { vi } from './vi';

export type Language = 'vi' | 'en';
export type { MessageKey };
const dictionaries: Record<Language, Record<MessageKey, string>> = { vi, en };
const STORAGE_KEY = 'pacs.language';

function initialLanguage(): Language {
  const fromUrl = new URLSearchParams(window.location.search).get('lang');
  if (fromUrl === 'vi' || fromUrl === 'en') return fromUrl;
  try {
    const stored = window.localStorage.getItem(STORAGE_KEY);
    if (stored === 'vi' || stored === 'en') return stored;
  } catch {
    /* private mode */
  }
  for (const l of navigator.languages ?? [navigator.language]) {
    const base = l.toLowerCase().split('-')[0];
    if (base === 'vi' || base === 'en') return base;
  }
  return 'en';
}

let current: Language = initialLanguage();
const listeners = new Set<() => void>();
document.documentElement.lang = current;

export function getLanguage(): Language {
  return current;
}

export function setLanguage(lang: Language): void {
  current = lang;
  document.documentElement.lang = lang;
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    /* private mode */
  }
  for (const l of listeners) l();
}

export function subscribeLanguage(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export type Params = Record<string, string | number>;

/** Translate outside React (cornerstone text callbacks). */
export function translate(key: MessageKey, params?: Params, lang: Language = current): string {
  let s = dictionaries[lang][key] ?? key;
  if (params) s = s.replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m));
  return s;
}

export type T = (key: MessageKey, params?: Params) => string;

export function useLanguage(): Language {
  return useSyncExternalStore(subscribeLanguage, getLanguage);
}

export function useT(): T {
  const lang = useLanguage();
  return (key, params) => translate(key, params, lang);
}

/** Formats a DICOM DA value: dd/mm/yyyy in Vietnamese, yyyy-mm-dd (ISO) in English. */
export function formatDicomDate(da: string, lang: Language = current): string {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(da.trim());
  if (!m) return da;
  return lang === 'vi' ? `${m[3]}/${m[2]}/${m[1]}` : `${m[1]}-${m[2]}-${m[3]}`;
}

/** Formats a DICOM TM value as hh:mm. */
export function formatDicomTime(tm: string): string {
  const m = /^(\d{2})(\d{2})?/.exec(tm.trim());
  if (!m) return tm;
  return `${m[1]}:${m[2] ?? '00'}`;
}

export function formatNumber(n: number, digits: number, lang: Language = current): string {
  return n.toLocaleString(lang === 'vi' ? 'vi-VN' : 'en-GB', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export { en, vi };

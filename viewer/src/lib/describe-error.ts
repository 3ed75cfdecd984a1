import type { T } from '../i18n';
import { DicomwebError } from './dicomweb-client';

/** An image whose pixel data could not be decoded (the codec failed, or gave no pixels). */
export class ImageDecodeError extends Error {
  constructor(detail: string) {
    super(`The pixel data could not be decoded (${detail})`);
    this.name = 'ImageDecodeError';
  }
}

/** Puts an error into words for the user. */
export function describeError(e: unknown, t: T): string {
  if (e instanceof ImageDecodeError) return t('error.imageDecode');
  if (e instanceof DicomwebError) {
    if (e.status === 0) return t('error.network');
    let message = e.message;
    try {
      const body = JSON.parse(message) as { message?: string; Message?: string; error?: string };
      message = body.message ?? body.Message ?? body.error ?? message;
    } catch {
      /* plain text */
    }
    return t('error.server', { status: e.status, message });
  }
  if (e instanceof XMLHttpRequest) {
    return e.status === 0
      ? t('error.network')
      : t('error.server', { status: e.status, message: e.statusText });
  }
  if (e instanceof Error) return e.message;
  if (e && typeof e === 'object' && 'message' in e) return String((e as { message: unknown }).message);
  return String(e);
}

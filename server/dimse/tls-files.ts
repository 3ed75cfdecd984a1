/**
 * DICOM TLS material that follows its files (PACS_DIMSE_TLS_CERT, _KEY, _CA, _CRL), so that a renewed
 * certificate or a new CRL is taken without a restart (which would cut the associations under way).
 *
 * When a connection comes to the TLS listener, and when an outgoing /tls association starts, the files'
 * modification times, sizes and inodes are compared with those of the files in use, at most every
 * TLS_FILES_CHECK_MS. On a change all of them are read again and checked as at start (config.ts
 * readDimseTls). When they pass, the next handshakes use them (the listener's setSecureContext, the
 * options of a new outgoing connection) and an info line says so; the associations already open go on.
 * When they fail (a file half written, a key that does not go with the certificate, a broken CRL), the
 * previous material stays in use, the error is logged once, and the files are read again at each check
 * until they pass.
 */
import { X509Certificate } from 'node:crypto';
import { type DimseConfig, type DimseTls, readDimseTls, tlsFilesSignature } from '../config';
import type { Logger } from '../log';

/** How often at most the files are looked at (on a new connection or association). */
export const TLS_FILES_CHECK_MS = 3_000;

interface Followed {
  material: DimseTls;
  /** The signature of the files material was read from. */
  signature: string;
  checkedAt: number;
  /** The signature and errors of the last failed reading, logged once. */
  failed?: string;
}

/** Per configuration (one per server; tests run several in one process). */
const followed = new WeakMap<DimseConfig, Followed>();

/**
 * The DICOM TLS material to use for a new handshake: the files as last read successfully, read again
 * first when they have changed (checked at most every TLS_FILES_CHECK_MS). The same object as long as
 * nothing changed, so a caller can tell when to replace a secure context.
 */
export function currentDimseTls(dimse: DimseConfig, log: Logger, now = Date.now()): DimseTls | undefined {
  const files = dimse.tlsFiles;
  if (!dimse.tls || !files) return dimse.tls;
  let state = followed.get(dimse);
  if (!state) {
    // Checked at once: the files may have changed since the configuration was read.
    state = { material: dimse.tls, signature: files.signature, checkedAt: Number.NEGATIVE_INFINITY };
    followed.set(dimse, state);
  }
  if (now - state.checkedAt < TLS_FILES_CHECK_MS) return state.material;
  state.checkedAt = now;
  const signature = tlsFilesSignature(files);
  if (signature === state.signature && state.failed === undefined) return state.material;
  const errors: string[] = [];
  const material = readDimseTls(files, errors, undefined);
  if (!material) {
    const failed = `${signature}\n${errors.join('\n')}`;
    if (failed !== state.failed)
      log.error('DICOM TLS files not reloaded: the previous certificate, key, CA and CRL stay in use', {
        errors,
      });
    state.failed = failed;
    return state.material;
  }
  state.material = material;
  state.signature = signature;
  state.failed = undefined;
  const certificate = new X509Certificate(material.cert);
  log.info('DICOM TLS files reloaded', {
    certificate: certificate.subject.split('\n').join(', '),
    validTo: certificate.validTo,
    crls: material.crl?.length ?? 0,
  });
  return material;
}

/**
 * Share links: a radiologist shares one study with a referring physician (an account) or with anyone
 * holding the link (a patient), with an expiry and optionally a birth date or PIN check. The link's QR
 * code and a printable result slip are made here; opening the link gives a read-only session for that
 * study only (server/auth/auth.ts), or, for a link made for an account, opens in that account's own
 * session. Listed in server/app.ts.
 */
import type { NextFunction, Request, Response } from 'express';
import QRCode from 'qrcode';
import { parseQuery } from '../../dicomweb/qido';
import { badRequest, DicomwebError, notFound, unsupportedMediaType } from '../../dicomweb/status';
import { isAcceptableUID } from '../../dicomweb/uids';
import type { Share, ShareVerify } from '../../storage/access';
import type { Index } from '../../storage/index';
import { type Auth, type Principal, shareProblem } from '../auth/auth';
import { hashPassword, randomToken } from '../auth/secrets';
import { publicOrigin } from './common';

const body = (req: Request) =>
  (typeof req.body === 'object' && req.body ? req.body : {}) as Record<string, unknown>;

function describe(auth: Auth, req: Request, s: Share) {
  const url = `${publicOrigin(req)}/s/${auth.shareToken(s.id)}`;
  return {
    id: s.id,
    studyInstanceUID: s.studyInstanceUID,
    url,
    grantee: s.grantee,
    verify: s.verify,
    createdBy: s.createdBy,
    createdAt: new Date(s.createdAt).toISOString(),
    expiresAt: new Date(s.expiresAt).toISOString(),
    revokedAt: s.revokedAt === null ? null : new Date(s.revokedAt).toISOString(),
    status: shareProblem(s, Date.now()) ?? 'active',
    qrSvg: `/api/shares/${s.id}/qr.svg`,
    qrPng: `/api/shares/${s.id}/qr.png`,
    slip: `/api/shares/${s.id}/slip`,
  };
}

type Json = Record<string, { vr?: string; Value?: unknown[] } | undefined>;

async function studyAttributes(index: Index, study: string): Promise<Json | undefined> {
  const q = parseQuery(
    'study',
    new URLSearchParams({ StudyInstanceUID: study, includefield: '00100030,00081030,00080080' }),
    {},
    {},
  );
  return (await index.search(q)).matches[0] as Json | undefined;
}

export function createShare(auth: Auth, index: Index) {
  return async (req: Request, res: Response) => {
    const study = req.params.study as string;
    if (!isAcceptableUID(study)) throw badRequest(`"${String(study).slice(0, 80)}" is not a valid UID`);
    const b = body(req);
    const days = b.expiresInDays ?? auth.config.auth.shareDays;
    if (!(typeof days === 'number' && Number.isInteger(days) && days >= 1 && days <= 3650))
      throw badRequest('expiresInDays: expected an integer from 1 to 3650');
    const verify = (b.verify ?? 'none') as ShareVerify;
    if (!['none', 'birthdate', 'pin'].includes(verify))
      throw badRequest('verify: expected none, birthdate or pin');
    let pinHash: string | null = null;
    if (verify === 'pin') {
      if (typeof b.pin !== 'string' || !/^\d{4,12}$/.test(b.pin))
        throw badRequest('pin: expected 4 to 12 digits');
      pinHash = await hashPassword(b.pin);
    }
    const attrs = await studyAttributes(index, study);
    if (!attrs) throw notFound(`study ${study} not found`);
    if (verify === 'birthdate' && typeof attrs['00100030']?.Value?.[0] !== 'string')
      throw badRequest('the study has no patient birth date to check: choose a PIN instead');
    let grantee: string | null = null;
    if (b.grantee !== undefined && b.grantee !== null && b.grantee !== '') {
      const user = typeof b.grantee === 'string' ? await auth.access.getUser(b.grantee) : undefined;
      if (user?.role !== 'referring')
        throw badRequest('grantee: expected the username of a referring physician');
      grantee = user.username;
    }
    const now = Date.now();
    const share: Share = {
      id: randomToken(16),
      studyInstanceUID: study,
      createdBy: (res.locals.principal as Principal).username,
      grantee,
      verify,
      pinHash,
      createdAt: now,
      expiresAt: now + days * 86_400_000,
      revokedAt: null,
    };
    await auth.access.createShare(share);
    res.locals.auditDetail = `share=${share.id} verify=${verify}${grantee ? ` grantee=${grantee}` : ''}`;
    res.status(201).json(describe(auth, req, share));
  };
}

export function listShares(auth: Auth) {
  return async (req: Request, res: Response) => {
    res.json((await auth.access.listShares(req.params.study as string)).map((s) => describe(auth, req, s)));
  };
}

async function shareById(auth: Auth, req: Request, res: Response): Promise<Share> {
  const share = await auth.access.getShare(req.params.id as string);
  if (!share) throw notFound(`no share ${req.params.id}`);
  res.locals.study = share.studyInstanceUID;
  return share;
}

export function revokeShare(auth: Auth) {
  return async (req: Request, res: Response) => {
    const share = await shareById(auth, req, res);
    await auth.access.revokeShare(share.id, Date.now());
    res.locals.auditDetail = `share=${share.id}`;
    res.status(204).end();
  };
}

export function shareQr(auth: Auth, format: 'svg' | 'png') {
  return async (req: Request, res: Response) => {
    const share = await shareById(auth, req, res);
    const url = describe(auth, req, share).url;
    res.setHeader('Cache-Control', 'no-store');
    if (format === 'svg') {
      res
        .type('image/svg+xml')
        .send(await QRCode.toString(url, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 }));
    } else {
      res
        .type('image/png')
        .send(await QRCode.toBuffer(url, { type: 'png', errorCorrectionLevel: 'M', margin: 2, scale: 8 }));
    }
  };
}

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );

const dicomDate = (v: unknown) =>
  typeof v === 'string' && /^\d{8}$/.test(v) ? `${v.slice(6, 8)}/${v.slice(4, 6)}/${v.slice(0, 4)}` : '';

function personName(v: unknown): string {
  const alphabetic = typeof v === 'object' && v ? (v as { Alphabetic?: string }).Alphabetic : undefined;
  return (alphabetic ?? '').split('^').filter(Boolean).join(' ');
}

/** The printable one-page result slip: patient, study, the link, its QR code, expiry and how to open it. */
export function shareSlip(auth: Auth, index: Index) {
  return async (req: Request, res: Response) => {
    const share = await shareById(auth, req, res);
    const problem = shareProblem(share, Date.now());
    if (problem) throw new DicomwebError(410, problem);
    const a = (await studyAttributes(index, share.studyInstanceUID)) ?? {};
    const v = (tag: string) => a[tag]?.Value?.[0];
    const { url } = describe(auth, req, share);
    const qr = await QRCode.toString(url, { type: 'svg', errorCorrectionLevel: 'M', margin: 1 });
    const rows: [string, string][] = [
      ['Bệnh nhân / Patient', personName(v('00100010'))],
      ['Mã bệnh nhân / Patient ID', String(v('00100020') ?? '')],
      ['Ngày sinh / Birth date', dicomDate(v('00100030'))],
      ['Ngày chụp / Study date', dicomDate(v('00080020'))],
      ['Mô tả / Description', String(v('00081030') ?? '')],
      ['Loại máy / Modality', ((a['00080061']?.Value ?? []) as string[]).join(', ')],
      ['Số truy cập / Accession', String(v('00080050') ?? '')],
    ];
    const how =
      share.verify === 'birthdate'
        ? "Nhập ngày sinh của bệnh nhân để mở. / Enter the patient's birth date to open."
        : share.verify === 'pin'
          ? 'Nhập mã PIN được cung cấp riêng để mở. / Enter the PIN given to you separately to open.'
          : '';
    const institution = String(v('00080080') ?? '');
    res.setHeader('Cache-Control', 'no-store');
    res.type('text/html; charset=utf-8').send(`<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>Phiếu kết quả / Result slip</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  @page { size: A4; margin: 18mm; }
  body { font-family: system-ui, sans-serif; color: #111; max-width: 170mm; margin: 0 auto; }
  h1 { font-size: 20pt; margin: 0 0 4mm; } h2 { font-size: 12pt; font-weight: normal; margin: 0 0 8mm; color: #444; }
  table { border-collapse: collapse; width: 100%; margin-bottom: 8mm; }
  td { padding: 2mm 0; border-bottom: 1px solid #ddd; vertical-align: top; } td:first-child { width: 45%; color: #444; }
  .qr { display: flex; gap: 8mm; align-items: center; } .qr svg { width: 50mm; height: 50mm; }
  .url { font-family: monospace; font-size: 9pt; word-break: break-all; }
</style></head><body>
<h1>Phiếu kết quả chẩn đoán hình ảnh</h1>
<h2>Imaging result slip${institution ? ` — ${escapeHtml(institution)}` : ''}</h2>
<table>${rows.map(([k, val]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(val)}</td></tr>`).join('')}</table>
<div class="qr">${qr}<div>
<p>Quét mã QR hoặc mở đường dẫn để xem hình ảnh. / Scan the QR code or open the link to view the images.</p>
<p class="url">${escapeHtml(url)}</p>
${how ? `<p>${escapeHtml(how)}</p>` : ''}
<p>Hết hạn / Expires: ${escapeHtml(dicomDate(new Date(share.expiresAt).toISOString().slice(0, 10).replace(/-/g, '')))}</p>
</div></div>
</body></html>`);
  };
}

// ── opening a link (public) ──

async function shareOfToken(auth: Auth, req: Request, res: Response): Promise<Share> {
  const share = await auth.shareOfToken(req.params.token as string);
  if (!share) {
    // Counted by the rate limit like a failed login: tokens cannot be guessed by trying.
    res.locals.auditDetail = 'unknown or forged link';
    throw notFound('this link is not valid');
  }
  res.locals.study = share.studyInstanceUID;
  res.locals.auditDetail = `share=${share.id}`;
  return share;
}

/** What the link page needs before opening: whether it is valid and what it asks for. */
export function describeLink(auth: Auth) {
  return async (req: Request, res: Response) => {
    const share = await shareOfToken(auth, req, res);
    const problem = shareProblem(share, Date.now());
    if (problem) throw new DicomwebError(410, problem);
    res.json({
      verify: share.verify,
      expiresAt: new Date(share.expiresAt).toISOString(),
      // Who it is for is not said: only that it needs a signed-in account.
      forNamedUser: share.grantee !== null,
    });
  };
}

/**
 * Opening a link replaces the browser's session: only a JSON request (which a page of another site
 * cannot send without CORS, which the archive refuses it) may do it, never a cross-site form post.
 */
export function requireJson(req: Request, _res: Response, next: NextFunction): void {
  if (req.is('application/json')) next();
  else
    next(
      unsupportedMediaType(
        `expected Content-Type: application/json (a JSON body, {} when the link asks for nothing), not ${req.headers['content-type'] ?? 'a request without a body'}`,
      ),
    );
}

export function openLink(auth: Auth) {
  return async (req: Request, res: Response) => {
    const share = await shareOfToken(auth, req, res);
    const b = body(req);
    const { csrf } = await auth.openShare(
      req,
      res,
      share,
      {
        birthDate: typeof b.birthDate === 'string' ? b.birthDate : undefined,
        pin: typeof b.pin === 'string' ? b.pin : undefined,
      },
      res.locals.principal as Principal | undefined,
    );
    res.json({ studyInstanceUID: share.studyInstanceUID, csrfToken: csrf });
  };
}

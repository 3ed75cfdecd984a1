/** Test-side DICOMweb helpers: a tiny multipart reader and typed fetches (the server is real). */

export type Json = Record<string, { vr: string; Value?: any[]; BulkDataURI?: string; InlineBinary?: string }>;

/** Splits a multipart/related response body into parts (test-side reference implementation, whole-buffer). */
export function splitMultipart(
  body: Buffer,
  contentType: string,
): { headers: Record<string, string>; body: Buffer }[] {
  const m = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!m) throw new Error(`no boundary in ${contentType}`);
  const delim = Buffer.from(`--${m[1]}`);
  const parts: { headers: Record<string, string>; body: Buffer }[] = [];
  let pos = body.indexOf(delim);
  while (pos !== -1) {
    const after = pos + delim.length;
    if (body.subarray(after, after + 2).toString() === '--') break;
    const headerEnd = body.indexOf('\r\n\r\n', after);
    const headers: Record<string, string> = {};
    for (const line of body
      .subarray(after + 2, headerEnd)
      .toString()
      .split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delim]), headerEnd + 4);
    if (next === -1) throw new Error('unterminated part');
    parts.push({ headers, body: body.subarray(headerEnd + 4, next) });
    pos = next + 2;
  }
  return parts;
}

export async function getMultipart(url: string, accept: string) {
  const res = await fetch(url, { headers: { Accept: accept } });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) return { status: res.status, parts: [], text: body.toString(), contentType: '' };
  const contentType = res.headers.get('content-type') ?? '';
  return { status: res.status, parts: splitMultipart(body, contentType), text: '', contentType };
}

export async function getJson<T = Json[]>(
  url: string,
): Promise<{ status: number; json: T; headers: Headers }> {
  const res = await fetch(url, { headers: { Accept: 'application/dicom+json' } });
  const text = await res.text();
  return { status: res.status, json: (text ? JSON.parse(text) : undefined) as T, headers: res.headers };
}

export const value = (ds: Json, tag: string): any => ds[tag]?.Value?.[0];

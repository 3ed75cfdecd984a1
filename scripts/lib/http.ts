/** Minimal keep-alive HTTP GET for the benchmark: times a request and streams (or collects) its body. */
import http from 'node:http';

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export interface GetResult {
  status: number;
  bytes: number;
  ms: number;
  contentType: string;
  /** Only when collect is true. */
  body?: Buffer;
}

export function httpGet(
  url: string,
  opts: { headers?: Record<string, string>; collect?: boolean; timeoutMs?: number } = {},
): Promise<GetResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: opts.headers, timeout: opts.timeoutMs ?? 600_000 }, (res) => {
      let bytes = 0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (opts.collect) chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          bytes,
          ms: performance.now() - t0,
          contentType: String(res.headers['content-type'] ?? ''),
          body: opts.collect ? Buffer.concat(chunks) : undefined,
        }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

export async function getJson<T = unknown>(url: string): Promise<{ status: number; ms: number; json: T }> {
  const r = await httpGet(url, { headers: { Accept: 'application/dicom+json' }, collect: true });
  const text = r.body!.toString('utf8');
  let json: T;
  try {
    json = (text.trim() ? JSON.parse(text) : []) as T;
  } catch {
    throw new Error(`GET ${url}: ${r.status}, not JSON: ${text.slice(0, 200)}`);
  }
  return { status: r.status, ms: r.ms, json };
}

/**
 * Chromium driven over its DevTools pipe (--remote-debugging-pipe: JSON messages separated by NUL on file
 * descriptors 3 and 4) with nothing enabled but what the caller sends. The benchmark uses it to measure
 * the viewer as a user's browser runs it: a Playwright-driven page has DevTools' Network domain enabled
 * on it and on its workers (Playwright needs it for its request events), so every response also goes
 * through DevTools' bookkeeping and sends events to the driver; on loopback that cost is a large part of
 * what would be measured (docs/viewer-benchmarks.md).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

export interface CdpBrowser {
  /** Sends one command (to a page's session when sessionId is given) and resolves with its result. */
  send<T = Record<string, unknown>>(
    method: string,
    params?: Record<string, unknown>,
    sessionId?: string,
  ): Promise<T>;
  /** Opens a page of width × height CSS pixels; its session id. */
  newPage(width: number, height: number): Promise<string>;
  /**
   * Evaluates an expression in the page (awaiting a promise it returns) and returns its value; retried
   * while the page is between documents.
   */
  evaluate<T>(sessionId: string, expression: string): Promise<T>;
  close(): Promise<void>;
}

export async function launchOverPipe(executable: string, args: string[]): Promise<CdpBrowser> {
  const profile = await mkdtemp(path.join(tmpdir(), 'pacs-chromium-'));
  const child: ChildProcess = spawn(
    executable,
    ['--headless', `--user-data-dir=${profile}`, '--remote-debugging-pipe', ...args, 'about:blank'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  const toBrowser = child.stdio[3] as Writable;
  const fromBrowser = child.stdio[4] as Readable;
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr = (stderr + String(d)).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let nextId = 0;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; method: string }>();
  const failAll = (why: string) => {
    for (const p of pending.values()) p.reject(new Error(`${p.method}: ${why}`));
    pending.clear();
  };
  child.once('exit', (code, signal) =>
    failAll(`Chromium exited (${code ?? signal}): ${stderr.slice(-1000)}`),
  );
  let buffered = '';
  fromBrowser.setEncoding('utf8');
  fromBrowser.on('data', (chunk: string) => {
    buffered += chunk;
    for (let end = buffered.indexOf('\0'); end >= 0; end = buffered.indexOf('\0')) {
      const message = JSON.parse(buffered.slice(0, end)) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
      };
      buffered = buffered.slice(end + 1);
      const p = message.id === undefined ? undefined : pending.get(message.id);
      if (!p || message.id === undefined) continue; // an event: none is enabled that matters here
      pending.delete(message.id);
      if (message.error) p.reject(new Error(`${p.method}: ${message.error.message}`));
      else p.resolve(message.result);
    }
  });

  const send = <T>(method: string, params: Record<string, unknown> = {}, sessionId?: string) =>
    new Promise<T>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject, method });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });

  const browser: CdpBrowser = {
    send,
    async newPage(width, height) {
      const { targetId } = await send<{ targetId: string }>('Target.createTarget', { url: 'about:blank' });
      const { sessionId } = await send<{ sessionId: string }>('Target.attachToTarget', {
        targetId,
        flatten: true,
      });
      await send(
        'Emulation.setDeviceMetricsOverride',
        { width, height, deviceScaleFactor: 1, mobile: false },
        sessionId,
      );
      return sessionId;
    },
    async evaluate<T>(sessionId: string, expression: string): Promise<T> {
      for (;;) {
        try {
          const r = await send<{
            result: { value?: T };
            exceptionDetails?: { exception?: { description?: string }; text?: string };
          }>('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }, sessionId);
          if (r.exceptionDetails) {
            const d = r.exceptionDetails;
            throw new Error(`in the page: ${d.exception?.description ?? d.text ?? 'exception'}`);
          }
          return r.result.value as T;
        } catch (err) {
          // The page was between documents (navigation): evaluate again in the new one.
          if (!/context was destroyed|Cannot find context|Execution context/i.test(String(err))) throw err;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        await send('Browser.close').catch(() => undefined);
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(profile, { recursive: true, force: true });
    },
  };
  await send('Browser.getVersion').catch(async (err: Error) => {
    await browser.close();
    throw new Error(`Chromium (${executable}) did not answer on its DevTools pipe: ${err.message}`);
  });
  return browser;
}

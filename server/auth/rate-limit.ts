/**
 * The counts of express-rate-limit (failed sign-ins, failed share link checks) kept in the index
 * database instead of each process's memory: every server process of PACS_WORKERS sees the same count
 * for an address, and a restart does not clear it.
 */
import {
  type ClientRateLimitInfo,
  type IncrementResponse,
  ipKeyGenerator,
  type Options,
  type Store,
} from 'express-rate-limit';
import type { AccessStore } from '../../storage/access';

/** The limiters of the server (app.ts): failed sign-ins, failed share link checks. */
export const RATE_LIMITERS = ['login', 'link'] as const;

/**
 * The names under which a client address is counted, one per limiter: the limiter's own key of the
 * address (express-rate-limit counts an IPv6 address by its /56 network).
 */
export function rateLimitNames(address: string): string[] {
  const key = ipKeyGenerator(address);
  return RATE_LIMITERS.map((limiter) => `${limiter}:${key}`);
}

/** How often ended windows are removed from the table (on the next hit after this long). */
const SWEEP_MS = 15 * 60_000;

export class SharedRateLimitStore implements Store {
  readonly localKeys = false;
  private windowMs = 15 * 60_000;
  private lastSweep = 0;

  constructor(
    private readonly access: AccessStore,
    readonly prefix: string,
  ) {}

  init(options: Options): void {
    this.windowMs = options.windowMs;
  }

  async increment(key: string): Promise<IncrementResponse> {
    const now = Date.now();
    if (now - this.lastSweep > SWEEP_MS) {
      this.lastSweep = now;
      void this.access.deleteExpiredRateLimits(now).catch(() => {});
    }
    const { hits, resetAt } = await this.access.hitRateLimit(this.name(key), now, this.windowMs);
    return { totalHits: hits, resetTime: new Date(resetAt) };
  }

  async get(key: string): Promise<ClientRateLimitInfo | undefined> {
    const r = await this.access.rateLimit(this.name(key), Date.now());
    return r && { totalHits: r.hits, resetTime: new Date(r.resetAt) };
  }

  async decrement(key: string): Promise<void> {
    await this.access.unhitRateLimit(this.name(key));
  }

  async resetKey(key: string): Promise<void> {
    await this.access.resetRateLimit(this.name(key));
  }

  private name(key: string): string {
    return `${this.prefix}:${key}`;
  }
}

/**
 * Passwords, tokens and their hashes, on node:crypto only: scrypt for passwords (memory-hard, in
 * OpenSSL), SHA-256 for random tokens (they carry 256 bits: a fast hash is enough), HMAC for share link
 * tokens, constant-time comparison everywhere.
 */
import { createHash, createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/** scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB, ~60-100 ms on one core), a 16-byte salt, 32-byte key. */
const N = 1 << 15;
const R = 8;
const P = 1;
const KEY = 32;
const MAXMEM = 64 * 1024 * 1024;

function scryptAsync(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, KEY, { N: n, r, p, maxmem: MAXMEM }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** "scrypt$N$r$p$salt$key" (base64url parts). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, N, R, P);
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const parts = stored?.split('$');
  if (parts?.length !== 6 || parts[0] !== 'scrypt') {
    // Spend the same time as a real check, so a missing user is not told apart by timing.
    await scryptAsync(password, Buffer.alloc(16), N, R, P);
    return false;
  }
  const [, n, r, p, salt, key] = parts;
  const expected = Buffer.from(key, 'base64url');
  const actual = await scryptAsync(password, Buffer.from(salt, 'base64url'), Number(n), Number(r), Number(p));
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** What a password must be: long enough to resist guessing; no other rules (NIST SP 800-63B). */
export function passwordProblem(password: string): string | undefined {
  if (typeof password !== 'string' || [...password].length < 10)
    return 'a password needs at least 10 characters';
  if (password.length > 512) return 'a password may have at most 512 characters';
  return undefined;
}

/** A random token: 32 bytes, base64url. */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** A readable one-time password (no look-alike characters). */
export function randomPassword(): string {
  const alphabet = 'abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = randomBytes(20);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

export function hmac(key: string, text: string): string {
  return createHmac('sha256', key).update(text).digest('base64url');
}

export function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A new API token: its id (shown in lists), the token (shown once) and the hash that is stored. */
export function newApiToken(): { id: string; token: string; tokenHash: string } {
  const token = `pacs_${randomToken(32)}`;
  return { id: randomToken(9), token, tokenHash: sha256(token) };
}

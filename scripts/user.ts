/**
 * `npm run user -- …`: users and API tokens, on the archive's own database (the same configuration as
 * the server: PACS_DATA_DIR or DATABASE_URL). Works while the server runs.
 *
 *   npm run user -- list
 *   npm run user -- add <username> --role <administrator|radiologist|referring|modality>
 *                       [--password <p> | --password -] [--name "Display name"] [--referring-name "Family^Given"]
 *   npm run user -- passwd <username> [--password <p> | --password -]
 *   npm run user -- set <username> [--role r] [--name n] [--referring-name n]
 *   npm run user -- disable|enable|delete <username>
 *   npm run user -- token create <username> [--label text] [--days n]
 *   npm run user -- token list [<username>]
 *   npm run user -- token revoke <id>
 *   npm run user -- locked
 *   npm run user -- unlock <client address> | share:<id>
 *
 * Without --password a random one-time password is printed (to be changed at first sign-in);
 * `--password -` reads it from standard input (keeps it out of the process list and shell history).
 * `locked` lists the client addresses with failed sign-ins or share link checks counted in the current
 * window, and the share links with wrong birth dates or PINs counted (share:<id>), marked LOCKED once
 * they reach PACS_LOGIN_RATE_LIMIT; `unlock` clears an address's or a link's counts before the window ends.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { referringNameProblem } from '../dicomweb/names';
import { rateLimitNames } from '../server/auth/rate-limit';
import { hashPassword, newApiToken, passwordProblem, randomPassword } from '../server/auth/secrets';
import { ConfigError, loadConfig, storageOptions } from '../server/config';
import { ACCOUNT_ROLES, AccessStore, type AccountRole } from '../storage/access';
import { openStorage } from '../storage/open';

class UsageError extends Error {}

function parse(argv: string[]) {
  const positional: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const value = argv[i + 1];
      if (value === undefined) throw new UsageError(`${a} needs a value`);
      flags[a.slice(2)] = value;
      i++;
    } else positional.push(a);
  }
  return { positional, flags };
}

/** --referring-name: matched as a whole against ReferringPhysicianName, so never a wildcard or a fragment; "" removes it. */
function referringNameOf(v: string | undefined): string | null | undefined {
  if (v === undefined) return undefined;
  const s = v.trim();
  if (s === '') return null;
  const problem = referringNameProblem(s);
  if (problem) throw new UsageError(`--referring-name: ${problem}`);
  return s;
}

function roleOf(v: string | undefined): AccountRole | undefined {
  if (v === undefined) return undefined;
  if (!ACCOUNT_ROLES.includes(v as AccountRole))
    throw new UsageError(`--role: expected one of ${ACCOUNT_ROLES.join(', ')}`);
  return v as AccountRole;
}

/** The password given (or read from stdin), checked; or a generated one-time password. */
function passwordOf(flag: string | undefined): { password: string; oneTime: boolean } {
  if (flag === undefined) return { password: randomPassword(), oneTime: true };
  const password = flag === '-' ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : flag;
  const problem = passwordProblem(password);
  if (problem) throw new UsageError(problem);
  return { password, oneTime: false };
}

export async function runUserCommand(
  argv: string[],
  out: (line: string) => void = console.log,
): Promise<void> {
  const { positional, flags } = parse(argv);
  const [command, ...rest] = positional;
  const config = loadConfig();
  const storage = await openStorage(storageOptions(config));
  const access = new AccessStore(storage.index.sql());
  const need = async (username: string | undefined) => {
    if (!username) throw new UsageError('a username is needed');
    const u = await access.getUser(username);
    if (!u) throw new UsageError(`no user ${username}`);
    return u;
  };
  try {
    switch (command) {
      case 'list': {
        for (const u of await access.listUsers())
          out(
            [
              u.username.padEnd(20),
              u.role.padEnd(14),
              u.disabled ? 'disabled' : 'active  ',
              u.oidcSubject ? 'oidc' : u.mustChangePassword ? 'one-time password' : '',
              u.displayName ?? '',
              u.referringName ? `referring name: ${u.referringName}` : '',
            ]
              .join(' ')
              .trimEnd(),
          );
        return;
      }
      case 'add': {
        const [username] = rest;
        if (!username || !/^[A-Za-z0-9._@-]{2,64}$/.test(username))
          throw new UsageError('username: 2 to 64 letters, digits, or . _ @ -');
        const role = roleOf(flags.role);
        if (!role) throw new UsageError('--role is needed');
        const { password, oneTime } = passwordOf(flags.password);
        const created = await access.createUser({
          username,
          role,
          displayName: flags.name ?? null,
          referringName: referringNameOf(flags['referring-name']) ?? null,
          oidcSubject: null,
          passwordHash: await hashPassword(password),
          mustChangePassword: oneTime,
          disabled: false,
        });
        if (!created) throw new UsageError(`the user ${username} already exists`);
        out(`created ${username} (${role})`);
        if (oneTime) out(`one-time password: ${password}`);
        return;
      }
      case 'passwd': {
        const u = await need(rest[0]);
        const { password, oneTime } = passwordOf(flags.password);
        await access.updateUser(u.username, {
          passwordHash: await hashPassword(password),
          mustChangePassword: oneTime,
        });
        await access.deleteSessionsOf(u.username);
        out(`password of ${u.username} changed; their sessions ended`);
        if (oneTime) out(`one-time password: ${password}`);
        return;
      }
      case 'set': {
        const u = await need(rest[0]);
        await access.updateUser(u.username, {
          role: roleOf(flags.role),
          displayName: flags.name,
          referringName: referringNameOf(flags['referring-name']),
        });
        if (flags.role) await access.deleteSessionsOf(u.username);
        out(`updated ${u.username}`);
        return;
      }
      case 'disable':
      case 'enable': {
        const u = await need(rest[0]);
        await access.updateUser(u.username, { disabled: command === 'disable' });
        if (command === 'disable') await access.deleteSessionsOf(u.username);
        out(`${u.username} ${command}d`);
        return;
      }
      case 'delete': {
        const u = await need(rest[0]);
        await access.deleteUser(u.username);
        out(`deleted ${u.username}`);
        return;
      }
      case 'token': {
        const [sub, arg] = rest;
        if (sub === 'create') {
          const u = await need(arg);
          const days = flags.days === undefined ? undefined : Number(flags.days);
          if (days !== undefined && !(Number.isInteger(days) && days > 0 && days <= 3650))
            throw new UsageError('--days: expected an integer from 1 to 3650');
          const { id, token, tokenHash } = newApiToken();
          await access.createToken({
            id,
            tokenHash,
            username: u.username,
            label: flags.label ?? null,
            expiresAt: days ? Date.now() + days * 86_400_000 : null,
          });
          out(`token ${id} for ${u.username} (${u.role}); shown once, keep it secret:`);
          out(token);
          return;
        }
        if (sub === 'list') {
          for (const t of await access.listTokens(arg))
            out(
              [
                t.id,
                t.username.padEnd(20),
                t.revokedAt ? 'revoked' : t.expiresAt && t.expiresAt < Date.now() ? 'expired' : 'active',
                t.expiresAt ? `expires ${new Date(t.expiresAt).toISOString().slice(0, 10)}` : '',
                t.label ?? '',
              ]
                .join(' ')
                .trimEnd(),
            );
          return;
        }
        if (sub === 'revoke') {
          if (!arg || !(await access.revokeToken(arg, Date.now())))
            throw new UsageError(`no active token ${arg}`);
          out(`token ${arg} revoked`);
          return;
        }
        throw new UsageError('token: create, list or revoke');
      }
      case 'locked': {
        // Both limiters (sign-in, share link checks) refuse an address once it reaches PACS_LOGIN_RATE_LIMIT.
        for (const r of await access.listRateLimits(Date.now()))
          out(
            `${r.name.padEnd(48)} ${String(r.hits).padStart(5)} failures, until ${new Date(r.resetAt).toISOString()}${
              r.hits >= config.auth.loginRateLimit ? '  LOCKED' : ''
            }`,
          );
        return;
      }
      case 'unlock': {
        const [address] = rest;
        // A share link locked by wrong birth dates or PINs (share:<id>, as `locked` lists it).
        if (address?.startsWith('share:')) {
          if (!(await access.resetRateLimit(address)))
            throw new UsageError(`no wrong answers counted for ${address}`);
          out(`unlocked ${address}`);
          return;
        }
        if (!address || isIP(address) === 0)
          throw new UsageError('unlock: a client address (IPv4 or IPv6), or share:<id>, is needed');
        let cleared = 0;
        for (const name of rateLimitNames(address)) if (await access.resetRateLimit(name)) cleared++;
        if (cleared === 0) throw new UsageError(`no failures counted for ${address}`);
        out(`unlocked ${address}`);
        return;
      }
      default:
        throw new UsageError(`unknown command ${command ?? '(none)'}`);
    }
  } finally {
    await storage.close();
  }
}

const USAGE = readFileSync(new URL(import.meta.url), 'utf8')
  .split('*/')[0]
  .split('\n')
  .slice(1)
  .map((l) => l.replace(/^ \* ?/, ''))
  .join('\n');

if (process.argv[1]?.endsWith('user.ts')) {
  runUserCommand(process.argv.slice(2)).catch((err) => {
    if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}

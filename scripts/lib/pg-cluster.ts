/**
 * A throwaway PostgreSQL cluster for tests and benchmarks: Debian's `postgresql` binaries
 * (/usr/lib/postgresql/<version>/bin, the highest version), initdb into a temporary folder, the server on
 * a free TCP port of 127.0.0.1 with its socket in that folder. fsync is off unless durable is asked: a
 * test cluster needs no durability, the benchmark asks for it. initdb and postgres refuse to run as root:
 * as root they run as the `postgres` user the Debian package creates. `bash scripts/install-test-deps.sh`
 * installs the package where it is missing.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './net';

export interface TestPostgres {
  /** The cluster's first database (`pacs`), as a postgres:// URL for the superuser. */
  url: string;
  port: number;
  /** The cluster's folder (data/, server.log, the Unix socket). */
  dir: string;
  /** A new empty database on the cluster; its URL. */
  createDatabase(): Promise<string>;
  /** Stops the server, keeping its data (to test what clients do while the database is down). */
  stop(): Promise<void>;
  /** Starts a stopped server again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops the server at once and removes its folder. */
  close(): Promise<void>;
  /** Undefined when the server answers on its TCP port now; else why not, with its last log lines. */
  fault(): Promise<string | undefined>;
}

const DEBIAN_ROOT = '/usr/lib/postgresql';

/** The folder holding initdb and pg_ctl: the highest Debian version, else the PATH. */
export function postgresBinDir(): string {
  const versions = existsSync(DEBIAN_ROOT)
    ? readdirSync(DEBIAN_ROOT)
        .filter((v) => existsSync(path.join(DEBIAN_ROOT, v, 'bin', 'initdb')))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  if (versions.length > 0) return path.join(DEBIAN_ROOT, versions[0], 'bin');
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  throw new Error(
    `PostgreSQL server binaries (initdb, pg_ctl) not found under ${DEBIAN_ROOT}/*/bin or on the PATH: run \`bash scripts/install-test-deps.sh\` (installs Debian's postgresql package)`,
  );
}

const asRoot = () => process.getuid?.() === 0;

/** Runs a PostgreSQL binary, as the postgres user when we are root. */
function runPg(bin: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const [cmd, argv] = asRoot() ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      argv,
      { timeout: timeoutMs, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${path.basename(bin)} failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

type Cluster = { pgCtl: string; data: string; dir: string };

/** Clusters still running in this process, stopped if it exits without closing them. */
const running = new Set<Cluster>();
let exitHook = false;

/** Stops a cluster at once (synchronously: usable in an exit handler) and forgets it. */
function stopNow(c: Cluster): void {
  running.delete(c);
  try {
    const args = ['-D', c.data, '-m', 'immediate', '-w', 'stop'];
    if (asRoot()) execFileSync('runuser', ['-u', 'postgres', '--', c.pgCtl, ...args], { stdio: 'ignore' });
    else execFileSync(c.pgCtl, args, { stdio: 'ignore' });
  } catch {
    // not running
  }
}

function stopAllAtExit(): void {
  for (const c of [...running]) {
    stopNow(c);
    rmSync(c.dir, { recursive: true, force: true });
  }
}

/**
 * durable: keep PostgreSQL's default fsync and full-page writes (benchmarks, so that a commit costs
 * what it costs in production); by default they are off, which a throwaway test cluster can afford.
 */
export async function startPostgres(opts: { durable?: boolean } = {}): Promise<TestPostgres> {
  const bin = postgresBinDir();
  const pgCtl = path.join(bin, 'pg_ctl');
  const id = (flag: string) => {
    try {
      return Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    } catch {
      throw new Error(
        "PostgreSQL refuses to run as root and there is no `postgres` user to run it as: run `bash scripts/install-test-deps.sh` (Debian's postgresql package creates it)",
      );
    }
  };
  const owner = asRoot() ? { uid: id('-u'), gid: id('-g') } : undefined;
  const dir = await mkdtemp(path.join(tmpdir(), 'pacs-pg-'));
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  if (owner) await chown(dir, owner.uid, owner.gid);
  const cluster: Cluster = { pgCtl, data, dir };
  running.add(cluster);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', stopAllAtExit);
  }
  let port = 0;
  const serverStart = async () => {
    const options = [
      `-p ${port}`,
      '-c listen_addresses=127.0.0.1',
      `-c unix_socket_directories=${dir}`,
      ...(opts.durable ? [] : ['-c fsync=off', '-c full_page_writes=off']),
      '-c max_connections=200',
    ].join(' ');
    try {
      await runPg(pgCtl, ['-D', data, '-l', log, '-w', '-t', '60', '-o', options, 'start']);
    } catch (err) {
      const tail = await readFile(log, 'utf8').catch(() => '');
      throw new Error(`${(err as Error).message}\n${tail.slice(-2000)}`);
    }
  };
  const superuser = (db: string) => `postgres://postgres@127.0.0.1:${port}/${db}`;
  try {
    await runPg(path.join(bin, 'initdb'), [
      '-D',
      data,
      '-A',
      'trust',
      '-U',
      'postgres',
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    // The port is free when chosen; another process may take it before the server binds: try again.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await serverStart();
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  } catch (err) {
    stopNow(cluster);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let n = 0;
  let queue: Promise<unknown> = Promise.resolve();
  /** CREATE DATABASE one at a time (concurrent copies of template1 can refuse each other). */
  const createDatabase = (): Promise<string> => {
    const name = `pacs_${++n}`;
    const p = queue.then(async () => {
      const client = new pg.Client({ connectionString: superuser('postgres') });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return superuser(name);
    });
    queue = p.catch(() => {});
    return p;
  };
  const url = await createDatabase();
  let closed = false;
  return {
    url,
    port,
    dir,
    createDatabase,
    stop: () => runPg(pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop']).then(() => {}),
    start: serverStart,
    async fault() {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
      try {
        await client.connect();
        await client.query('SELECT 1');
        return undefined;
      } catch (err) {
        const status = await runPg(pgCtl, ['-D', data, 'status']).catch((e: Error) => e.message);
        const tail = await readFile(log, 'utf8').catch(() => '');
        return `PostgreSQL does not answer on 127.0.0.1:${port} (${(err as Error).message}); pg_ctl status: ${status.trim()}\nits log:\n${tail.slice(-2000)}`;
      } finally {
        await client.end().catch(() => {});
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await runPg(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      running.delete(cluster);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

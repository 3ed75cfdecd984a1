/**
 * Nothing acknowledged is ever lost: the archive process is killed (SIGKILL, no shutdown code runs) in
 * the middle of heavy concurrent STOW-RS, at a random moment, and started again on the same storage.
 * Every instance acknowledged before the kill (in the ReferencedSOPSequence of a 200/202 response fully
 * received) must be retrievable byte for byte; every instance the archive lists must be one that was sent,
 * complete; fsck must find no index row without its blob. Blobs without an index row (instances being
 * stored at the kill, never acknowledged) are allowed and `fsck --repair` clears them.
 * Repeated at several moments (PACS_CRASH_ROUNDS, default 3) on filesystem + SQLite and on S3 + PostgreSQL
 * (PACS_RELIABILITY_STORAGE=all adds S3 + SQLite). PACS_RELIABILITY_SEED replays the same moments.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ArchiveProcess, startArchive } from '../../scripts/lib/archive-process';
import {
  listInstances,
  retrieveInstance,
  seededRandom,
  sleep,
  stowInstances,
  syntheticInstances,
  type TestInstance,
} from '../../scripts/lib/reliability';
import {
  fsckCommand,
  fsckStorage,
  reliabilityStorages,
  type StorageSetup,
} from '../helpers/reliability-storage';

const ROUNDS = Number(process.env.PACS_CRASH_ROUNDS ?? 3);
const SEED = Number(process.env.PACS_RELIABILITY_SEED ?? Date.now() % 1_000_000);
/** Concurrent STOW clients, instances per request, pixels per side (256: 130 kB per instance). */
const CLIENTS = 8;
const BATCH = 4;
const ROWS = 256;

for (const storage of reliabilityStorages()) {
  describe.skipIf(storage.unavailable)(`crash during STOW on ${storage.name}`, () => {
    if (storage.unavailable) console.warn(`crash test on ${storage.name} skipped: ${storage.unavailable}`);
    let setup: StorageSetup;
    let dataDir: string;
    let server: ArchiveProcess | undefined;
    beforeAll(async () => {
      setup = await storage.start();
      dataDir = await mkdtemp(path.join(tmpdir(), 'pacs-crash-'));
    });
    afterAll(async () => {
      await server?.stop();
      await setup?.close();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    it(
      `keeps every acknowledged instance through ${ROUNDS} kills (seed ${SEED})`,
      async () => {
        const random = seededRandom(SEED);
        const sent = new Map<string, TestInstance>();
        const acknowledged = new Set<string>();
        const rounds: string[] = [];
        for (let round = 1; round <= ROUNDS; round++) {
          server = await startArchive({ dataDir, env: setup.env });
          const target = server;
          let stopping = false;
          let inFlight = 0;
          let ackedThisRound = 0;
          const client = async () => {
            while (!stopping) {
              const batch = syntheticInstances(BATCH, { rows: ROWS });
              for (const i of batch) sent.set(i.sop, i);
              inFlight++;
              try {
                const r = await stowInstances(
                  target.dicomweb,
                  batch.map((i) => i.bytes),
                );
                if (r.status === 200 || r.status === 202) {
                  for (const sop of r.acknowledged) acknowledged.add(sop);
                  ackedThisRound += r.acknowledged.length;
                } else if (!stopping) {
                  throw new Error(`STOW answered ${r.status}: ${r.message ?? JSON.stringify(r.failed)}`);
                }
              } catch (err) {
                if (!stopping && target.exit() === undefined) throw err;
                return; // the server is gone: this request's fate is unknown, not acknowledged
              } finally {
                inFlight--;
              }
            }
          };
          const clients = Array.from({ length: CLIENTS }, client);
          // Kill once the archive is busy (the first answers are in), at a random moment after that.
          const started = Date.now();
          while (ackedThisRound < CLIENTS * BATCH && Date.now() - started < 30_000) await sleep(10);
          await sleep(random.int(1500));
          const pending = inFlight;
          stopping = true;
          await target.kill();
          await Promise.all(clients);
          expect(target.exit()?.signal).toBe('SIGKILL');

          server = await startArchive({ dataDir, env: setup.env });
          const listed = await listInstances(server.dicomweb);
          const listedSops = new Set(listed.map((i) => i.sop));
          const lost = [...acknowledged].filter((sop) => !listedSops.has(sop));
          expect(lost, `acknowledged but not listed after the crash (round ${round})`).toEqual([]);
          // Every listed instance, acknowledged or not, is one that was sent, byte for byte.
          const mismatched: string[] = [];
          for (let k = 0; k < listed.length; k += 16) {
            await Promise.all(
              listed.slice(k, k + 16).map(async (uids) => {
                const original = sent.get(uids.sop);
                const got = await retrieveInstance(server!.dicomweb, uids);
                if (!original || got.status !== 200 || !got.bytes.equals(Buffer.from(original.bytes)))
                  mismatched.push(`${uids.sop}: HTTP ${got.status}, ${got.bytes.length} bytes`);
              }),
            );
          }
          expect(mismatched, `instances not retrievable byte for byte (round ${round})`).toEqual([]);
          await server.stop();
          server = undefined;

          const check = await fsckStorage(dataDir, setup.env);
          expect(check.missing, `index rows whose blob is missing (round ${round})`).toEqual([]);
          const repaired = await fsckStorage(dataDir, setup.env, true);
          expect(repaired.missing).toEqual([]);
          rounds.push(
            `round ${round}: killed with ${pending} requests in flight; ${acknowledged.size} acknowledged so far, ` +
              `${listed.length} listed, ${check.orphans.length} orphan blobs (indexed ${repaired.indexed}, deleted ${repaired.deleted.length} by --repair)`,
          );
        }
        // What an operator runs: npm run fsck, on the repaired store, reports it consistent (exit 0).
        const cli = await fsckCommand(dataDir, setup.env);
        expect(cli.code, cli.output).toBe(0);
        const summary = cli.output
          .split('\n')
          .filter((l) => /^(blobs|indexed|index rows|deleted|not indexed)/.test(l));
        console.log(
          `crash on ${storage.name}, seed ${SEED}:\n  ${rounds.join('\n  ')}\n  fsck: ${summary.join(', ')}`,
        );
      },
      60_000 * ROUNDS,
    );
  });
}

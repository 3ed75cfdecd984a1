/**
 * npm run migrate-storage -- [--to-blob-store s3://bucket/prefix] [--to-database postgres://...]
 *                            [--to-data-dir folder]
 *
 * Copies every instance of the configured storage (the source: PACS_DATA_DIR, PACS_BLOB_STORE,
 * DATABASE_URL as the server reads them) into the target storage given by the options (each option
 * replaces that setting of the source; the rest, e.g. the AWS variables, is shared), with its HTJ2K
 * copy; when the index moves, the users, API tokens, share links, settings and audit trail go too. Stop the servers
 * first. Safe to run again after an interruption: what is already in the target is skipped.
 * Exit 0 when every instance is in the target, 1 otherwise.
 */
import { parseArgs } from 'node:util';
import { loadConfig, loadConfigWith } from '../server/config';
import { migrateStorage } from '../server/migrate';

async function main() {
  const { values } = parseArgs({
    options: {
      'to-blob-store': { type: 'string' },
      'to-database': { type: 'string' },
      'to-data-dir': { type: 'string' },
    },
  });
  const overrides: Record<string, string> = {};
  if (values['to-blob-store'] !== undefined) overrides.PACS_BLOB_STORE = values['to-blob-store'];
  if (values['to-database'] !== undefined) overrides.DATABASE_URL = values['to-database'];
  if (values['to-data-dir'] !== undefined) overrides.PACS_DATA_DIR = values['to-data-dir'];
  if (Object.keys(overrides).length === 0) {
    console.error(
      'usage: npm run migrate-storage -- [--to-blob-store s3://bucket/prefix] [--to-database postgres://...] [--to-data-dir folder]',
    );
    process.exit(2);
  }
  const from = loadConfig();
  const to = loadConfigWith(overrides);
  const started = Date.now();
  const tty = process.stderr.isTTY;
  const r = await migrateStorage(from, to, (p) => {
    if (tty) process.stderr.write(`\r${p.copied + p.skipped + p.failed.length}/${p.instances} instances`);
  });
  if (tty) process.stderr.write('\n');
  const seconds = (Date.now() - started) / 1000;
  console.log(
    [
      `instances in the source: ${r.instances}`,
      `copied: ${r.copied} (${(r.bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s)`,
      `already in the target: ${r.skipped}`,
      ...(r.htj2kCopies ? [`HTJ2K copies moved with them: ${r.htj2kCopies}`] : []),
      ...(r.access
        ? [
            `security state: ${r.access.users} users, ${r.access.apiTokens} API tokens, ${r.access.shares} share links, ${r.access.auditEvents} audit events (sessions are not moved: people sign in again)`,
          ]
        : []),
      ...(r.failed.length
        ? [`not moved: ${r.failed.length}`, ...r.failed.map((f) => `  ${f.sopInstanceUID}: ${f.reason}`)]
        : []),
    ].join('\n'),
  );
  process.exit(r.failed.length > 0 ? 1 : 0);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

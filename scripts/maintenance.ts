/**
 * npm run reindex  — rebuild the index from the blob store alone (stop the server first).
 * npm run fsck     — report blobs without index rows and rows without blobs; `-- --repair` fixes both.
 * Both read the same configuration as the server (PACS_DATA_DIR, ...). Exit 1 when something is wrong,
 * 2 when a server of this host is running on the data folder (reindex and fsck --repair refuse).
 */
import { loadConfig } from '../server/config';
import { fsck, type MaintenanceReport, reindex, ServerRunningError } from '../server/maintenance';

function summary(command: 'reindex' | 'fsck', r: MaintenanceReport, repair = false): string {
  const lines =
    command === 'reindex'
      ? [`blobs read: ${r.blobs}`, `instances indexed: ${r.indexed}`]
      : [`blobs: ${r.blobs}`, `index rows: ${r.rows ?? 0}`];
  if (r.copy) lines.push(`the database before the reindex: ${r.copy}`);
  if (r.orphans.length)
    lines.push(`blobs without an index row: ${r.orphans.length}`, ...r.orphans.map((k) => `  ${k}`));
  if (repair) lines.push(`indexed from those blobs: ${r.indexed}`);
  if (r.deleted.length)
    lines.push(
      `deleted (not a valid instance, or a duplicate): ${r.deleted.length}`,
      ...r.deleted.map((k) => `  ${k}`),
    );
  if (r.missing.length)
    lines.push(`index rows whose blob is missing: ${r.missing.length}`, ...r.missing.map((k) => `  ${k}`));
  if (r.removedRows.length)
    lines.push(
      `removed from the index (blob missing; resend these instances): ${r.removedRows.length}`,
      ...r.removedRows.map((k) => `  ${k}`),
    );
  if (r.skipped.length)
    lines.push(`not indexed: ${r.skipped.length}`, ...r.skipped.map((s) => `  ${s.key}: ${s.reason}`));
  if (command === 'fsck' && !r.orphans.length && !r.missing.length) lines.push('blobs and index agree');
  return lines.join('\n');
}

async function main() {
  const [command, ...args] = process.argv.slice(2);
  const config = loadConfig();
  if (command === 'reindex') {
    const r = await reindex(config, (n) => {
      if (process.stderr.isTTY && n % 100 === 0) process.stderr.write(`\r${n} blobs read`);
    });
    if (process.stderr.isTTY) process.stderr.write('\n');
    console.log(summary('reindex', r));
    process.exit(r.skipped.length > 0 ? 1 : 0);
  } else if (command === 'fsck') {
    const repair = args.includes('--repair');
    const r = await fsck(config, { repair });
    console.log(summary('fsck', r, repair));
    const bad = !repair && (r.missing.length > 0 || r.orphans.length > 0);
    process.exit(bad ? 1 : 0);
  } else {
    console.error('usage: tsx scripts/maintenance.ts reindex | fsck [--repair]');
    process.exit(2);
  }
}

main().catch((err) => {
  if (err instanceof ServerRunningError) {
    console.error(err.message);
    process.exit(2);
  }
  console.error(err?.stack ?? err);
  process.exit(1);
});

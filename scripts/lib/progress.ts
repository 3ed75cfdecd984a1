/** A one-line progress bar on a TTY; plain, rate-limited progress lines otherwise. Writes to stderr. */

export interface ProgressState {
  done: number;
  total: number;
  bytes: number;
  totalBytes: number;
  detail?: string;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export class Progress {
  private readonly started = performance.now();
  private lastPlain = 0;
  private lastTty = 0;
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  update(s: ProgressState, force = false): void {
    if (!this.enabled) return;
    const now = performance.now();
    const elapsed = (now - this.started) / 1000;
    const pct = s.total > 0 ? Math.min(1, s.done / s.total) : 1;
    const rate = elapsed > 0 ? s.bytes / elapsed : 0;
    const text = `${s.done}/${s.total} files, ${formatBytes(s.bytes)}/${formatBytes(s.totalBytes)}, ${formatBytes(rate)}/s${s.detail ? `, ${s.detail}` : ''}`;
    if (this.tty) {
      if (!force && now - this.lastTty < 100) return;
      this.lastTty = now;
      const width = 28;
      const filled = Math.round(pct * width);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
      const line = `${this.label} ${bar} ${(pct * 100).toFixed(0).padStart(3)}% ${text}`;
      const cols = this.stream.columns || 120;
      this.stream.write(`\r\x1b[2K${line.slice(0, cols - 1)}`);
    } else {
      if (!force && now - this.lastPlain < 2000) return;
      this.lastPlain = now;
      this.stream.write(`${this.label} ${(pct * 100).toFixed(0)}% ${text}\n`);
    }
  }

  /** Ends the bar line (TTY) so that following output starts on a new line. */
  finish(s: ProgressState): void {
    if (!this.enabled) return;
    this.update(s, true);
    if (this.tty) this.stream.write('\n');
  }
}

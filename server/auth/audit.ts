/**
 * The audit trail: every request to DICOMweb and the server API (who, role, action, study, patient,
 * result, time, source address) written to the index database. Events are queued and written in
 * batches (one transaction every AUDIT_FLUSH_MS); the queue is written before the server closes.
 *
 * A viewer asks for each frame, thumbnail or rendered image of a study on its own: 300 requests for one
 * CT series, a million rows a day for a radiology department. Successful requests of those kinds by one
 * user from one address for one study are recorded as one event per COALESCE_MS, its detail giving the
 * first request, how many more there were and until when; refusals and failures stay one event each.
 */
import type { NextFunction, Request, Response } from 'express';
import { parseQuery } from '../../dicomweb/qido';
import type { AccessStore, AuditEvent } from '../../storage/access';
import type { Index } from '../../storage/index';
import { type Logger, loggedUrl } from '../log';
import type { Principal } from './auth';

const AUDIT_FLUSH_MS = 250;
/** PACS_AUDIT_RETENTION_DAYS: the first deletion soon after start (not in its way), then this often. */
const RETENTION_FIRST_MS = 2_000;
const RETENTION_EVERY_MS = 6 * 3600_000;
const DAY_MS = 86_400_000;
const MAX_QUEUE = 10_000;
const PATIENT_CACHE = 5_000;
/** Actions whose successful requests are counted in one event per user, study, address and window. */
const COALESCED_ACTIONS = new Set([
  'retrieve-frames',
  'retrieve-thumbnail',
  'retrieve-rendered',
  'retrieve-bulkdata',
]);
export const COALESCE_MS = 10_000;

interface OpenEvent {
  event: AuditEvent;
  more: number;
  last: number;
}

export class AuditTrail {
  private queue: AuditEvent[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly patients = new Map<string, string | null>();
  private retention: ReturnType<typeof setTimeout> | undefined;
  private pruning: Promise<unknown> = Promise.resolve();
  /** Coalesced events still counting their requests, by who, what, which study, status and address. */
  private readonly open = new Map<string, OpenEvent>();
  private openTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly access: AccessStore,
    private readonly index: Index,
    private readonly log: Logger,
  ) {}

  record(event: AuditEvent): void {
    if (COALESCED_ACTIONS.has(event.action) && event.status < 400) {
      const key = [
        event.username,
        event.role,
        event.action,
        event.studyInstanceUID,
        event.status,
        event.source,
      ].join('\u0000');
      const open = this.open.get(key);
      if (open) {
        open.more++;
        open.last = Math.max(open.last, event.time);
        return;
      }
      this.open.set(key, { event, more: 0, last: event.time });
      this.openTimer ??= setTimeout(() => this.closeOpen(), COALESCE_MS);
      return;
    }
    this.enqueue(event);
  }

  /** Queues the coalesced events, each with how many more requests it stands for. */
  private closeOpen(): void {
    clearTimeout(this.openTimer);
    this.openTimer = undefined;
    for (const { event, more, last } of this.open.values()) {
      this.enqueue(
        more === 0
          ? event
          : {
              ...event,
              detail: `${event.detail} and ${more} more ${event.action} request${more === 1 ? '' : 's'} until ${new Date(last).toISOString()}`,
            },
      );
    }
    this.open.clear();
  }

  private enqueue(event: AuditEvent): void {
    if (this.queue.length >= MAX_QUEUE) {
      this.log.error('audit queue full: event dropped', { event });
      return;
    }
    this.queue.push(event);
    this.timer ??= setTimeout(() => void this.write(), AUDIT_FLUSH_MS);
  }

  /** Records an event, naming the study's patient (looked up once per study). */
  async recordForStudy(event: Omit<AuditEvent, 'patientID'>): Promise<void> {
    const patientID = event.studyInstanceUID ? await this.patientOf(event.studyInstanceUID) : null;
    this.record({ ...event, patientID });
  }

  /**
   * Writes everything recorded so far, the coalesced events still counting included (before the trail
   * is read, and on close).
   */
  flush(): Promise<void> {
    this.closeOpen();
    return this.write();
  }

  /** Writes what is queued. */
  private write(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return this.writing;
    this.writing = this.writing
      .then(() => this.access.appendAudit(batch))
      .catch((err) => {
        // The database is down: keep the events in the log at least, and try them again with the next batch.
        this.log.error('audit events not written to the database', { err, count: batch.length });
        this.queue.unshift(...batch.slice(0, MAX_QUEUE - this.queue.length));
        this.timer ??= setTimeout(() => void this.write(), 5_000);
      });
    return this.writing;
  }

  async close(): Promise<void> {
    clearTimeout(this.retention);
    this.retention = undefined;
    await this.pruning;
    await this.flush();
    clearTimeout(this.timer);
    clearTimeout(this.openTimer);
  }

  /**
   * Keeps the events of the last `days` days (PACS_AUDIT_RETENTION_DAYS; 0 keeps them all): the older
   * ones are deleted shortly after start and every 6 hours after that.
   */
  keepFor(days: number): void {
    if (days <= 0) return;
    const run = (delay: number) => {
      this.retention = setTimeout(() => {
        this.pruning = this.prune(Date.now() - days * DAY_MS, days)
          .catch((err) => this.log.error('audit events not pruned', { err }))
          .finally(() => {
            if (this.retention) run(RETENTION_EVERY_MS);
          });
      }, delay);
      this.retention.unref();
    };
    run(RETENTION_FIRST_MS);
  }

  /**
   * Deletes the events older than `before`. The deletion is recorded as an event of its own
   * (action prune-audit), so the trail shows when and why it begins where it does. Several server
   * processes may run it at once: only the one that deleted something records it.
   */
  async prune(before: number, days: number): Promise<number> {
    await this.flush();
    const count = await this.access.pruneAudit(before);
    if (count > 0) {
      const when = new Date(before).toISOString();
      this.log.info('audit events deleted (retention)', { count, before: when, days });
      this.record({
        time: Date.now(),
        username: null,
        role: 'system',
        action: 'prune-audit',
        studyInstanceUID: null,
        patientID: null,
        status: 200,
        source: null,
        detail: `${count} events before ${when} deleted (PACS_AUDIT_RETENTION_DAYS=${days})`,
      });
    }
    return count;
  }

  private async patientOf(study: string): Promise<string | null> {
    if (this.patients.has(study)) return this.patients.get(study) ?? null;
    let id: string | null = null;
    try {
      const q = parseQuery('study', new URLSearchParams({ StudyInstanceUID: study }), {}, {});
      const [ds] = (await this.index.search(q)).matches as Record<string, { Value?: unknown[] }>[];
      const v = ds?.['00100020']?.Value?.[0];
      id = typeof v === 'string' ? v : null;
    } catch {
      return null;
    }
    // Unknown studies are not cached: the study may be stored next (a STOW names its study first).
    if (id !== null) {
      if (this.patients.size >= PATIENT_CACHE)
        this.patients.delete(this.patients.keys().next().value as string);
      this.patients.set(study, id);
    }
    return id;
  }

  /**
   * Express middleware: an event per DICOMweb or API request, when its answer is finished (the
   * coalesced actions counted, see record()).
   */
  middleware() {
    return (req: Request, res: Response, next: NextFunction) => {
      if (!req.path.startsWith('/dicomweb') && !req.path.startsWith('/api/')) return next();
      const started = Date.now();
      const done = () => {
        const p = res.locals.principal as Principal | undefined;
        const attempted = res.locals.auditUser as string | undefined;
        const url = req.originalUrl.length > 500 ? `${req.originalUrl.slice(0, 500)}…` : req.originalUrl;
        // One event per study the request touched (a STOW may store into several), else one.
        const studies = res.locals.auditStudies as string[] | undefined;
        const touched = studies?.length ? studies : [(res.locals.study as string | undefined) ?? null];
        for (const study of touched)
          void this.recordForStudy({
            time: started,
            username: p?.username ?? attempted ?? null,
            role: p?.role ?? null,
            action: (res.locals.action as string | undefined) ?? 'unknown-route',
            studyInstanceUID: study,
            // Closed before the answer was complete: recorded as 499 (client closed request), as nginx does.
            status: res.writableFinished ? res.statusCode : 499,
            source: req.ip ?? null,
            detail: `${req.method} ${loggedUrl(url, { queryValues: true })}${res.locals.auditDetail ? ` ${res.locals.auditDetail}` : ''}`,
          });
      };
      res.once('finish', done);
      res.once('close', () => {
        if (!res.writableFinished) done();
      });
      next();
    };
  }
}

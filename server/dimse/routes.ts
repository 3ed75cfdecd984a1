/**
 * HTTP side of the DIMSE gateway (server API, not DICOMweb), listed in the route table of server/app.ts:
 * - POST /api/studies/{StudyInstanceUID}/send, JSON {"aet": "REMOTE"}: sends the study to a known remote
 *   AE (C-STORE SCU, each instance byte for byte as stored) and answers when it is done;
 * - GET /api/dimse: the gateway's configuration (AE title, the ports its listeners are bound to, whether it
 *   requires a client certificate and whether that certificate must name the calling AE title, allowed
 *   callers: "any" or [{aet, address?}], remote AEs, each with whether it is reached over TLS).
 */
import type { Request, Response } from 'express';
import { badRequest, notFound } from '../../dicomweb/status';
import { isAcceptableUID } from '../../dicomweb/uids';
import type { IngestContext } from '../ingest';
import type { ListeningPorts } from './scp';
import { outgoing } from './retrieve';
import { isStored, storeInstances } from './scu';
import { currentDimseTls } from './tls-files';

const hex = (n: number) => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * 200 when the remote AE stored every instance; 502 when it refused some, or could not be reached
 * (the body says which instances failed and why); 404 for an unknown study; 400 for an unknown AE.
 */
export function sendStudy(ctx: IngestContext) {
  return async (req: Request, res: Response) => {
    const study = req.params.study as string;
    if (!isAcceptableUID(study)) throw badRequest(`"${String(study).slice(0, 80)}" is not a valid UID`);
    const body = req.body as { aet?: unknown } | undefined;
    const aet = typeof body?.aet === 'string' ? body.aet.trim() : undefined;
    if (!aet) throw badRequest('expected a JSON body {"aet": "<remote AE title>"}');
    const { remoteAEs, aeTitle } = ctx.config.dimse;
    const remote = remoteAEs.find((a) => a.aet === aet);
    if (!remote) {
      const known = remoteAEs.map((a) => a.aet).join(', ') || 'none';
      throw badRequest(`${aet} is not a known remote AE (PACS_DIMSE_REMOTE_AES: ${known})`);
    }
    const instances = await ctx.index.listInstances({ StudyInstanceUID: study });
    if (instances.length === 0) throw notFound(`study ${study} not found`);
    const started = Date.now();
    const results = await storeInstances(
      remote,
      instances.map((i) => outgoing(ctx.blobs, i)),
      { callingAETitle: aeTitle, tls: currentDimseTls(ctx.config.dimse, ctx.log), log: ctx.log },
    );
    const failures = results
      .filter((r) => !isStored(r))
      .map((r) => ({
        SOPInstanceUID: r.SOPInstanceUID,
        ...(r.status === undefined ? {} : { status: hex(r.status) }),
        error: r.error ?? 'refused',
      }));
    const warnings = results.filter((r) => isStored(r) && r.status !== 0).length;
    const summary = {
      StudyInstanceUID: study,
      aet,
      instances: instances.length,
      sent: results.length - failures.length,
      warnings,
      failed: failures.length,
      failures,
    };
    ctx.log.info('study sent to remote AE', { ...summary, failures: undefined, ms: Date.now() - started });
    if (failures.length === 0) {
      res.status(200).json(summary);
      return;
    }
    res.status(502).json({
      status: 502,
      message: `${failures.length} of ${instances.length} instances not stored by ${aet}: ${failures[0].error}`,
      ...summary,
    });
  };
}

/**
 * The gateway's configuration, with the ports the listeners are bound to (server/main.ts sets
 * app.locals.dimseListening once they listen): the port the OS picked for a configured 0, null for a
 * listener that is not listening (none configured, or closed).
 */
export function describeGateway(ctx: IngestContext) {
  return (req: Request, res: Response) => {
    const { aeTitle, tls, tlsBindAE, allowedAEs, remoteAEs } = ctx.config.dimse;
    const listening = req.app.locals.dimseListening as (() => ListeningPorts) | undefined;
    const { port, tlsPort } = listening?.() ?? {};
    res.json({
      aeTitle,
      port: port ?? null,
      tlsPort: tlsPort ?? null,
      tlsClientCertificateRequired: tlsPort !== undefined && tls?.ca !== undefined,
      tlsClientCertificateNamesAE: tlsPort !== undefined && tls?.ca !== undefined && tlsBindAE,
      allowedAEs,
      remoteAEs: remoteAEs.map(({ aet, host, port, tls }) => ({ aet, host, port, tls })),
    });
  };
}

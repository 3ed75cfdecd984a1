/**
 * dcmjs-dimse (the PDU, association and DIMSE layers), loaded once and typed, plus what the gateway sets
 * on it process-wide: our Implementation Class UID and where its log lines go.
 *
 * Its build is a UMD bundle whose named exports Node's ES module loader cannot see, so it is loaded with
 * require and typed by its own index.d.ts.
 */
import { createRequire } from 'node:module';
import type * as DimseModule from 'dcmjs-dimse';
import { type Logger, silentLogger } from '../log';

const require = createRequire(import.meta.url);
export const dimse = require('dcmjs-dimse') as typeof DimseModule;

export type Dataset = DimseModule.Dataset;
export type Association = DimseModule.association.Association;
export type PresentationContext = DimseModule.association.PresentationContext;
export type Request = DimseModule.requests.Request;
export type Response = DimseModule.responses.Response;
export type CEchoRequest = DimseModule.requests.CEchoRequest;
export type CFindRequest = DimseModule.requests.CFindRequest;
export type CStoreRequest = DimseModule.requests.CStoreRequest;
export type CMoveRequest = DimseModule.requests.CMoveRequest;
export type CGetRequest = DimseModule.requests.CGetRequest;
export type CCancelRequest = DimseModule.requests.CCancelRequest;
export type NActionRequest = DimseModule.requests.NActionRequest;
export type CEchoResponse = DimseModule.responses.CEchoResponse;
export type CFindResponse = DimseModule.responses.CFindResponse;
export type CStoreResponse = DimseModule.responses.CStoreResponse;
export type CMoveResponse = DimseModule.responses.CMoveResponse;
export type CGetResponse = DimseModule.responses.CGetResponse;
export type NActionResponse = DimseModule.responses.NActionResponse;

/** The archive's Implementation Class UID (PS3.7 D.3.3.2): a UUID-derived UID, fixed for this software. */
export const IMPLEMENTATION_CLASS_UID = '2.25.219073905118181423200485933454423799223';
/** Implementation Version Name (at most 16 characters). */
export const IMPLEMENTATION_VERSION_NAME = 'OPENPACS_0_1';
/**
 * The Implementation Version Name written in the File Meta Information of instances received by
 * C-STORE. Fixed (not the software version): the header must stay the same across upgrades, so that a
 * data set received again is recognised as the instance already stored.
 */
export const FILE_META_VERSION_NAME = 'OPENPACS';

dimse.Implementation.setImplementationClassUid(IMPLEMENTATION_CLASS_UID);
dimse.Implementation.setImplementationVersion(IMPLEMENTATION_VERSION_NAME);

/**
 * The library logs through loglevel to the console. Its lines go to our structured logger instead, at
 * debug level (every PDU and DIMSE message) and only when LOG_LEVEL=debug: whatever matters (refused
 * associations, network errors, failed stores) the gateway logs itself.
 */
export function routeLibraryLog(log: Logger, level: string): void {
  const lib = dimse.log;
  lib.methodFactory =
    () =>
    (...args: unknown[]) =>
      log.debug('dcmjs-dimse', { detail: args.map(String).join(' ') });
  lib.setLevel(level === 'debug' ? 'debug' : 'silent');
}
routeLibraryLog(silentLogger, 'silent');

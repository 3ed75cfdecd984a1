/**
 * The viewer's transfer setting and link measurement (the page's side): the user's choice (kept in
 * localStorage; `?transfer=auto|original|lossless` overrides it for one visit), what `auto` found
 * about the link, and the Accept header of each frame request from them (see transfer-policy.ts).
 *
 * `auto` goes by the throughput measured on the frames and metadata received (Resource Timing of the
 * page and of the frame-fetch worker); before enough was measured, by the browser's Network
 * Information (save-data or a 2g/3g effective type mean slow), else fast.
 */
import { env } from '../config/env';
import { type DicomJson, str } from './dicom-json';
import {
  type ConnectionHints,
  effectiveLink,
  frameAccept,
  hintedLink,
  type LinkClass,
  LinkEstimator,
  resourceSample,
  TRANSFER_MODES,
  type TransferMode,
  type TransferSample,
} from './transfer-policy';

const STORAGE_KEY = 'pacs.transfer';
const AvailableTransferSyntaxUID = '00083002';

function isMode(v: unknown): v is TransferMode {
  return TRANSFER_MODES.includes(v as TransferMode);
}

function initialMode(): TransferMode {
  const fromUrl = new URLSearchParams(window.location.search).get('transfer');
  if (isMode(fromUrl)) return fromUrl;
  try {
    const stored = window.localStorage.getItem(STORAGE_KEY);
    if (isMode(stored)) return stored;
  } catch {
    /* private mode */
  }
  return 'auto';
}

let mode: TransferMode = initialMode();
const estimator = new LinkEstimator();
const listeners = new Set<() => void>();

function connection(): (ConnectionHints & EventTarget) | undefined {
  return (navigator as unknown as { connection?: ConnectionHints & EventTarget }).connection;
}

/** What `auto` found: the measured class, else the browser's hint, else fast. save-data always means slow. */
export function measuredLink(): LinkClass {
  const c = connection();
  if (c?.saveData) return 'slow';
  return estimator.linkClass() ?? hintedLink(c) ?? 'fast';
}

/** The link class the frame requests are made for now. */
export function currentLink(): LinkClass {
  return effectiveLink(mode, measuredLink());
}

export interface TransferState {
  mode: TransferMode;
  /** what auto found */
  measured: LinkClass;
  /** what frames are asked for: fast = as stored, slow = compressed lossless */
  link: LinkClass;
  /** the throughput measured, Mbit/s */
  mbps?: number;
}

function makeSnapshot(): TransferState {
  return { mode, measured: measuredLink(), link: currentLink(), mbps: estimator.mbps() };
}

let snapshot: TransferState = makeSnapshot();

function changed(): void {
  const next = makeSnapshot();
  if (next.mode === snapshot.mode && next.measured === snapshot.measured) {
    snapshot = { ...snapshot, mbps: next.mbps };
    return;
  }
  snapshot = next;
  for (const l of listeners) l();
}

export function getTransferState(): TransferState {
  return snapshot;
}

export function subscribeTransfer(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function setTransferMode(next: TransferMode): void {
  mode = next;
  try {
    window.localStorage.setItem(STORAGE_KEY, next);
  } catch {
    /* private mode */
  }
  changed();
}

/** A body received from the archive (times in ms since the epoch). */
export function recordTransfer(sample: TransferSample): void {
  estimator.record(sample);
  changed();
}

connection()?.addEventListener?.('change', changed);

// Bodies fetched by the page itself (metadata, the first frame, the image loader's requests).
function recordPageEntries(entries: PerformanceEntryList): void {
  for (const e of entries as PerformanceResourceTiming[]) {
    if (!e.name.startsWith(env.dicomwebRoot)) continue;
    const sample = resourceSample(e, performance.timeOrigin);
    if (sample) recordTransfer(sample);
  }
}
let pageObserver: PerformanceObserver | undefined;
try {
  pageObserver = new PerformanceObserver((list) => recordPageEntries(list.getEntries()));
  pageObserver.observe({ type: 'resource', buffered: true });
} catch {
  /* no Resource Timing: the browser's hint and the setting decide */
}

/** Counts the bodies the page has received but its observer has not yet reported. */
function flushPageEntries(): void {
  if (pageObserver) recordPageEntries(pageObserver.takeRecords());
}

/**
 * Whether frames may be fetched ahead of need: the setting asks for frames as stored, or `auto` has
 * measured a fast link (not merely assumed one before measuring). Bodies the page has received but its
 * observer not yet reported are counted first.
 */
export function fastLinkKnown(): boolean {
  flushPageEntries();
  if (mode !== 'auto') return effectiveLink(mode, 'fast') === 'fast';
  return !connection()?.saveData && estimator.linkClass() === 'fast';
}

/**
 * How frame requests use the browser's HTTP cache. On a link measured fast, not at all: fetching a frame
 * again from the archive costs less than the browser writing every frame it receives into its disk cache
 * (158 MB for a 300-slice CT, about a second of a 2-core PC's CPU per series), and no copy of the images
 * is left on the PC's disk. On a slow or not yet measured link frames are cached, and re-opening a study
 * revalidates them (304 Not Modified) instead of fetching them again.
 */
export function frameCacheMode(): RequestCache {
  flushPageEntries();
  return estimator.linkClass() === 'fast' ? 'no-store' : 'default';
}

/** Stored transfer syntax and PhotometricInterpretation of each instance shown, by the instance's URL. */
const storedSyntax = new Map<string, { syntax: string; photometric: string }>();

const instanceOf = (frameUrl: string) => frameUrl.replace(/^wadors:/, '').replace(/\/frames\/[^/]*$/, '');

/** Notes the stored transfer syntax of an instance (DICOM JSON AvailableTransferSyntaxUID) for its frames. */
export function noteStoredSyntax(frameUrl: string, instance: DicomJson): void {
  const syntax = str(instance, AvailableTransferSyntaxUID);
  if (syntax) storedSyntax.set(instanceOf(frameUrl), { syntax, photometric: str(instance, '00280004') });
}

/** The stored transfer syntax of this frame's instance, when the archive said. */
export function storedSyntaxOf(frameUrl: string): string | undefined {
  return storedSyntax.get(instanceOf(frameUrl))?.syntax;
}

/** The Accept header of a request for this frame (a frame URL or `wadors:` image id) now. */
export function acceptForFrame(frameUrl: string): string {
  const stored = storedSyntax.get(instanceOf(frameUrl));
  return frameAccept(stored?.syntax, currentLink(), stored?.photometric);
}

/**
 * C-MOVE and C-GET: which stored instances an identifier names (PS3.4 C.4.2.2.1, C.4.3.2.1), and how
 * a stored instance is read for sending (its data set bytes, after the File Meta Information).
 *
 * The unique key of the level is required (PatientID, StudyInstanceUID, SeriesInstanceUID or
 * SOPInstanceUID, lists allowed); keys of the levels above narrow it and may be omitted (relational
 * retrieve): an IMAGE retrieve by SOPInstanceUID alone works.
 */
import { parseQuery, type QueryLevel } from '../../dicomweb/qido';
import { isAcceptableUID } from '../../dicomweb/uids';
import type { BlobStore } from '../../storage/blob';
import type { Index, StoredInstance } from '../../storage/index';
import type { InformationModel } from './negotiation';
import { readFileMeta } from './part10';
import { QRStatus, QueryError, queryRetrieveLevel, uidList, valueText } from './query';
import type { OutgoingInstance } from './scu';

type DicomJson = Record<string, { Value?: unknown[] } | undefined>;
const first = (ds: DicomJson, tag: string) => ds[tag]?.Value?.[0] as string | undefined;

function uids(elements: Record<string, unknown>, keyword: string, required: boolean): string[] {
  const list = uidList(elements, keyword);
  if (required && list.length === 0)
    throw new QueryError(QRStatus.IdentifierDoesNotMatchSOPClass, `${keyword} is required at this level`);
  for (const u of list)
    if (!isAcceptableUID(u))
      throw new QueryError(
        QRStatus.IdentifierDoesNotMatchSOPClass,
        `${keyword} "${String(u).slice(0, 40)}" is not a UID`,
      );
  return list;
}

/** Runs a QIDO search (no limit) for the UIDs of the matches. */
async function search(
  index: Index,
  level: QueryLevel,
  params: Record<string, string[]>,
): Promise<DicomJson[]> {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v.length > 0) p.set(k, v.join('\\'));
  const { matches } = await index.search(parseQuery(level, p));
  return matches as DicomJson[];
}

/** The stored instances an identifier names, in study, series, instance order, each once. */
export async function instancesToRetrieve(
  index: Index,
  model: InformationModel,
  elements: Record<string, unknown>,
): Promise<StoredInstance[]> {
  const level = queryRetrieveLevel(model, elements);
  const out: StoredInstance[] = [];
  const seen = new Set<string>();
  const add = (list: StoredInstance[]) => {
    for (const i of list) {
      if (seen.has(i.SOPInstanceUID)) continue;
      seen.add(i.SOPInstanceUID);
      out.push(i);
    }
  };
  if (level === 'PATIENT' || level === 'STUDY') {
    let studies = uids(elements, 'StudyInstanceUID', level === 'STUDY');
    if (level === 'PATIENT') {
      const patientId = valueText(elements.PatientID);
      if (!patientId || /[*?\\]/.test(patientId))
        throw new QueryError(
          QRStatus.IdentifierDoesNotMatchSOPClass,
          'PatientID (one value) is required at PATIENT level',
        );
      const found = await search(index, 'study', { PatientID: [patientId], StudyInstanceUID: studies });
      studies = found.map((s) => first(s, '0020000D')).filter((s): s is string => !!s);
    }
    for (const study of studies) add(await index.listInstances({ StudyInstanceUID: study }));
    return out;
  }
  const studies = uids(elements, 'StudyInstanceUID', false);
  if (level === 'SERIES') {
    const series = uids(elements, 'SeriesInstanceUID', true);
    const found = await search(index, 'series', { StudyInstanceUID: studies, SeriesInstanceUID: series });
    for (const s of found) {
      const study = first(s, '0020000D');
      const se = first(s, '0020000E');
      if (study && se) add(await index.listInstances({ StudyInstanceUID: study, SeriesInstanceUID: se }));
    }
    return out;
  }
  const series = uids(elements, 'SeriesInstanceUID', false);
  const sops = uids(elements, 'SOPInstanceUID', true);
  const found = await search(index, 'instance', {
    StudyInstanceUID: studies,
    SeriesInstanceUID: series,
    SOPInstanceUID: sops,
  });
  for (const m of found) {
    const key = {
      StudyInstanceUID: first(m, '0020000D') ?? '',
      SeriesInstanceUID: first(m, '0020000E') ?? '',
      SOPInstanceUID: first(m, '00080018') ?? '',
    };
    const inst = await index.getInstance(key);
    if (inst) add([inst]);
  }
  return out;
}

/** A stored instance, ready to be sent: its data set bytes are read when asked for. */
export function outgoing(blobs: BlobStore, inst: StoredInstance): OutgoingInstance {
  return {
    SOPClassUID: inst.SOPClassUID,
    SOPInstanceUID: inst.SOPInstanceUID,
    TransferSyntaxUID: inst.TransferSyntaxUID,
    size: inst.size,
    dataset: async () => {
      const file = await blobs.read(inst.blobKey, { start: 0, end: inst.size });
      const meta = readFileMeta(file);
      if (!meta) throw new Error(`stored object ${inst.blobKey} is not a Part 10 file`);
      return file.subarray(meta.datasetOffset);
    },
  };
}

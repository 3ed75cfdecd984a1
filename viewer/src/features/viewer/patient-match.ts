/**
 * Whether a study found by PatientID is the same patient as the study being read (pure; no I/O).
 *
 * PatientIDs are assigned per hospital: "12345" of a district hospital and "12345" of the provincial
 * hospital that reads its studies are two people. A study found is the same patient only when
 * - its PatientID is the same, exactly (the archive's match may be wider: a PatientID holding * or ?);
 * - its IssuerOfPatientID is the same, or both have none: one with an issuer when the other has none
 *   is not taken as the same patient (nothing says who assigned the ID);
 * - its PatientBirthDate is the same, when both have one;
 * - its PatientName is the same once folded (case, Vietnamese diacritics, đ/Đ, NFC/NFD, `^` and spaces,
 *   the alphabetic group only: dicomweb/names personNameMatchKey), when both have one.
 * A missing birth date or name contradicts nothing; a different one, or a different issuer, is
 * another patient as far as the viewer can tell, and the study is not offered for comparison.
 */
import { personNameMatchKey, personNameString } from '../../../../dicomweb/names';
import { type DicomJson, str, Tag, values } from '../../lib/dicom-json';

/** Why a study of the same PatientID is not taken as the same patient. */
export type MismatchReason = 'issuer' | 'name' | 'birthDate';

/** The patient of a study, as studies are matched. */
export interface PatientIdentity {
  PatientID: string;
  IssuerOfPatientID: string;
  PatientBirthDate: string;
  /** the folded alphabetic name (personNameMatchKey); '' when the study has none */
  nameKey: string;
}

export type PatientMatch =
  /** the same patient */
  | { kind: 'same' }
  /** the same PatientID, but another issuer, name or birth date: not the same patient */
  | { kind: 'conflict'; reasons: MismatchReason[] }
  /** another PatientID (a wider match of the archive's) */
  | { kind: 'other-id' };

export function patientIdentity(study: DicomJson): PatientIdentity | undefined {
  const PatientID = str(study, Tag.PatientID).trim();
  // A study without a PatientID belongs to no known patient: nothing is matched with it.
  if (!PatientID) return undefined;
  const name = personNameString(values(study, Tag.PatientName)[0]) ?? '';
  return {
    PatientID,
    IssuerOfPatientID: str(study, Tag.IssuerOfPatientID).trim(),
    PatientBirthDate: str(study, Tag.PatientBirthDate).trim(),
    nameKey: personNameMatchKey(name),
  };
}

/** How a study found compares with the patient of the study being read. */
export function matchPatient(current: PatientIdentity, study: DicomJson): PatientMatch {
  const other = patientIdentity(study);
  if (!other || other.PatientID !== current.PatientID) return { kind: 'other-id' };
  const reasons: MismatchReason[] = [];
  if (other.IssuerOfPatientID !== current.IssuerOfPatientID) reasons.push('issuer');
  if (current.nameKey && other.nameKey && current.nameKey !== other.nameKey) reasons.push('name');
  if (
    current.PatientBirthDate &&
    other.PatientBirthDate &&
    current.PatientBirthDate !== other.PatientBirthDate
  )
    reasons.push('birthDate');
  return reasons.length ? { kind: 'conflict', reasons } : { kind: 'same' };
}

/**
 * QIDO-RS (PS3.18 10.6): the pure query model. Parsing the URL into a Query, the attributes of each
 * level, and person-name folding. No I/O; storage/sql.ts turns a Query into SQL.
 */
export type QueryLevel = 'study' | 'series' | 'instance';

export interface Query {
  level: QueryLevel;
  /** from the path (/studies/{study}/series...) */
  StudyInstanceUID?: string;
  SeriesInstanceUID?: string;
  filters: unknown[];
  includeAll: boolean;
  includeFields: string[];
  fuzzymatching: boolean;
  limit?: number;
  offset: number;
  warnings: string[];
}

/**
 * Minimal type declarations for the parts of dcmjs (which ships no types) used by dicomweb/.
 * Only what we call is declared; extend here rather than casting at call sites.
 */
declare module 'dcmjs' {
  export interface DcmjsDictionaryEntry {
    /** "(GGGG,EEEE)" */
    tag: string;
    /** PS3.6 VR, or dcmjs pseudo-VRs: "ox" (OB or OW), "xs" (US or SS), "lt" (US, SS or OW), "up" (UL offset), "na" (item) */
    vr: string;
    vm: string;
    name: string;
    version?: string;
  }

  export interface DcmjsJsonAttribute {
    vr: string;
    Value?: unknown[];
    InlineBinary?: string;
    BulkDataURI?: string;
  }

  export type DcmjsJsonDataset = Record<string, DcmjsJsonAttribute>;

  const dcmjs: {
    data: {
      DicomMetaDictionary: {
        /** keyword → entry (eager, all standard attributes) */
        nameMap: Record<string, DcmjsDictionaryEntry>;
        /** "(GGGG,EEEE)" → entry (lazy Proxy: not enumerable) */
        dictionary: Record<string, DcmjsDictionaryEntry | undefined>;
      };
      DicomMessage: {
        readFile(
          buffer: ArrayBuffer,
          options?: {
            ignoreErrors?: boolean;
            untilTag?: string;
            includeUntilTagValue?: boolean;
            noCopy?: boolean;
          },
        ): { meta: DcmjsJsonDataset; dict: DcmjsJsonDataset };
      };
    };
  };
  export default dcmjs;
}

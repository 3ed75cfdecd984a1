/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** DICOMweb root used by the viewer; default `/dicomweb` on the same origin. */
  readonly VITE_DICOMWEB_ROOT?: string;
  /** Root of the server's own API (demo loader); default `/api`. */
  readonly VITE_API_ROOT?: string;
}

/** The only place that reads build-time configuration. */
function absolute(path: string): string {
  return new URL(path.replace(/\/+$/, ''), window.location.href).href.replace(/\/+$/, '');
}

export const env = {
  dicomwebRoot: absolute(import.meta.env.VITE_DICOMWEB_ROOT || '/dicomweb'),
  apiRoot: absolute(import.meta.env.VITE_API_ROOT || '/api'),
  /** Upper bound of the decoded-image cache, bytes. */
  cacheBytes: 1024 * 1024 * 1024,
  /** Studies fetched per search; the list sorts and pages within them. */
  searchLimit: 1000,
};

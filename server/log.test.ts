import { describe, expect, it } from 'vitest';
import { loggedUrl } from './log';

describe('loggedUrl', () => {
  it('never writes a share-link token down, wherever it stands', () => {
    const all = (u: string) => [loggedUrl(u, { queryValues: true }), loggedUrl(u, { queryValues: false })];
    expect(all('/s/abc.def')).toEqual(['/s/…', '/s/…']);
    expect(all('/api/share-links/abc.def/open')).toEqual([
      '/api/share-links/…/open',
      '/api/share-links/…/open',
    ]);
    // The sign-in button of a link made for a named account returns to the link.
    expect(all('/api/auth/oidc/login?return=%2Fs%2Fabc.def')[0]).toBe('/api/auth/oidc/login?return=%2Fs%2F…');
    expect(all('/api/auth/oidc/login?return=/s/abc.def&x=1')[0]).toBe('/api/auth/oidc/login?return=/s/…&x=1');
    // A request line in absolute form.
    expect(all('http://s/api/share-links/T/open')[0]).toBe('/api/share-links/…/open');
  });

  it('keeps query values for the audit trail only, and leaves other paths alone', () => {
    const u = '/dicomweb/studies?PatientName=Nguy%E1%BB%85n*&limit=5';
    expect(loggedUrl(u, { queryValues: true })).toBe(u);
    expect(loggedUrl(u, { queryValues: false })).toBe('/dicomweb/studies?PatientName=…&limit=…');
    expect(loggedUrl('/dicomweb/studies/1.2.3/series', { queryValues: false })).toBe(
      '/dicomweb/studies/1.2.3/series',
    );
  });
});

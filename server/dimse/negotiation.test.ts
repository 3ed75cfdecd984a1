import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import {
  addressMayConnect,
  callerRefusal,
  certificateAETitles,
  certificateRefusal,
  decideContext,
  isStorableTransferSyntax,
  isStorageSOPClass,
  isValidAETitle,
  normalizeAddress,
  parseAllowedAEs,
  PduLengthGuard,
  parseRemoteAEs,
  remoteAEName,
  serviceRefusal,
} from './negotiation';

describe('presentation context decisions', () => {
  it('storage: every standard SOP class, the first proposed syntax the archive stores', () => {
    expect(isStorageSOPClass('1.2.840.10008.5.1.4.1.1.2')).toBe(true);
    expect(isStorageSOPClass('1.2.840.10008.5.1.4.1.1.88.34')).toBe(true);
    expect(isStorageSOPClass('1.2.840.10008.5.1.4.38.1')).toBe(true);
    expect(isStorageSOPClass('1.2.840.10008.5.1.4.1.2.2.1')).toBe(false);
    expect(isStorageSOPClass('1.3.12.2.1107.5.9.1')).toBe(false);
    for (const ts of [
      '1.2.840.10008.1.2',
      '1.2.840.10008.1.2.1.99',
      '1.2.840.10008.1.2.4.201',
      '1.2.840.10008.1.2.4.100.1',
    ])
      expect(isStorableTransferSyntax(ts), ts).toBe(true);
    for (const ts of ['1.2.840.10008.1.2.6.1', '1.2.3', '1.2.840.10008.1.2.4'])
      expect(isStorableTransferSyntax(ts), ts).toBe(false);
    expect(
      decideContext('1.2.840.10008.5.1.4.1.1.2', ['1.2.3', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.1']),
    ).toEqual({
      accept: '1.2.840.10008.1.2.4.90',
    });
    expect(decideContext('1.2.840.10008.5.1.4.1.1.2', ['1.2.3'])).toEqual({
      reject: 'transfer-syntaxes-not-supported',
    });
    expect(decideContext('1.2.3.4', ['1.2.840.10008.1.2'])).toEqual({
      reject: 'abstract-syntax-not-supported',
    });
  });

  it('verification and query/retrieve: Explicit VR Little Endian first, else Implicit', () => {
    expect(decideContext('1.2.840.10008.1.1', ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1'])).toEqual({
      accept: '1.2.840.10008.1.2.1',
    });
    expect(decideContext('1.2.840.10008.5.1.4.1.2.1.3', ['1.2.840.10008.1.2'])).toEqual({
      accept: '1.2.840.10008.1.2',
    });
    expect(decideContext('1.2.840.10008.5.1.4.1.2.2.1', ['1.2.840.10008.1.2.2'])).toEqual({
      reject: 'transfer-syntaxes-not-supported',
    });
  });

  it('storage commitment push model: Explicit VR Little Endian first, else Implicit', () => {
    expect(decideContext('1.2.840.10008.1.20.1', ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1'])).toEqual({
      accept: '1.2.840.10008.1.2.1',
    });
    expect(decideContext('1.2.840.10008.1.20.1', ['1.2.840.10008.1.2'])).toEqual({
      accept: '1.2.840.10008.1.2',
    });
    expect(decideContext('1.2.840.10008.1.20.1', ['1.2.840.10008.1.2.4.90'])).toEqual({
      reject: 'transfer-syntaxes-not-supported',
    });
  });
});

describe('AE titles and remote AEs', () => {
  it('parses AET@host:port lists and reports every bad entry', () => {
    expect(parseRemoteAEs('STORESCP@127.0.0.1:11113, OTHER@pacs.local:104,V6@[::1]:4242')).toEqual({
      aes: [
        { aet: 'STORESCP', host: '127.0.0.1', port: 11113, tls: false },
        { aet: 'OTHER', host: 'pacs.local', port: 104, tls: false },
        { aet: 'V6', host: '::1', port: 4242, tls: false },
      ],
      errors: [],
    });
    const bad = parseRemoteAEs(
      'NOPORT@host,A@h:0,WAY_TOO_LONG_AE_TITLE@h:1,A@h:2,A@h:3,B@h:4/ssl,C@h:5/tls/',
    );
    expect(bad.errors).toHaveLength(6);
    expect(bad.errors[4]).toBe('"B@h:4/ssl": expected AET@host:port or AET@host:port/tls');
    expect(isValidAETitle('CT 1')).toBe(true);
    expect(isValidAETitle('A\\B')).toBe(false);
    expect(isValidAETitle('   ')).toBe(false);
  });

  it('parses /tls at the end of a remote AE: reached over DICOM TLS', () => {
    expect(parseRemoteAEs('UPPER@pacs.bvtinh.vn:2762/tls,V6@[::1]:2762/tls,PLAIN@10.0.0.5:104')).toEqual({
      aes: [
        { aet: 'UPPER', host: 'pacs.bvtinh.vn', port: 2762, tls: true },
        { aet: 'V6', host: '::1', port: 2762, tls: true },
        { aet: 'PLAIN', host: '10.0.0.5', port: 104, tls: false },
      ],
      errors: [],
    });
    expect(remoteAEName({ aet: 'V6', host: '::1', port: 2762, tls: true })).toBe('V6@[::1]:2762/tls');
    expect(remoteAEName({ aet: 'PLAIN', host: '10.0.0.5', port: 104, tls: false })).toBe(
      'PLAIN@10.0.0.5:104',
    );
  });

  it('parses allowed callers: AET or AET@IP address, or * alone; reports every bad entry', () => {
    expect(parseAllowedAEs(' CT1@10.0.0.5, MR1 ,V6@[2001:DB8::0:1],CT1@::ffff:10.0.0.6')).toEqual({
      aes: [
        { aet: 'CT1', address: '10.0.0.5' },
        { aet: 'MR1' },
        { aet: 'V6', address: '2001:db8::1' },
        { aet: 'CT1', address: '10.0.0.6' },
      ],
      errors: [],
    });
    expect(parseAllowedAEs('*')).toEqual({ aes: 'any', errors: [] });
    expect(parseAllowedAEs('')).toEqual({ aes: [], errors: [] });
    const bad = parseAllowedAEs(
      'CT1@pacs.local,CT1@10.0.0.256,A\\B,MR1,MR1@10.0.0.7,XA@10.0.0.8,XA@10.0.0.8',
    );
    expect(bad.errors).toHaveLength(5);
    expect(bad.errors[0]).toMatch(/CT1@pacs\.local.*not a host name/);
    expect(parseAllowedAEs('*,CT1').errors).toEqual(['"*" (any calling AE) must be the only entry']);
  });

  it('gives each allowed AE the services listed after =, every service without', () => {
    const { aes, errors } = parseAllowedAEs('CT1@10.0.0.5=store, WS1@10.0.0.9 = Find+MOVE+store ,OLD');
    expect(errors).toEqual([]);
    expect(aes).toEqual([
      { aet: 'CT1', address: '10.0.0.5', services: ['store'] },
      { aet: 'WS1', address: '10.0.0.9', services: ['store', 'find', 'move'] },
      { aet: 'OLD' },
    ]);
    expect(serviceRefusal(aes, 'CT1', '10.0.0.5', 'store')).toBeUndefined();
    expect(serviceRefusal(aes, 'CT1', '::ffff:10.0.0.5', 'find')).toBe(
      'CT1 may not find (PACS_DIMSE_ALLOWED_AES gives it store)',
    );
    expect(serviceRefusal(aes, 'WS1', '10.0.0.9', 'get')).toBe(
      'WS1 may not get (PACS_DIMSE_ALLOWED_AES gives it store+find+move)',
    );
    expect(serviceRefusal(aes, 'WS1', '10.0.0.9', 'move')).toBeUndefined();
    for (const s of ['store', 'find', 'move', 'get'] as const)
      expect(serviceRefusal(aes, 'OLD', '192.168.1.2', s)).toBeUndefined();
    expect(serviceRefusal('any', 'ANYONE', '192.168.1.2', 'get')).toBeUndefined();
    // The same AE title from two addresses, with different services.
    const two = parseAllowedAEs('WS@10.0.0.1=find,WS@10.0.0.2=find+get').aes;
    expect(serviceRefusal(two, 'WS', '10.0.0.1', 'get')).toMatch(/may not get/);
    expect(serviceRefusal(two, 'WS', '10.0.0.2', 'get')).toBeUndefined();

    const bad = parseAllowedAEs('CT1=stor,MR1=,XA=store+delete');
    expect(bad.errors).toEqual([
      '"CT1=stor": unknown service "stor" (expected store, find, move, get, joined with +)',
      '"MR1=": unknown service "" (expected store, find, move, get, joined with +)',
      '"XA=store+delete": unknown service "delete" (expected store, find, move, get, joined with +)',
    ]);
  });

  it('normalizes addresses as a listener reports them', () => {
    expect(normalizeAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(normalizeAddress('0:0:0:0:0:ffff:a00:5')).toBe('10.0.0.5');
    expect(normalizeAddress('[0:0:0:0:0:0:0:1]')).toBe('::1');
    expect(normalizeAddress('FE80::1%eth0')).toBeUndefined();
    expect(normalizeAddress('localhost')).toBeUndefined();
  });

  it('refuses a calling AE title not listed, or listed with another address', () => {
    const { aes } = parseAllowedAEs('CT1@127.0.0.1,CT1@10.0.0.5,MR1');
    expect(callerRefusal(aes, 'CT1', '127.0.0.1')).toBeUndefined();
    expect(callerRefusal(aes, 'CT1', '::ffff:10.0.0.5')).toBeUndefined();
    expect(callerRefusal(aes, 'MR1', '192.168.1.9')).toBeUndefined();
    expect(callerRefusal(aes, 'CT1', '127.0.0.2')).toBe(
      'calling AE title CT1 is allowed only from 127.0.0.1, 10.0.0.5 (PACS_DIMSE_ALLOWED_AES), not from 127.0.0.2',
    );
    expect(callerRefusal(aes, 'ct1', '127.0.0.1')).toBe('calling AE title not in PACS_DIMSE_ALLOWED_AES');
    expect(callerRefusal('any', 'ANYONE', '192.168.1.9')).toBeUndefined();
  });

  it('configuration: listener off by default, every bad DIMSE variable reported', () => {
    const c = loadConfig({});
    expect(c.dimse).toEqual({
      port: undefined,
      aeTitle: 'PACS',
      allowedAEs: [],
      remoteAEs: [],
      tlsBindAE: true,
      // storage commitment reports tried again for 24 hours, at most 10 minutes apart
      commitRetryMs: 86_400_000,
      commitRetryMaxDelayMs: 600_000,
    });
    expect(
      loadConfig({ PACS_DIMSE_COMMIT_RETRY_HOURS: '0.5', PACS_DIMSE_COMMIT_MAX_WAIT: '30' }).dimse,
    ).toMatchObject({ commitRetryMs: 1_800_000, commitRetryMaxDelayMs: 30_000 });
    const on = loadConfig({
      PACS_DIMSE_PORT: '11112',
      PACS_DIMSE_ALLOWED_AES: 'CT1@10.0.0.5, MR1',
      PACS_DIMSE_AE_TITLE: 'ARCHIVE',
    });
    expect(on.dimse).toMatchObject({
      port: 11112,
      aeTitle: 'ARCHIVE',
      allowedAEs: [{ aet: 'CT1', address: '10.0.0.5' }, { aet: 'MR1' }],
    });
    expect(() =>
      loadConfig({
        PACS_DIMSE_PORT: '70000',
        PACS_DIMSE_AE_TITLE: 'THIS_IS_TOO_LONG_A_TITLE',
        PACS_DIMSE_ALLOWED_AES: 'CT1@ct1.hospital.vn',
        PACS_DIMSE_REMOTE_AES: 'X@h',
        PACS_DIMSE_COMMIT_RETRY_HOURS: '0',
        PACS_DIMSE_COMMIT_MAX_WAIT: '1.5',
      }),
    ).toThrow(
      /PACS_DIMSE_PORT=70000[\s\S]*PACS_DIMSE_AE_TITLE[\s\S]*PACS_DIMSE_ALLOWED_AES: "CT1@ct1\.hospital\.vn"[\s\S]*PACS_DIMSE_REMOTE_AES[\s\S]*PACS_DIMSE_COMMIT_RETRY_HOURS=0[\s\S]*PACS_DIMSE_COMMIT_MAX_WAIT=1\.5/,
    );
  });

  it('configuration: DICOM TLS needs a certificate and key, readable; every problem reported', () => {
    expect(() => loadConfig({ PACS_DIMSE_TLS_PORT: '2762', PACS_DIMSE_ALLOWED_AES: 'CT1' })).toThrow(
      /PACS_DIMSE_TLS_CERT: required with PACS_DIMSE_TLS_PORT\n {2}PACS_DIMSE_TLS_KEY: required with PACS_DIMSE_TLS_PORT/,
    );
    expect(() => loadConfig({ PACS_DIMSE_REMOTE_AES: 'UPPER@pacs.bvtinh.vn:2762/tls' })).toThrow(
      /PACS_DIMSE_TLS_CERT: required with the \/tls remote AE UPPER \(PACS_DIMSE_REMOTE_AES\)\n {2}PACS_DIMSE_TLS_KEY: required/,
    );
    expect(() =>
      loadConfig({
        PACS_DIMSE_PORT: '11112',
        PACS_DIMSE_TLS_PORT: '11112',
        PACS_DIMSE_ALLOWED_AES: 'CT1',
        PACS_DIMSE_TLS_CERT: '/nonexistent/cert.pem',
        PACS_DIMSE_TLS_KEY: '/nonexistent/key.pem',
        PACS_DIMSE_TLS_CA: '/nonexistent/ca.pem',
      }),
    ).toThrow(
      /PACS_DIMSE_TLS_PORT=11112: the same port as PACS_DIMSE_PORT\n {2}PACS_DIMSE_TLS_CERT=\/nonexistent\/cert\.pem: cannot be read \(ENOENT\)\n {2}PACS_DIMSE_TLS_KEY=\/nonexistent\/key\.pem: cannot be read \(ENOENT\)\n {2}PACS_DIMSE_TLS_CA=\/nonexistent\/ca\.pem: cannot be read \(ENOENT\)/,
    );
    // The TLS listener alone is a listener: the allow-list is required with it too.
    expect(() =>
      loadConfig({ PACS_DIMSE_TLS_PORT: '2762', PACS_DIMSE_TLS_CERT: '/x', PACS_DIMSE_TLS_KEY: '/y' }),
    ).toThrow(
      /PACS_DIMSE_ALLOWED_AES: required with PACS_DIMSE_TLS_PORT \(the DICOM listener has no sign-in/,
    );
    // A plain remote AE needs nothing.
    expect(loadConfig({ PACS_DIMSE_REMOTE_AES: 'OLDPACS@10.0.0.5:104' }).dimse.tls).toBeUndefined();
  });

  it('configuration: with PACS_AUTH on, a DIMSE port needs PACS_DIMSE_ALLOWED_AES; * is any AE', () => {
    expect(() => loadConfig({ PACS_DIMSE_PORT: '11112' })).toThrow(
      /PACS_DIMSE_ALLOWED_AES: required with PACS_DIMSE_PORT .*CT1@10\.0\.0\.5.* or \* to accept any AE/,
    );
    expect(() =>
      loadConfig({ PACS_DIMSE_PORT: '11112', PACS_AUTH: 'on', PACS_DIMSE_ALLOWED_AES: ' ' }),
    ).toThrow(/PACS_DIMSE_ALLOWED_AES: required/);
    expect(loadConfig({ PACS_DIMSE_PORT: '11112', PACS_DIMSE_ALLOWED_AES: '*' }).dimse.allowedAEs).toBe(
      'any',
    );
    // Development (PACS_AUTH=off, loopback only): an empty list still means any AE.
    expect(loadConfig({ PACS_DIMSE_PORT: '11112', PACS_AUTH: 'off' }).dimse.allowedAEs).toBe('any');
    // A remote AE (C-MOVE destination) is not thereby allowed to call in.
    expect(() =>
      loadConfig({ PACS_DIMSE_PORT: '11112', PACS_DIMSE_REMOTE_AES: 'VIEWER@10.0.0.7:11112' }),
    ).toThrow(/PACS_DIMSE_ALLOWED_AES: required/);
  });
});

describe('AE titles of a DICOM TLS client certificate (PACS_DIMSE_TLS_BIND_AE)', () => {
  it('each subject CN and each subjectAltName URI dicom-aet:, as Node prints them; not DNS names nor IP addresses', () => {
    expect(
      certificateAETitles({
        subject: { CN: ['CT1', 'CT 2'] },
        // Node quotes a value with a comma in it (JSON), and prints the others as they are.
        subjectaltname:
          'DNS:ct3.hospital.test, URI:dicom-aet:CT%204, URI:"dicom-aet:A,B", URI:https://x.test/dicom-aet:CT5, IP Address:10.0.0.6, URI:DICOM-AET:MR1',
      }),
    ).toEqual(['CT1', 'CT 2', 'CT 4', 'A,B', 'MR1']);
    // A CN that is no AE title (a host name of more than 16 characters) names none.
    expect(certificateAETitles({ subject: { CN: 'pacs.bvtinh.gov.vn' } })).toEqual([]);
    expect(certificateRefusal(['CT1'], 'CT1')).toBeUndefined();
    expect(certificateRefusal(['CT1'], 'ct1')).toMatch(
      /^the client certificate is for CT1, not for calling AE title ct1/,
    );
    expect(certificateRefusal([], 'CT1')).toMatch(/^the client certificate names no AE title/);
  });
});

describe('PduLengthGuard', () => {
  const pdu = (type: number, length: number, body = length) => {
    const b = Buffer.alloc(6 + body);
    b[0] = type;
    b.writeUInt32BE(length, 2);
    return b;
  };
  it('follows PDUs across chunk boundaries and lets those of acceptable length through', () => {
    const g = new PduLengthGuard(262144);
    const stream = Buffer.concat([pdu(0x01, 300), pdu(0x04, 262144), pdu(0x05, 4)]);
    for (let at = 0; at < stream.length; at += 7) expect(g.push(stream.subarray(at, at + 7))).toBeUndefined();
  });
  it('says so when a header declares more than that type may, even split over chunks', () => {
    const g = new PduLengthGuard(262144);
    const big = pdu(0x04, 16 * 262144 + 1, 0);
    expect(g.push(big.subarray(0, 3))).toBeUndefined();
    expect(g.push(big.subarray(3))).toMatch(
      /type 0x04 declares 4194305 bytes, more than the 4194304 accepted/,
    );
    expect(new PduLengthGuard(262144).push(pdu(0x01, 2 * 1024 * 1024, 0))).toMatch(/type 0x01/);
  });
});

describe('addressMayConnect', () => {
  it('lets through only the addresses of the allowed AEs when every one is bound to an address', () => {
    const bound = parseAllowedAEs('CT1@10.0.0.5,MR1@[::1]').aes;
    expect(addressMayConnect(bound, '::ffff:10.0.0.5')).toBe(true);
    expect(addressMayConnect(bound, '::1')).toBe(true);
    expect(addressMayConnect(bound, '10.0.0.6')).toBe(false);
    expect(addressMayConnect(parseAllowedAEs('CT1@10.0.0.5,WS1').aes, '10.0.0.6')).toBe(true);
    expect(addressMayConnect('any', '203.0.113.1')).toBe(true);
  });
});

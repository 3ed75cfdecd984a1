import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config';
import {
  decideContext,
  isStorableTransferSyntax,
  isStorageSOPClass,
  isValidAETitle,
  parseRemoteAEs,
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
});

describe('AE titles and remote AEs', () => {
  it('parses AET@host:port lists and reports every bad entry', () => {
    expect(parseRemoteAEs('STORESCP@127.0.0.1:11113, OTHER@pacs.local:104,V6@[::1]:4242')).toEqual({
      aes: [
        { aet: 'STORESCP', host: '127.0.0.1', port: 11113 },
        { aet: 'OTHER', host: 'pacs.local', port: 104 },
        { aet: 'V6', host: '::1', port: 4242 },
      ],
      errors: [],
    });
    const bad = parseRemoteAEs('NOPORT@host,A@h:0,WAY_TOO_LONG_AE_TITLE@h:1,A@h:2,A@h:3');
    expect(bad.errors).toHaveLength(4);
    expect(isValidAETitle('CT 1')).toBe(true);
    expect(isValidAETitle('A\\B')).toBe(false);
    expect(isValidAETitle('   ')).toBe(false);
  });

  it('configuration: listener off by default, every bad DIMSE variable reported', () => {
    const c = loadConfig({});
    expect(c.dimse).toEqual({ port: undefined, aeTitle: 'PACS', allowedAETitles: [], remoteAEs: [] });
    const on = loadConfig({
      PACS_DIMSE_PORT: '11112',
      PACS_DIMSE_ALLOWED_AES: 'CT1, MR1',
      PACS_DIMSE_AE_TITLE: 'ARCHIVE',
    });
    expect(on.dimse).toMatchObject({ port: 11112, aeTitle: 'ARCHIVE', allowedAETitles: ['CT1', 'MR1'] });
    expect(() =>
      loadConfig({
        PACS_DIMSE_PORT: '70000',
        PACS_DIMSE_AE_TITLE: 'THIS_IS_TOO_LONG_A_TITLE',
        PACS_DIMSE_REMOTE_AES: 'X@h',
      }),
    ).toThrow(/PACS_DIMSE_PORT=70000[\s\S]*PACS_DIMSE_AE_TITLE[\s\S]*PACS_DIMSE_REMOTE_AES/);
  });
});

/**
 * DICOM TLS (PS3.15 Annex B) both ways, against dcmtk peers built with OpenSSL and certificates made
 * here with the openssl CLI: a hospital CA, the archive's certificate (IP:127.0.0.1, DNS:localhost), a
 * modality's client certificate, and a second, unrelated CA with a client and a server certificate.
 * - TLS listener with PACS_DIMSE_TLS_CA: C-ECHO, C-STORE (stored as sent) and C-MOVE with a client
 *   certificate; refused and nothing stored without one, with one from the other CA, and for a plain
 *   association to the TLS port; the server goes on serving.
 * - TLS listener without PACS_DIMSE_TLS_CA: anonymous TLS accepted, the allow-list still applies.
 * - PACS_DIMSE_TLS_CRL (CRLs made with `openssl ca -gencrl`): a revoked client certificate refused at the
 *   handshake, nothing stored, one of the same CA not revoked still stores; send study to a peer whose
 *   certificate is revoked refused.
 * - The files followed without a restart: a new CRL put in place is used for the next associations both
 *   ways, a broken one leaves the previous in use with an error logged, a renewed certificate and key
 *   are presented from the next handshake on.
 * - Outgoing: "send study" and npm run dimse to /tls remote AEs (dcmtk storescp requiring our client
 *   certificate), refused with the reason when the peer's certificate is not trusted or ours is not.
 * - Configuration errors: missing, unreadable and mismatched PEM files and CRLs, named by their variable.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../server/config';
import { TLS_FILES_CHECK_MS } from '../../server/dimse/tls-files';
import { getJson, type Json, value } from '../e2e/dicomweb';
import { runTs } from '../helpers/process';
import { loadSamples } from '../helpers/server';
import { requireTools } from '../helpers/tools';
import { SAMPLES, SAMPLES_MISSING, samplesPresent } from '../samples';
import {
  type Archive,
  DCMTK_MISSING,
  datasetOf,
  dcmtkPresent,
  expectReceivedAsStored,
  receivedBySop,
  eventually,
  filesUnder,
  metaOf,
  retrieveInstance,
  run,
  type StoreScp,
  startArchive,
  startStorescp,
} from './helpers';

const hasDcmtk = await dcmtkPresent();
const hasOpenssl = requireTools(['openssl'], 'openssl');

/** PEM files of a throwaway PKI: `<name>.pem` (certificate) and `<name>.key` (private key). */
interface Pki {
  dir: string;
  cert(name: string): string;
  key(name: string): string;
}

async function openssl(args: string[]): Promise<void> {
  const r = await run('openssl', args);
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.output}`);
}

/**
 * ca (the hospital CA) and other (an unrelated CA); archive (signed by ca, IP:127.0.0.1 and
 * DNS:localhost), ct1 (ca, CN=CT1), mr1 (ca, URI:dicom-aet:MR1), stranger (other, a client certificate),
 * impostor (other, for 127.0.0.1); ct1-old (ca, CN=CT1) and gone (ca, for 127.0.0.1), for revoking;
 * renewed (ca, like archive), its next certificate.
 */
async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pacs-tls-'));
  const pki: Pki = {
    dir,
    cert: (name) => path.join(dir, `${name}.pem`),
    key: (name) => path.join(dir, `${name}.key`),
  };
  const newKey = ['-newkey', 'rsa:2048', '-nodes'];
  for (const [name, cn] of [
    ['ca', 'Hospital CA'],
    ['other', 'Other CA'],
  ])
    await openssl([
      ...['req', '-x509', ...newKey, '-keyout', pki.key(name), '-out', pki.cert(name), '-days', '2'],
      ...['-subj', `/O=Test/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE'],
      ...['-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    ]);
  const leaves = [
    ['archive', 'ca', 'PACS', 'IP:127.0.0.1,DNS:localhost'],
    ['ct1', 'ca', 'CT1', 'DNS:ct1.hospital.test'],
    // Its AE title in its subjectAltName, not in its subject.
    ['mr1', 'ca', 'mr1.hospital.test', 'DNS:mr1.hospital.test,URI:dicom-aet:MR1'],
    ['stranger', 'other', 'CT1', 'DNS:ct1.hospital.test'],
    ['impostor', 'other', 'STORESCP', 'IP:127.0.0.1,DNS:localhost'],
    ['ct1-old', 'ca', 'CT1', 'DNS:ct1.hospital.test'],
    ['gone', 'ca', 'GONE', 'IP:127.0.0.1,DNS:localhost'],
    ['renewed', 'ca', 'PACS', 'IP:127.0.0.1,DNS:localhost'],
  ];
  await Promise.all(
    leaves.map(async ([name, ca, cn, san]) => {
      const csr = path.join(dir, `${name}.csr`);
      const ext = path.join(dir, `${name}.ext`);
      await openssl(['req', ...newKey, '-keyout', pki.key(name), '-out', csr, '-subj', `/O=Test/CN=${cn}`]);
      await writeFile(
        ext,
        `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`,
      );
      await openssl([
        ...['x509', '-req', '-in', csr, '-CA', pki.cert(ca), '-CAkey', pki.key(ca)],
        ...['-set_serial', String(Date.now() + Math.floor(Math.random() * 1e6))],
        ...['-days', '2', '-out', pki.cert(name), '-extfile', ext],
      ]);
    }),
  );
  return pki;
}

/**
 * Writes to out a CRL of issuer (the hospital CA unless told) listing the certificates named, as a CA
 * keeps it: `openssl ca -revoke` into its database (a fresh one in a folder of its own), then
 * `openssl ca -gencrl`.
 */
async function makeCrl(pki: Pki, revoked: string[], out: string, issuer = 'ca'): Promise<void> {
  const db = await mkdtemp(path.join(pki.dir, 'ca-db-'));
  const conf = path.join(db, 'ca.cnf');
  await writeFile(path.join(db, 'index.txt'), '');
  await writeFile(path.join(db, 'crlnumber'), '01\n');
  await writeFile(
    conf,
    `[ca]\ndefault_ca = hospital\n[hospital]\ndatabase = ${db}/index.txt\ncrlnumber = ${db}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n`,
  );
  const ca = ['-config', conf, '-keyfile', pki.key(issuer), '-cert', pki.cert(issuer)];
  for (const name of revoked) await openssl(['ca', ...ca, '-revoke', pki.cert(name)]);
  await openssl(['ca', ...ca, '-gencrl', '-out', out]);
}

/** Sample files dcmtk's storescu sends unchanged (checked against a bit-preserving storescp). */
const SENT_AS_IS = ['dang-thu-thao-1.dcm', 'dang-thu-thao-2.dcm', 'le-hoang-nam-1.dcm'].map((f) =>
  path.join(SAMPLES, 'vietnamese', f),
);
/** A file the refused associations try to store. */
const REFUSED_FILE = path.join(SAMPLES, 'vietnamese', 'tran-thi-bich-ngoc-1.dcm');

describe.skipIf(!samplesPresent || !hasDcmtk || !hasOpenssl)('DICOM TLS (PS3.15 Annex B)', () => {
  let pki: Pki;
  /**
   * Client certificates required on the TLS port (PACS_DIMSE_TLS_CA); /tls remote AEs. Its plain port
   * is for movescu, which dcmtk 3.6.7 builds without TLS.
   */
  let archive: Archive;
  /** storescp with a certificate of the hospital CA, requiring a client certificate of it. */
  let good: StoreScp;
  /** storescp whose certificate comes from the other CA. */
  let impostor: StoreScp;
  /** storescp with a good certificate that trusts only the other CA (refuses ours). */
  let picky: StoreScp;
  /** storescp with ct1's certificate (CN=CT1, DNS:ct1.hospital.test): its AE title, not 127.0.0.1. */
  let ct1Peer: StoreScp;

  const tls = (name: string) => ['+tls', pki.key(name), pki.cert(name), '-pw', '+cf', pki.cert('ca')];

  beforeAll(async () => {
    if (!samplesPresent) console.warn(SAMPLES_MISSING);
    if (!hasDcmtk) console.warn(DCMTK_MISSING);
    pki = await makePki();
    [good, impostor, picky, ct1Peer] = await Promise.all([
      startStorescp('GOOD', ['+tls', pki.key('archive'), pki.cert('archive'), '-pw', '+cf', pki.cert('ca')]),
      startStorescp('IMPOSTOR', [
        ...['+tls', pki.key('impostor'), pki.cert('impostor'), '-pw', '+cf', pki.cert('ca')],
      ]),
      startStorescp('PICKY', [
        '+tls',
        pki.key('archive'),
        pki.cert('archive'),
        '-pw',
        '+cf',
        pki.cert('other'),
      ]),
      startStorescp('CT1', tls('ct1')),
    ]);
    archive = await startArchive({
      PACS_DIMSE_TLS_PORT: '0',
      PACS_DIMSE_TLS_CERT: pki.cert('archive'),
      PACS_DIMSE_TLS_KEY: pki.key('archive'),
      PACS_DIMSE_TLS_CA: pki.cert('ca'),
      PACS_DIMSE_ALLOWED_AES: 'CT1@127.0.0.1,MR1@127.0.0.1,VIEWER@127.0.0.1',
      PACS_DIMSE_REMOTE_AES: [
        `GOOD@127.0.0.1:${good.port}/tls`,
        `IMPOSTOR@127.0.0.1:${impostor.port}/tls`,
        `PICKY@127.0.0.1:${picky.port}/tls`,
        `CT1@127.0.0.1:${ct1Peer.port}/tls`,
        `CT2@127.0.0.1:${ct1Peer.port}/tls`,
      ].join(','),
    });
  });
  afterAll(async () => {
    await archive?.close();
    await Promise.all([good, impostor, picky, ct1Peer].map((s) => s?.close()));
    if (pki) await rm(pki.dir, { recursive: true, force: true });
  });

  const port = () => String(archive.dimseTlsPort);
  const found = async (file: string) => {
    const sop = metaOf(new Uint8Array(await readFile(file))).MediaStorageSOPInstanceUID;
    return (await getJson<Json[]>(`${archive.dicomweb}/instances?SOPInstanceUID=${sop}`)).json.length;
  };

  it('C-ECHO and C-STORE over TLS with a client certificate: stored as sent, logged with the certificate', async () => {
    const echo = await run('echoscu', ['-aet', 'CT1', '-aec', 'PACS', ...tls('ct1'), '127.0.0.1', port()]);
    expect(echo.code, echo.output).toBe(0);
    const store = await run('storescu', [
      ...['-aet', 'CT1', '-aec', 'PACS', ...tls('ct1'), '127.0.0.1', port()],
      ...SENT_AS_IS,
    ]);
    expect(store.code, store.output).toBe(0);
    for (const file of SENT_AS_IS) {
      const bytes = new Uint8Array(await readFile(file));
      const { json } = await getJson<Json[]>(
        `${archive.dicomweb}/instances?SOPInstanceUID=${metaOf(bytes).MediaStorageSOPInstanceUID}`,
      );
      expect(json.length, file).toBe(1);
      const stored = await retrieveInstance(
        archive.dicomweb,
        value(json[0], '0020000D'),
        value(json[0], '0020000E'),
        value(json[0], '00080018'),
      );
      expect(stored, file).toBeDefined();
      expect(
        Buffer.compare(Buffer.from(datasetOf(new Uint8Array(stored!))), Buffer.from(datasetOf(bytes))),
        file,
      ).toBe(0);
    }
    const accepted = archive.logs.filter((l) => l.msg === 'association accepted');
    expect(accepted.length).toBeGreaterThanOrEqual(2);
    for (const l of accepted)
      expect(l).toMatchObject({ callingAETitle: 'CT1', tls: expect.stringMatching(/^TLSv1\.[23]$/) });
    expect(accepted[0].clientCertificate).toMatch(/CN=CT1/);
  });

  it('refuses, and stores nothing from, no client certificate, one of another CA, and plain DICOM', async () => {
    const attempts = {
      anonymous: ['+tla', '+cf', pki.cert('ca')],
      'other CA': tls('stranger'),
      plain: [],
    };
    for (const [what, opts] of Object.entries(attempts)) {
      const r = await run('storescu', [
        ...['-aet', 'CT1', '-aec', 'PACS', ...opts, '127.0.0.1', port(), REFUSED_FILE],
      ]);
      expect(r.code, `${what}: ${r.output}`).not.toBe(0);
    }
    expect(await found(REFUSED_FILE)).toBe(0);
    const failures = () => archive.logs.filter((l) => l.msg === 'DICOM TLS handshake failed');
    expect(await eventually(() => failures().length >= 3)).toBe(true);
    expect(failures().map((l) => l.reason)).toEqual(
      expect.arrayContaining([
        'no client certificate (PACS_DIMSE_TLS_CA requires one)',
        expect.stringMatching(/^client certificate not trusted \(PACS_DIMSE_TLS_CA\): /),
        expect.stringMatching(/^not a TLS client .*a plain association to the TLS port\?$/),
      ]),
    );
    expect(
      failures().find((l) => String(l.reason).startsWith('client certificate not trusted')),
    ).toMatchObject({ clientCertificate: expect.stringMatching(/CN=CT1/) });
    // No association got as far as the DICOM layer, and the server goes on serving.
    expect(
      archive.logs.some((l) => l.msg === 'association accepted' && l.clientCertificate === undefined),
    ).toBe(false);
    const echo = await run('echoscu', ['-aet', 'CT1', '-aec', 'PACS', ...tls('ct1'), '127.0.0.1', port()]);
    expect(echo.code, echo.output).toBe(0);
  });

  it('a client certificate calls only as the AE title it names: another is refused, logged and audited, nothing stored', async () => {
    // mr1 names MR1 in its subjectAltName (URI:dicom-aet:MR1), ct1 names CT1 as its subject CN.
    const echo = await run('echoscu', ['-aet', 'MR1', '-aec', 'PACS', ...tls('mr1'), '127.0.0.1', port()]);
    expect(echo.code, echo.output).toBe(0);
    for (const [aet, cert] of [
      ['MR1', 'ct1'],
      ['CT1', 'mr1'],
    ]) {
      const r = await run('storescu', [
        ...['-aet', aet, '-aec', 'PACS', ...tls(cert), '127.0.0.1', port(), REFUSED_FILE],
      ]);
      expect(r.code, `${aet} with ${cert}: ${r.output}`).not.toBe(0);
      expect(r.output).toMatch(/Association Rejected[\s\S]*Calling AE Title Not Recognized/);
    }
    expect(await found(REFUSED_FILE)).toBe(0);
    const rejected = archive.logs.filter((l) => l.msg === 'association rejected');
    expect(rejected).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          level: 'warn',
          callingAETitle: 'MR1',
          clientCertificate: expect.stringMatching(/CN=CT1/),
          reason: 'the client certificate is for CT1, not for calling AE title MR1 (PACS_DIMSE_TLS_BIND_AE)',
        }),
        expect.objectContaining({
          callingAETitle: 'CT1',
          // Its CN, a host name of 17 characters, is no AE title.
          reason: 'the client certificate is for MR1, not for calling AE title CT1 (PACS_DIMSE_TLS_BIND_AE)',
        }),
      ]),
    );
    const audit = async () => {
      const r = await fetch(`${archive.baseUrl}/api/audit?action=dimse-associate&limit=100`);
      return ((await r.json()) as { events: { user: string; status: number; detail: string }[] }).events;
    };
    expect(await eventually(async () => (await audit()).length >= 2)).toBe(true);
    expect(await audit()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          user: 'AE:MR1',
          status: 403,
          detail: expect.stringMatching(/^association refused: the client certificate is for CT1, not/),
        }),
        expect.objectContaining({ user: 'AE:CT1', status: 403 }),
      ]),
    );
    expect((await (await fetch(`${archive.baseUrl}/api/dimse`)).json()) as unknown).toMatchObject({
      tlsClientCertificateNamesAE: true,
    });
  });

  it('GET /api/dimse shows the TLS port listened on, that client certificates are required, and which remote AEs use TLS', async () => {
    const r = (await (await fetch(`${archive.baseUrl}/api/dimse`)).json()) as Record<string, unknown>;
    // Both listeners were configured with port 0: the ports shown are those the OS picked, which answer.
    expect(r.tlsPort).not.toBe(0);
    const echo = await run('echoscu', [
      ...['-aet', 'CT1', '-aec', 'PACS', ...tls('ct1'), '127.0.0.1', String(r.tlsPort)],
    ]);
    expect(echo.code, echo.output).toBe(0);
    expect(r).toMatchObject({
      port: archive.dimsePort,
      tlsPort: archive.dimseTlsPort,
      tlsClientCertificateRequired: true,
      remoteAEs: [
        { aet: 'GOOD', host: '127.0.0.1', port: good.port, tls: true },
        { aet: 'IMPOSTOR', tls: true },
        { aet: 'PICKY', tls: true },
        { aet: 'CT1', tls: true },
        { aet: 'CT2', tls: true },
      ],
    });
  });

  describe('outgoing', () => {
    let study: string;
    let instances: Json[];

    beforeAll(async () => {
      await loadSamples(
        archive.baseUrl,
        ['1', '2', '3'].map((n) => path.join(SAMPLES, 'vietnamese', `nguyen-van-an-nfc-${n}.dcm`)),
      );
      instances = (
        await getJson<Json[]>(`${archive.dicomweb}/instances?PatientName=nguyen van an&fuzzymatching=true`)
      ).json;
      study = value(instances[0], '0020000D');
    });

    const send = async (aet: string) => {
      const res = await fetch(`${archive.baseUrl}/api/studies/${study}/send`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ aet }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };

    it('send study to a /tls remote AE: every instance arrives, byte for byte', async () => {
      const { status, body } = await send('GOOD');
      expect(status, JSON.stringify(body)).toBe(200);
      expect(body).toMatchObject({ instances: 3, sent: 3, failed: 0 });
      await expectReceivedAsStored(archive.dicomweb, study, instances, await receivedBySop(good.dir));
    });

    it("a peer's certificate of the hospital CA naming the called AE title, not the host, is accepted; naming another AE, refused", async () => {
      const byAeTitle = await send('CT1');
      expect(byAeTitle.status, JSON.stringify(byAeTitle.body)).toBe(200);
      expect(byAeTitle.body).toMatchObject({ instances: 3, sent: 3, failed: 0 });
      await expectReceivedAsStored(archive.dicomweb, study, instances, await receivedBySop(ct1Peer.dir));
      // The same peer called as CT2: its certificate names CT1 and ct1.hospital.test only.
      const otherAe = await send('CT2');
      expect(otherAe.status).toBe(502);
      expect(otherAe.body).toMatchObject({ sent: 0, failed: 3 });
      expect(otherAe.body.message).toMatch(
        /CT2@127\.0\.0\.1:\d+\/tls: TLS handshake failed: the certificate names neither 127\.0\.0\.1 nor the called AE title CT2/,
      );
      expect((await filesUnder(ct1Peer.dir)).length).toBe(3);
      // npm run dimse the same way; mr1's certificate names its AE title as URI:dicom-aet:MR1.
      const mr1 = await startStorescp('MR1', tls('mr1'));
      try {
        const echo = (node: string) =>
          runTs('scripts/dimse.ts', [
            ...['echo', node, '--aet', 'PACS', '--tls-cert', pki.cert('archive')],
            ...['--tls-key', pki.key('archive'), '--tls-ca', pki.cert('ca')],
          ]);
        const byUri = await echo(`MR1@127.0.0.1:${mr1.port}/tls`);
        expect(byUri.output).toMatch(/C-ECHO MR1@127\.0\.0\.1:\d+\/tls: success/);
        const wrong = await echo(`MR2@127.0.0.1:${mr1.port}/tls`);
        expect(wrong.code).toBe(2);
        expect(wrong.output).toMatch(
          /^cannot reach MR2@127\.0\.0\.1:\d+\/tls: TLS handshake failed: the certificate names neither/m,
        );
      } finally {
        await mr1.close();
      }
    });

    it('refuses a peer whose certificate is not trusted, and says so when the peer refuses ours: 502, nothing sent', async () => {
      const impostorSend = await send('IMPOSTOR');
      expect(impostorSend.status).toBe(502);
      expect(impostorSend.body).toMatchObject({ sent: 0, failed: 3 });
      expect(impostorSend.body.message).toMatch(
        /^3 of 3 instances not stored by IMPOSTOR: IMPOSTOR@127\.0\.0\.1:\d+\/tls: TLS handshake failed: /,
      );
      expect(await filesUnder(impostor.dir)).toEqual([]);
      const pickySend = await send('PICKY');
      expect(pickySend.status).toBe(502);
      expect(pickySend.body).toMatchObject({ sent: 0, failed: 3 });
      expect(pickySend.body.message).toMatch(/PICKY@127\.0\.0\.1:\d+\/tls: TLS/);
      expect(await filesUnder(picky.dir)).toEqual([]);
    });

    it('C-MOVE to a /tls destination goes over TLS; to an untrusted one, the failure status with the reason', async () => {
      // What "send study" delivered is removed: the C-MOVE must bring the study again.
      for (const f of await filesUnder(good.dir)) await rm(f);
      const movescu = (dest: string) =>
        run('movescu', [
          ...['-v', '-S', '-aet', 'VIEWER', '-aec', 'PACS', '-aem', dest, '127.0.0.1'],
          ...[String(archive.dimsePort), '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`],
        ]);
      const ok = await movescu('GOOD');
      expect(ok.output).toMatch(/Received Final Move Response \(Success\)/);
      expect((await filesUnder(good.dir)).length).toBe(3);
      const refused = await movescu('IMPOSTOR');
      expect(refused.output).toMatch(/Received Final Move Response \(Refused: OutOfResourcesSubOperations\)/);
      expect(
        archive.logs.find((l) => l.msg === 'association to remote AE failed' && l.aet === 'IMPOSTOR'),
      ).toMatchObject({
        err: expect.stringMatching(/IMPOSTOR@127\.0\.0\.1:\d+\/tls: TLS handshake failed: /),
      });
      expect(await filesUnder(impostor.dir)).toEqual([]);
    });

    it('npm run dimse -- echo/send to AET@host:port/tls with --tls-cert/--tls-key/--tls-ca', async () => {
      const cli = (args: string[]) =>
        runTs('scripts/dimse.ts', [
          ...args,
          ...['--aet', 'CT1', '--tls-cert', pki.cert('ct1'), '--tls-key', pki.key('ct1')],
          ...['--tls-ca', pki.cert('ca')],
        ]);
      // By name: the certificate's DNS:localhost is checked, and it is the name sent (SNI).
      const echo = await cli(['echo', `PACS@localhost:${port()}/tls`]);
      expect(echo.output).toMatch(/C-ECHO PACS@localhost:\d+\/tls: success/);
      const file = path.join(SAMPLES, 'vietnamese', 'le-hoang-nam-2.dcm');
      const sent = await cli(['send', file, `PACS@127.0.0.1:${port()}/tls`, '--quiet']);
      expect(sent.code, sent.output).toBe(0);
      expect(await found(file)).toBe(1);
      const impostorEcho = await cli(['echo', `IMPOSTOR@127.0.0.1:${impostor.port}/tls`]);
      expect(impostorEcho.code).toBe(2);
      expect(impostorEcho.output).toMatch(
        // The remote AE named once, then why.
        /^cannot reach IMPOSTOR@127\.0\.0\.1:\d+\/tls: TLS handshake failed/m,
      );
      const noCert = await runTs('scripts/dimse.ts', ['echo', `PACS@127.0.0.1:${port()}/tls`]);
      expect(noCert.code).toBe(2);
      expect(noCert.output).toMatch(/--tls-cert: required with PACS@127\.0\.0\.1:\d+\/tls/);
    });
  });

  describe('without PACS_DIMSE_TLS_CA', () => {
    let open: Archive;
    beforeAll(async () => {
      open = await startArchive({
        PACS_DIMSE_PORT: '',
        PACS_DIMSE_TLS_PORT: '0',
        PACS_DIMSE_TLS_CERT: pki.cert('archive'),
        PACS_DIMSE_TLS_KEY: pki.key('archive'),
        PACS_DIMSE_ALLOWED_AES: 'CT1',
      });
    });
    afterAll(async () => {
      await open?.close();
    });

    it('accepts anonymous TLS; PACS_DIMSE_ALLOWED_AES is then the only check of the caller', async () => {
      const echo = (aet: string) =>
        run('echoscu', [
          '-aet',
          aet,
          '-aec',
          'PACS',
          '+tla',
          '+cf',
          pki.cert('ca'),
          '127.0.0.1',
          String(open.dimseTlsPort),
        ]);
      const ok = await echo('CT1');
      expect(ok.code, ok.output).toBe(0);
      expect(open.logs.find((l) => l.msg === 'association accepted')).toMatchObject({
        callingAETitle: 'CT1',
        tls: expect.stringMatching(/^TLSv1\.[23]$/),
      });
      const intruder = await echo('INTRUDER');
      expect(intruder.code).not.toBe(0);
      expect(open.logs.some((l) => l.msg === 'association rejected' && l.callingAETitle === 'INTRUDER')).toBe(
        true,
      );
      expect(open.logs.some((l) => /asks for no client certificate/.test(String(l.msg)))).toBe(true);
      const r = (await (await fetch(`${open.baseUrl}/api/dimse`)).json()) as Record<string, unknown>;
      expect(r).toMatchObject({ tlsClientCertificateRequired: false });
    });
  });

  describe('PACS_DIMSE_TLS_BIND_AE=off', () => {
    let loose: Archive;
    beforeAll(async () => {
      loose = await startArchive({
        PACS_DIMSE_PORT: '',
        PACS_DIMSE_TLS_PORT: '0',
        PACS_DIMSE_TLS_CERT: pki.cert('archive'),
        PACS_DIMSE_TLS_KEY: pki.key('archive'),
        PACS_DIMSE_TLS_CA: pki.cert('ca'),
        PACS_DIMSE_TLS_BIND_AE: 'off',
        PACS_DIMSE_ALLOWED_AES: 'MR1@127.0.0.1',
      });
    });
    afterAll(async () => {
      await loose?.close();
    });

    it('any certificate of the CA may call as any allowed AE, with a warning at start', async () => {
      const r = await run('storescu', [
        ...['-aet', 'MR1', '-aec', 'PACS', ...tls('ct1'), '127.0.0.1', String(loose.dimseTlsPort)],
        REFUSED_FILE,
      ]);
      expect(r.code, r.output).toBe(0);
      const sop = metaOf(new Uint8Array(await readFile(REFUSED_FILE))).MediaStorageSOPInstanceUID;
      expect((await getJson<Json[]>(`${loose.dicomweb}/instances?SOPInstanceUID=${sop}`)).json).toHaveLength(
        1,
      );
      expect(loose.logs.find((l) => l.msg === 'association accepted')).toMatchObject({
        callingAETitle: 'MR1',
        clientCertificate: expect.stringMatching(/CN=CT1/),
      });
      expect(loose.logs.some((l) => /PACS_DIMSE_TLS_BIND_AE=off/.test(String(l.msg)))).toBe(true);
      const gateway = (await (await fetch(`${loose.baseUrl}/api/dimse`)).json()) as Record<string, unknown>;
      expect(gateway).toMatchObject({
        tlsClientCertificateRequired: true,
        tlsClientCertificateNamesAE: false,
      });
    });
  });

  describe('PACS_DIMSE_TLS_CRL', () => {
    /**
     * Two CAs trusted, each with its CRL in the one file (the other CA's first): the hospital CA's revokes
     * ct1-old (a modality's old certificate) and gone (a peer's).
     */
    let crlFile: string;
    /** The archive's certificate and key: copies of archive's, to be renewed. */
    let servedCert: string;
    let servedKey: string;
    let revoking: Archive;
    /** storescp presenting the revoked certificate gone. */
    let gone: StoreScp;
    let study: string;

    /** crlFile: the other CA's CRL (nothing revoked), then the hospital CA's, revoking those named. */
    const publishCrl = async (revoked: string[]) => {
      const [otherCrl, caCrl] = [path.join(pki.dir, 'other-crl.pem'), path.join(pki.dir, 'ca-crl.pem')];
      await makeCrl(pki, [], otherCrl, 'other');
      await makeCrl(pki, revoked, caCrl);
      await writeFile(crlFile, (await readFile(otherCrl, 'utf8')) + (await readFile(caCrl, 'utf8')));
    };

    beforeAll(async () => {
      crlFile = path.join(pki.dir, 'crl.pem');
      const cas = path.join(pki.dir, 'cas.pem');
      await writeFile(
        cas,
        (await readFile(pki.cert('other'), 'utf8')) + (await readFile(pki.cert('ca'), 'utf8')),
      );
      await publishCrl(['ct1-old', 'gone']);
      servedCert = path.join(pki.dir, 'served.pem');
      servedKey = path.join(pki.dir, 'served.key');
      await copyFile(pki.cert('archive'), servedCert);
      await copyFile(pki.key('archive'), servedKey);
      gone = await startStorescp('GONE', [
        '+tls',
        pki.key('gone'),
        pki.cert('gone'),
        '-pw',
        '+cf',
        pki.cert('ca'),
      ]);
      revoking = await startArchive({
        PACS_DIMSE_PORT: '',
        PACS_DIMSE_TLS_PORT: '0',
        PACS_DIMSE_TLS_CERT: servedCert,
        PACS_DIMSE_TLS_KEY: servedKey,
        PACS_DIMSE_TLS_CA: cas,
        PACS_DIMSE_TLS_CRL: crlFile,
        PACS_DIMSE_ALLOWED_AES: 'CT1@127.0.0.1,MR1@127.0.0.1',
        PACS_DIMSE_REMOTE_AES: `GOOD@127.0.0.1:${good.port}/tls,GONE@127.0.0.1:${gone.port}/tls`,
      });
      const file = path.join(SAMPLES, 'vietnamese', 'le-hoang-nam-1.dcm');
      await loadSamples(revoking.baseUrl, [file]);
      const sop = metaOf(new Uint8Array(await readFile(file))).MediaStorageSOPInstanceUID;
      const [instance] = (await getJson<Json[]>(`${revoking.dicomweb}/instances?SOPInstanceUID=${sop}`)).json;
      study = value(instance, '0020000D');
    });
    afterAll(async () => {
      await revoking?.close();
      await gone?.close();
    });

    const storeAs = (cert: string, file: string) =>
      run('storescu', [
        ...['-aet', 'CT1', '-aec', 'PACS', ...tls(cert), '127.0.0.1', String(revoking.dimseTlsPort), file],
      ]);
    const echoAs = (aet: string, cert: string) =>
      run('echoscu', ['-aet', aet, '-aec', 'PACS', ...tls(cert), '127.0.0.1', String(revoking.dimseTlsPort)]);
    const send = async (aet: string) => {
      const res = await fetch(`${revoking.baseUrl}/api/studies/${study}/send`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ aet }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const foundIn = async (a: Archive, file: string) => {
      const sop = metaOf(new Uint8Array(await readFile(file))).MediaStorageSOPInstanceUID;
      return (await getJson<Json[]>(`${a.dicomweb}/instances?SOPInstanceUID=${sop}`)).json.length;
    };

    it('refuses a revoked client certificate at the handshake, logged, nothing stored; one of the same CA not revoked stores', async () => {
      const refused = await storeAs('ct1-old', REFUSED_FILE);
      expect(refused.code, refused.output).not.toBe(0);
      expect(await foundIn(revoking, REFUSED_FILE)).toBe(0);
      const failure = () => revoking.logs.find((l) => l.msg === 'DICOM TLS handshake failed');
      expect(await eventually(() => failure() !== undefined)).toBe(true);
      expect(failure()).toMatchObject({
        level: 'warn',
        reason: 'client certificate revoked (PACS_DIMSE_TLS_CRL)',
        clientCertificate: expect.stringMatching(/CN=CT1/),
      });
      expect(revoking.logs.some((l) => l.msg === 'association accepted')).toBe(false);
      const stored = await storeAs('ct1', REFUSED_FILE);
      expect(stored.code, stored.output).toBe(0);
      expect(await foundIn(revoking, REFUSED_FILE)).toBe(1);
    });

    it('send study: refused towards a peer whose certificate is revoked (502, nothing sent), sent to one whose is not', async () => {
      const refused = await send('GONE');
      expect(refused.status).toBe(502);
      expect(refused.body.message).toMatch(
        /GONE@127\.0\.0\.1:\d+\/tls: TLS handshake failed: certificate revoked/,
      );
      expect(await filesUnder(gone.dir)).toEqual([]);
      const sent = await send('GOOD');
      expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    });

    it('npm run dimse with --tls-crl refuses a node whose certificate is revoked', async () => {
      const echo = (crl: string[]) =>
        runTs('scripts/dimse.ts', [
          ...['echo', `GONE@127.0.0.1:${gone.port}/tls`, '--aet', 'CT1'],
          ...['--tls-cert', pki.cert('ct1'), '--tls-key', pki.key('ct1'), '--tls-ca', pki.cert('ca'), ...crl],
        ]);
      const unchecked = await echo([]);
      expect(unchecked.code, unchecked.output).toBe(0);
      const refused = await echo(['--tls-crl', crlFile]);
      expect(refused.code).toBe(2);
      expect(refused.output).toMatch(
        /^cannot reach GONE@127\.0\.0\.1:\d+\/tls: TLS handshake failed: certificate revoked/m,
      );
      const noCa = await runTs('scripts/dimse.ts', [
        ...['echo', `GONE@127.0.0.1:${gone.port}/tls`, '--tls-crl', crlFile],
        ...['--tls-cert', pki.cert('ct1'), '--tls-key', pki.key('ct1')],
      ]);
      expect(noCa.code).toBe(2);
      expect(noCa.output).toMatch(/--tls-crl=.*crl\.pem: needs --tls-ca/);
    });

    /** Long enough for the next connection to look at the files again. */
    const nextCheck = () => new Promise((resolve) => setTimeout(resolve, TLS_FILES_CHECK_MS + 500));
    const revokedFailures = (subject: RegExp) =>
      revoking.logs.filter(
        (l) =>
          l.msg === 'DICOM TLS handshake failed' &&
          l.reason === 'client certificate revoked (PACS_DIMSE_TLS_CRL)' &&
          subject.test(String(l.clientCertificate)),
      );

    it('a new CRL put in place of the file is used for the next associations, both ways, without a restart', async () => {
      const before = await echoAs('MR1', 'mr1');
      expect(before.code, before.output).toBe(0);
      // mr1 revoked, and archive: the certificate GOOD presents.
      await publishCrl(['ct1-old', 'gone', 'mr1', 'archive']);
      await nextCheck();
      // An outgoing association first: it finds the new CRL by itself.
      const out = await send('GOOD');
      expect(out.status).toBe(502);
      expect(out.body.message).toMatch(
        /GOOD@127\.0\.0\.1:\d+\/tls: TLS handshake failed: certificate revoked/,
      );
      const refused = await echoAs('MR1', 'mr1');
      expect(refused.code, refused.output).not.toBe(0);
      expect(await eventually(() => revokedFailures(/CN=mr1\.hospital\.test/).length === 1)).toBe(true);
      expect(revoking.logs.filter((l) => l.msg === 'DICOM TLS files reloaded')).toEqual([
        expect.objectContaining({ level: 'info', crls: 2, certificate: expect.stringMatching(/CN=PACS/) }),
      ]);
      const ct1 = await echoAs('CT1', 'ct1');
      expect(ct1.code, ct1.output).toBe(0);
    });

    it('a broken replacement keeps the files in use, with an error in the log; the next good one is taken', async () => {
      await writeFile(crlFile, '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n');
      await nextCheck();
      const ct1 = await echoAs('CT1', 'ct1');
      expect(ct1.code, ct1.output).toBe(0);
      // Still the CRL that revokes mr1: not none.
      const mr1 = await echoAs('MR1', 'mr1');
      expect(mr1.code, mr1.output).not.toBe(0);
      expect(await eventually(() => revokedFailures(/CN=mr1\.hospital\.test/).length === 2)).toBe(true);
      expect(
        revoking.logs.filter(
          (l) =>
            l.msg === 'DICOM TLS files not reloaded: the previous certificate, key, CA and CRL stay in use',
        ),
      ).toEqual([
        expect.objectContaining({
          level: 'error',
          errors: [expect.stringMatching(/^PACS_DIMSE_TLS_CRL=.*crl\.pem: CRL 1 of 1 is not valid/)],
        }),
      ]);
      await publishCrl(['ct1-old', 'gone']);
      await nextCheck();
      const again = await echoAs('MR1', 'mr1');
      expect(again.code, again.output).toBe(0);
      expect(revoking.logs.filter((l) => l.msg === 'DICOM TLS files reloaded')).toHaveLength(2);
    });

    it('a renewed certificate and key are presented from the next handshake on', async () => {
      const presented = () =>
        new Promise<string>((resolve, reject) => {
          const socket = tlsConnect(
            {
              host: '127.0.0.1',
              port: Number(revoking.dimseTlsPort),
              ca: readFileSync(pki.cert('ca')),
              cert: readFileSync(pki.cert('ct1')),
              key: readFileSync(pki.key('ct1')),
            },
            () => {
              resolve(socket.getPeerX509Certificate()?.serialNumber ?? '');
              socket.destroy();
            },
          );
          socket.once('error', reject);
        });
      const serial = (file: string) => new X509Certificate(readFileSync(file)).serialNumber;
      expect(await presented()).toBe(serial(pki.cert('archive')));
      await copyFile(pki.cert('renewed'), servedCert);
      await copyFile(pki.key('renewed'), servedKey);
      await nextCheck();
      expect(await presented()).toBe(serial(pki.cert('renewed')));
      const echo = await echoAs('CT1', 'ct1');
      expect(echo.code, echo.output).toBe(0);
    });
  });
});

describe.skipIf(!hasOpenssl)('DICOM TLS configuration', () => {
  let pki: Pki;
  beforeAll(async () => {
    pki = await makePki();
  });
  afterAll(async () => {
    if (pki) await rm(pki.dir, { recursive: true, force: true });
  });

  const errorsOf = (env: Record<string, string>) => {
    try {
      loadConfig({ PACS_DIMSE_ALLOWED_AES: 'CT1', ...env });
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    return 'no error';
  };

  it('reads the PEM files and keeps them; a key of another certificate or a non-PEM file is an error naming the variable', () => {
    const ok = loadConfig({
      PACS_DIMSE_TLS_PORT: '2762',
      PACS_DIMSE_TLS_CERT: pki.cert('archive'),
      PACS_DIMSE_TLS_KEY: pki.key('archive'),
      PACS_DIMSE_TLS_CA: pki.cert('ca'),
      PACS_DIMSE_ALLOWED_AES: 'CT1',
    });
    expect(ok.dimse).toMatchObject({ port: undefined, tlsPort: 2762, tlsBindAE: true });
    expect(errorsOf({ PACS_DIMSE_TLS_BIND_AE: 'yes' })).toMatch(
      /PACS_DIMSE_TLS_BIND_AE=yes: expected on or off/,
    );
    expect(ok.dimse.tls?.cert.toString()).toMatch(/BEGIN CERTIFICATE/);
    expect(ok.dimse.tls?.ca).toBeDefined();
    expect(
      errorsOf({
        PACS_DIMSE_TLS_PORT: '2762',
        PACS_DIMSE_TLS_CERT: pki.cert('archive'),
        PACS_DIMSE_TLS_KEY: pki.key('ct1'),
      }),
    ).toMatch(/PACS_DIMSE_TLS_KEY=.*ct1\.key: does not go with the certificate of PACS_DIMSE_TLS_CERT/);
    expect(
      errorsOf({
        PACS_DIMSE_TLS_PORT: '2762',
        PACS_DIMSE_TLS_CERT: pki.key('archive'),
        PACS_DIMSE_TLS_KEY: pki.cert('archive'),
        PACS_DIMSE_TLS_CA: path.join(pki.dir, 'archive.ext'),
      }),
    ).toMatch(
      /PACS_DIMSE_TLS_CERT=.*archive\.key: no PEM certificate[\s\S]*PACS_DIMSE_TLS_KEY=.*archive\.pem: not a PEM private key[\s\S]*PACS_DIMSE_TLS_CA=.*archive\.ext: no PEM certificate/,
    );
  });

  it('PACS_DIMSE_TLS_CRL: every CRL of the file kept; one without a CA, a file with no CRL or a broken one is an error naming the variable', async () => {
    const crls = path.join(pki.dir, 'crls.pem');
    await makeCrl(pki, ['ct1'], path.join(pki.dir, 'ca-crl.pem'));
    await makeCrl(pki, [], path.join(pki.dir, 'other-crl.pem'), 'other');
    await writeFile(
      crls,
      (await readFile(path.join(pki.dir, 'ca-crl.pem'), 'utf8')) +
        (await readFile(path.join(pki.dir, 'other-crl.pem'), 'utf8')),
    );
    const tlsEnv = {
      PACS_DIMSE_TLS_PORT: '2762',
      PACS_DIMSE_TLS_CERT: pki.cert('archive'),
      PACS_DIMSE_TLS_KEY: pki.key('archive'),
      PACS_DIMSE_TLS_CA: pki.cert('ca'),
    };
    const ok = loadConfig({ ...tlsEnv, PACS_DIMSE_TLS_CRL: crls, PACS_DIMSE_ALLOWED_AES: 'CT1' });
    expect(ok.dimse.tls?.crl).toHaveLength(2);
    expect(errorsOf({ ...tlsEnv, PACS_DIMSE_TLS_CA: '', PACS_DIMSE_TLS_CRL: crls })).toMatch(
      /PACS_DIMSE_TLS_CRL=.*crls\.pem: needs PACS_DIMSE_TLS_CA/,
    );
    expect(errorsOf({ ...tlsEnv, PACS_DIMSE_TLS_CRL: pki.cert('ca') })).toMatch(
      /PACS_DIMSE_TLS_CRL=.*ca\.pem: no PEM CRL in it/,
    );
    const broken = path.join(pki.dir, 'broken-crl.pem');
    await writeFile(broken, '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n');
    expect(errorsOf({ ...tlsEnv, PACS_DIMSE_TLS_CRL: broken })).toMatch(
      /PACS_DIMSE_TLS_CRL=.*broken-crl\.pem: CRL 1 of 1 is not valid/,
    );
    expect(errorsOf({ ...tlsEnv, PACS_DIMSE_TLS_CRL: path.join(pki.dir, 'missing.pem') })).toMatch(
      /PACS_DIMSE_TLS_CRL=.*missing\.pem: cannot be read \(ENOENT\)/,
    );
  });

  it('npm start --check-config: exit 2 with every TLS problem', async () => {
    const bad = await runTs('server/main.ts', ['--check-config'], {
      env: {
        ...process.env,
        PACS_DIMSE_TLS_PORT: '2762',
        PACS_DIMSE_ALLOWED_AES: 'CT1',
        PACS_DIMSE_TLS_CERT: path.join(pki.dir, 'missing.pem'),
        PACS_DIMSE_TLS_KEY: pki.key('archive'),
      },
    });
    expect(bad.code).toBe(2);
    expect(bad.output).toMatch(
      /invalid configuration:\n {2}PACS_DIMSE_TLS_CERT=.*missing\.pem: cannot be read \(ENOENT\)/,
    );
    const ok = await runTs('server/main.ts', ['--check-config'], {
      env: {
        ...process.env,
        PACS_DIMSE_TLS_PORT: '2762',
        PACS_DIMSE_ALLOWED_AES: 'CT1',
        PACS_DIMSE_TLS_CERT: pki.cert('archive'),
        PACS_DIMSE_TLS_KEY: pki.key('archive'),
        PACS_DIMSE_TLS_CA: pki.cert('ca'),
      },
    });
    expect(ok).toEqual({ code: 0, output: 'configuration ok\n' });
  });
});

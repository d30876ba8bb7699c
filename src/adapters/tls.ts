import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';

/*
 * TLS for flowthru's own connections: the LDAP source and write-back target (ldapTlsOptions), the
 * mail server and Microsoft Graph (untrustedCertificate), and Entra's client certificates.
 */

/** TLS errors that mean the server's certificate is not trusted: configuration, not a passing fault. */
const CERTIFICATE_ERRORS = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The error's code when it says the server's certificate is not trusted, else undefined. */
export function untrustedCertificate(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && CERTIFICATE_ERRORS.has(code) ? code : undefined;
}

/**
 * TLS options for `host`: SNI unless it is an address, and the CA in `caFile` when given. A caFile
 * that cannot be read is `unreadable(reason)`, the caller's error for a bad setting.
 */
export function ldapTlsOptions(host: string, caFile: string | undefined, unreadable: (reason: string) => Error): ConnectionOptions {
  const options: ConnectionOptions = { host };
  if (!isIP(host)) options.servername = host;
  if (caFile) {
    try {
      options.ca = readFileSync(caFile);
    } catch (error) {
      throw unreadable((error as NodeJS.ErrnoException).code ?? (error as Error).message);
    }
  }
  return options;
}

/**
 * What is wrong with a client certificate file, or undefined: it must hold the private key and the
 * certificate, PEM-encoded, that belong together, as @azure/identity's ClientCertificateCredential
 * reads them. An encrypted key is checked once its passphrase is known (`passphrase`).
 */
export function certificateFileProblem(pem: string, passphrase?: string): string | undefined {
  const keyBlock = /-----BEGIN (?:RSA |ENCRYPTED )?PRIVATE KEY-----[\s\S]*?-----END (?:RSA |ENCRYPTED )?PRIVATE KEY-----/.exec(pem)?.[0];
  const certificateBlock = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(pem)?.[0];
  if (!keyBlock && !certificateBlock) return 'is not a PEM file with a private key and a certificate';
  if (!keyBlock) return 'holds no private key (-----BEGIN PRIVATE KEY-----): put the key and the certificate in one PEM file';
  if (!certificateBlock) return 'holds no certificate (-----BEGIN CERTIFICATE-----): put the key and the certificate in one PEM file';
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certificateBlock);
  } catch {
    return 'holds a certificate that cannot be read';
  }
  const encrypted = keyBlock.includes('ENCRYPTED');
  if (encrypted && passphrase === undefined) return undefined;
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyBlock, format: 'pem', ...(encrypted ? { passphrase } : {}) });
  } catch {
    return encrypted ? 'holds a private key its passphrase does not open' : 'holds a private key that cannot be read';
  }
  if (key.asymmetricKeyType !== 'rsa') return `holds a ${key.asymmetricKeyType ?? 'non-RSA'} key: Entra ID signs client assertions with RSA keys only`;
  const publicOf = (k: KeyObject) => k.export({ type: 'spki', format: 'der' });
  if (!publicOf(createPublicKey(key)).equals(publicOf(certificate.publicKey))) return 'holds a private key that does not belong to its certificate';
  return undefined;
}

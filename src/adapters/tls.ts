import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';

/*
 * TLS for flowthru's own connections: the LDAP source and write-back target (ldapTlsOptions), and
 * the mail server (untrustedCertificate).
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

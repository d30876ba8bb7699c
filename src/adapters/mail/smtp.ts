import { readFileSync } from 'node:fs';
import nodemailer, { type Transporter } from 'nodemailer';
import type { SmtpConfig } from '../../domain/config/schema.js';
import { PermanentError } from '../errors.js';
import { untrustedCertificate } from '../tls.js';

export interface OutgoingEmail {
  readonly from: string;
  readonly to: string;
  readonly subject: string;
  readonly html: string;
  readonly text: string;
  /** Stable per user and event: a resend after a crash carries the same id, so it can be deduplicated. */
  readonly messageId: string;
}

export interface Mailer {
  send(smtp: SmtpConfig, email: OutgoingEmail): Promise<void>;
  close(): void;
}

/** SMTP through nodemailer, one pooled transport per distinct server configuration. */
export function createSmtpMailer(env: NodeJS.ProcessEnv = process.env): Mailer {
  const transports = new Map<string, Transporter>();

  function transport(smtp: SmtpConfig): Transporter {
    const key = JSON.stringify(smtp);
    let found = transports.get(key);
    if (!found) {
      let auth: { user: string; pass: string } | undefined;
      if (smtp.username !== undefined) {
        const pass = smtp.passwordEnv ? env[smtp.passwordEnv] : undefined;
        if (smtp.passwordEnv && pass === undefined) {
          throw new PermanentError('MissingSecret', `the SMTP password variable ${smtp.passwordEnv} is not set`);
        }
        auth = { user: smtp.username, pass: pass ?? '' };
      }
      let ca: Buffer | undefined;
      if (smtp.caFile !== undefined) {
        try {
          ca = readFileSync(smtp.caFile);
        } catch (error) {
          throw new PermanentError('SmtpCaFile', `cannot read the SMTP caFile ${smtp.caFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
        }
      }
      found = nodemailer.createTransport({
        host: smtp.host,
        port: smtp.port,
        secure: smtp.security === 'tls',
        requireTLS: smtp.security === 'starttls',
        ignoreTLS: smtp.security === 'none',
        auth,
        ...(ca ? { tls: { ca } } : {}),
        pool: true,
        maxConnections: 4,
        connectionTimeout: 10_000,
        greetingTimeout: 10_000,
        socketTimeout: 30_000,
      });
      transports.set(key, found);
    }
    return found;
  }

  return {
    async send(smtp, email) {
      try {
        await transport(smtp).sendMail({
          from: email.from,
          to: email.to,
          subject: email.subject,
          html: email.html,
          text: email.text,
          messageId: email.messageId,
        });
      } catch (error) {
        const server = `the mail server at ${smtp.host}:${smtp.port}`;
        // A refused login or an untrusted certificate is configuration: retrying cannot fix it.
        if ((error as { code?: string }).code === 'EAUTH') {
          const said = (error as { response?: string }).response ?? (error as Error).message;
          throw new PermanentError('SmtpLoginRefused', `${server} refused the login of "${smtp.username}": ${said}; check the password in ${smtp.passwordEnv ?? 'passwordEnv'}`);
        }
        // nodemailer keeps the TLS error's code as originalCode (its own code is ESOCKET).
        const certificate = untrustedCertificate({ code: (error as { originalCode?: unknown }).originalCode }) ?? untrustedCertificate(error);
        if (certificate) {
          throw new PermanentError('SmtpCertificate', `${server} presented a certificate that is not trusted (${certificate}): set smtp.caFile to the CA that signed it, or fix the server's certificate`);
        }
        const code = (error as { responseCode?: number }).responseCode;
        // 5xx is the server's final answer for this message (a refused recipient, say); anything
        // else (4xx, a refused connection, a timeout) may pass.
        if (code !== undefined && code >= 500) {
          throw new PermanentError('MailRejected', `the mail server refused the message: ${(error as Error).message}`);
        }
        throw error;
      }
    },
    close() {
      for (const t of transports.values()) t.close();
      transports.clear();
    },
  };
}

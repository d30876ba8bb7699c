import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PermanentError } from '../../src/adapters/errors.js';
import { SmtpSink } from '../../src/adapters/mail/sink.js';
import { createSmtpMailer, type OutgoingEmail } from '../../src/adapters/mail/smtp.js';
import type { SmtpConfig } from '../../src/domain/config/schema.js';
import { makeCertificates } from '../../src/demo/certificates.js';
import { acmeCsv, PipelineHarness } from '../support/pipeline.js';

/*
 * Mail over TLS with a login, against the real smtp-server with a certificate the test makes:
 * STARTTLS (required), TLS from the first byte, the CA from smtp.caFile. A wrong password and an
 * untrusted certificate are configuration: clear, non-retryable errors, never a retry loop.
 */

const certs = makeCertificates(mkdtempSync(join(tmpdir(), 'flowthru-smtp-tls-')));
const users = { mailer: 'right-password' };
const starttls = new SmtpSink({ security: 'starttls', certificate: certs, users });
const tls = new SmtpSink({ security: 'tls', certificate: certs, users });
const mailer = createSmtpMailer({ SMTP_TEST_PASSWORD: 'right-password', SMTP_WRONG_PASSWORD: 'wrong-password' });

const email = (to: string): OutgoingEmail => ({ from: 'it@acme.example', to, subject: 'Welcome', html: '<p>Hi</p>', text: 'Hi', messageId: `<${to}@flowthru.test>` });
const smtp = (sink: SmtpSink, extra: Partial<SmtpConfig> = {}): SmtpConfig => ({
  host: '127.0.0.1',
  port: sink.port,
  security: sink === tls ? 'tls' : 'starttls',
  username: 'mailer',
  passwordEnv: 'SMTP_TEST_PASSWORD',
  caFile: certs.ca,
  ...extra,
});

beforeAll(async () => {
  await starttls.start(0);
  await tls.start(0);
});
afterAll(async () => {
  mailer.close();
  await starttls.stop();
  await tls.stop();
});

async function refusal(config: SmtpConfig, to: string): Promise<PermanentError> {
  const error = await mailer.send(config, email(to)).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PermanentError);
  return error as PermanentError;
}

describe('SMTP over TLS with a login', () => {
  it('sends over STARTTLS, logged in, trusting the CA in caFile', async () => {
    await mailer.send(smtp(starttls), email('ada@acme.example'));
    expect(starttls.to('ada@acme.example')).toHaveLength(1);
  });

  it('sends over TLS from the first byte', async () => {
    await mailer.send(smtp(tls), email('bob@acme.example'));
    expect(tls.to('bob@acme.example')).toHaveLength(1);
  });

  it('a wrong password is a clear, non-retryable error that names the login and the variable, never the password', async () => {
    const error = await refusal(smtp(starttls, { passwordEnv: 'SMTP_WRONG_PASSWORD' }), 'eve@acme.example');
    expect(error.kind).toBe('SmtpLoginRefused');
    expect(error.message).toMatch(/^the mail server at 127\.0\.0\.1:\d+ refused the login of "mailer": 535 .*; check the password in SMTP_WRONG_PASSWORD$/);
    expect(error.message).not.toContain('wrong-password');
    expect(starttls.refusedLogins).toContain('mailer');
    expect(starttls.to('eve@acme.example')).toHaveLength(0);
  });

  it('a certificate the system does not trust, without caFile, is a clear, non-retryable error', async () => {
    const config = smtp(tls);
    delete (config as { caFile?: string }).caFile;
    const error = await refusal(config, 'zed@acme.example');
    expect(error.kind).toBe('SmtpCertificate');
    expect(error.message).toMatch(/presented a certificate that is not trusted \([A-Z_]+\): set smtp\.caFile to the CA that signed it/);
  });

  it('a caFile that cannot be read names the setting', async () => {
    const error = await refusal(smtp(tls, { caFile: '/nonexistent/ca.pem', port: tls.port }), 'amy@acme.example');
    expect(error.kind).toBe('SmtpCaFile');
    expect(error.message).toBe('cannot read the SMTP caFile /nonexistent/ca.pem: ENOENT');
  });
});

describe("the benchmark's counting mail server", () => {
  it('accepts and counts messages, and keeps none of them', async () => {
    const counting = new SmtpSink({ mode: 'count' });
    await counting.start(0);
    try {
      const plain = { host: '127.0.0.1', port: counting.port, security: 'none' } as SmtpConfig;
      await Promise.all(['a', 'b', 'c'].map((who) => mailer.send(plain, email(`${who}@acme.example`))));
      expect(counting.received).toBe(3);
      expect(counting.messages).toEqual([]);
    } finally {
      await counting.stop();
    }
  });
});

describe('a pipeline whose mail server refuses the login', () => {
  let h: PipelineHarness;
  beforeAll(async () => {
    h = await PipelineHarness.create();
    await h.startWorker();
  });
  afterAll(async () => h?.close());

  it('provisions the user, sends nothing, and records why, without retrying for ever', async () => {
    process.env.SMTP_PIPELINE_PASSWORD = 'not-the-password';
    const version = await h.apply({
      version: 1,
      customers: [
        h.acmeCustomer('locked', (c) => {
          c.settings.smtp = { host: '127.0.0.1', port: starttls.port, security: 'starttls', username: 'mailer', passwordEnv: 'SMTP_PIPELINE_PASSWORD', caFile: certs.ca };
        }),
      ],
    });
    h.writeFile('locked.csv', acmeCsv([{ employee_id: 'E1', login: 'ada', mail: 'ada.locked@acme.example', given_name: 'Ada', surname: 'Lovelace', department: 'Engineering', city: 'Chicago' }]));
    const report = await h.sync('locked', 'hr', version);
    expect(report.counts).toMatchObject({ provisioned: 1, emailed: 0, failed: 0 });
    const outbox = await h.db.selectFrom('email_outbox').select(['status', 'last_error']).execute();
    expect(outbox).toEqual([{ status: 'failed', last_error: expect.stringMatching(/refused the login of "mailer": 535 .*check the password in SMTP_PIPELINE_PASSWORD/) }]);
    expect(starttls.to('ada.locked@acme.example')).toHaveLength(0);
  });
});

import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface ReceivedEmail {
  readonly to: string[];
  readonly messageId: string | undefined;
  readonly subject: string | undefined;
  readonly html: string;
  readonly text: string;
  readonly raw: string;
}

export interface SmtpSinkOptions {
  /** none (the default): plain SMTP; starttls: offers STARTTLS and requires it; tls: TLS from the first byte. */
  readonly security?: 'none' | 'starttls' | 'tls';
  /** PEM files of the server's certificate and key, for starttls and tls. */
  readonly certificate?: { readonly cert: string; readonly key: string };
  /** Accounts it accepts (AUTH PLAIN/LOGIN, answered 535 otherwise); when given, a login is required. */
  readonly users?: Readonly<Record<string, string>>;
  /**
   * keep (the default): every message parsed and kept (`messages`); count: only counted
   * (`received`), as a mail server that is somewhere else costs the sender nothing more: the
   * benchmark's, so that parsing and holding 10,000 messages is not booked to the pipeline.
   */
  readonly mode?: 'keep' | 'count';
}

/**
 * A real SMTP server on loopback that keeps what it receives: the demo's mailbox and the tests'
 * mail server. It can be stopped and started again on the same port to play an outage.
 */
export class SmtpSink {
  readonly messages: ReceivedEmail[] = [];
  /** Messages accepted, kept or not. */
  received = 0;
  /** Logins it refused, by user name. */
  readonly refusedLogins: string[] = [];
  /** How long it takes to accept a message once it has its data: a slow server (0, at once, by default). */
  acceptDelayMs = 0;
  /** Messages whose data it has and has not answered yet. */
  receiving = 0;
  private server: SMTPServer | undefined;
  private boundPort = 0;

  constructor(private readonly options: SmtpSinkOptions = {}) {}

  get port(): number {
    return this.boundPort;
  }

  async start(port = this.boundPort, host = '127.0.0.1'): Promise<void> {
    const { security = 'none', certificate, users } = this.options;
    if (security !== 'none' && !certificate) throw new Error(`an SMTP sink with ${security} needs a certificate`);
    const server = new SMTPServer({
      secure: security === 'tls',
      ...(certificate ? { key: readFileSync(certificate.key), cert: readFileSync(certificate.cert) } : {}),
      // Plain: no STARTTLS offered. A login only over TLS, as real servers insist.
      disabledCommands: security === 'none' ? ['STARTTLS', ...(users ? [] : ['AUTH'])] : users ? [] : ['AUTH'],
      allowInsecureAuth: security === 'none',
      authOptional: !users,
      onAuth: (auth, _session, callback) => {
        if (users && auth.username !== undefined && users[auth.username] === auth.password) return callback(null, { user: auth.username });
        this.refusedLogins.push(auth.username ?? '');
        const refused = Object.assign(new Error('Authentication credentials invalid'), { responseCode: 535 });
        callback(refused);
      },
      onMailFrom: (_address, session, callback) => {
        // starttls: nothing is accepted before the connection is encrypted.
        if (security === 'starttls' && !session.secure) return callback(Object.assign(new Error('Must issue a STARTTLS command first'), { responseCode: 530 }));
        callback();
      },
      logger: false,
      onData: (stream, session, callback) => {
        if (this.options.mode === 'count') {
          stream.on('end', () => {
            this.received++;
            callback();
          });
          stream.resume();
          return;
        }
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          this.receiving++;
          new Promise((resolve) => setTimeout(resolve, this.acceptDelayMs))
            .then(() => simpleParser(raw))
            .then((mail: ParsedMail) => {
              this.received++;
              this.messages.push({
                to: session.envelope.rcptTo.map((r) => r.address),
                messageId: mail.messageId,
                subject: mail.subject,
                html: typeof mail.html === 'string' ? mail.html : '',
                text: mail.text ?? '',
                raw,
              });
              callback();
            })
            .catch((error: Error) => callback(error))
            .finally(() => this.receiving--);
        });
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    server.on('error', () => undefined);
    this.server = server;
    this.boundPort = (server.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  to(address: string): ReceivedEmail[] {
    return this.messages.filter((m) => m.to.includes(address));
  }
}

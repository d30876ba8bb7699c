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

/**
 * A real SMTP server on loopback that keeps what it receives: the demo's mailbox and the tests'
 * mail server. It can be stopped and started again on the same port to play an outage.
 */
export class SmtpSink {
  readonly messages: ReceivedEmail[] = [];
  private server: SMTPServer | undefined;
  private boundPort = 0;

  get port(): number {
    return this.boundPort;
  }

  async start(port = this.boundPort, host = '127.0.0.1'): Promise<void> {
    const server = new SMTPServer({
      secure: false,
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          simpleParser(raw)
            .then((mail: ParsedMail) => {
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
            .catch((error: Error) => callback(error));
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

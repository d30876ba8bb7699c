import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { WebhookEvent } from '../../src/adapters/targets/webhook.js';

/**
 * A real Standard Webhooks receiver on 127.0.0.1, as a customer would run one: every request is
 * verified with the `standardwebhooks` library (signature, and a timestamp within five minutes);
 * an unverifiable one is answered 401 and kept in `rejected()`. Verified deliveries are answered
 * 204 unless told otherwise (`respondWith`, `hang`), and a receiver that drops repeated
 * webhook-ids keeps the events of `events()`.
 */

/** A secret in the Standard Webhooks format: `whsec_` + base64 of 24 random bytes. */
export function makeWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

export interface WebhookDelivery {
  /** The webhook-id header. */
  readonly id: string;
  /** The webhook-timestamp header (unix seconds). */
  readonly timestamp: string;
  readonly event: WebhookEvent;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** What the receiver answered (after a hang, what it answered once the wait was over). */
  readonly status: number;
}

export interface RejectedWebhook {
  /** The webhook-id header, if there was one. */
  readonly id: string | null;
  /** Why verification failed: `No matching signature found`, `Missing required headers`, … */
  readonly reason: string;
  readonly headers: IncomingHttpHeaders;
}

export interface WebhookReceiver {
  /** Where to POST: http://127.0.0.1:{port}/webhooks/flowthru. */
  readonly url: string;
  /** Accepted (2xx) events, one per webhook-id, in the order first received. */
  events(): WebhookDelivery[];
  /** Every verified delivery, repeats and refused ones included. */
  deliveries(): WebhookDelivery[];
  /** How many verified deliveries carried this webhook-id. */
  deliveryCount(id: string): number;
  /** Requests whose signature did not verify (answered 401). */
  rejected(): RejectedWebhook[];
  /** The next verified deliveries are answered these statuses, one each, with `headers` and `body`. */
  respondWith(statuses: number[], headers?: Record<string, string>, body?: string): void;
  /** The next verified delivery gets no answer for `ms` (its client should time out first), then `status`. */
  hang(ms: number, status?: number): void;
  close(): Promise<void>;
}

interface Planned {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly hangMs: number;
}

/** The headers the library reads, as plain strings (node gives repeated headers as arrays). */
function plainHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const plain: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers)) {
    if (typeof value === 'string') plain[key] = value;
    else if (Array.isArray(value)) plain[key] = value.join(', ');
  }
  return plain;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startWebhookReceiver(options: { secret: string }): Promise<WebhookReceiver> {
  const webhook = new Webhook(options.secret);
  const deliveries: WebhookDelivery[] = [];
  const rejected: RejectedWebhook[] = [];
  const plan: Planned[] = [];
  const hanging = new Set<NodeJS.Timeout>();

  function answer(res: ServerResponse, status: number, headers: Record<string, string>, body: string) {
    if (res.destroyed) return;
    res.writeHead(status, body === '' ? headers : { 'content-type': 'text/plain; charset=utf-8', ...headers });
    res.end(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const body = await readBody(req);
    if (req.method !== 'POST') return answer(res, 405, { allow: 'POST' }, '');
    let event: WebhookEvent;
    try {
      event = webhook.verify(body, plainHeaders(req.headers)) as WebhookEvent;
    } catch (error) {
      const id = req.headers['webhook-id'];
      rejected.push({ id: typeof id === 'string' ? id : null, reason: (error as Error).message, headers: req.headers });
      return answer(res, 401, {}, 'invalid signature');
    }
    const next = plan.shift() ?? { status: 204, headers: {}, body: '', hangMs: 0 };
    deliveries.push({
      id: String(req.headers['webhook-id']),
      timestamp: String(req.headers['webhook-timestamp']),
      event,
      path: req.url ?? '/',
      headers: req.headers,
      status: next.status,
    });
    if (next.hangMs === 0) return answer(res, next.status, next.headers, next.body);
    const timer = setTimeout(() => {
      hanging.delete(timer);
      answer(res, next.status, next.headers, next.body);
    }, next.hangMs);
    hanging.add(timer);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => answer(res, 500, {}, 'receiver failed'));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;

  const accepted = () => deliveries.filter((d) => d.status >= 200 && d.status < 300);

  return {
    url: `http://127.0.0.1:${port}/webhooks/flowthru`,
    events: () => accepted().filter((d, i, all) => all.findIndex((other) => other.id === d.id) === i),
    deliveries: () => [...deliveries],
    deliveryCount: (id) => deliveries.filter((d) => d.id === id).length,
    rejected: () => [...rejected],
    respondWith(statuses, headers = {}, body = '') {
      for (const status of statuses) plan.push({ status, headers, body, hangMs: 0 });
    },
    hang(ms, status = 204) {
      plan.push({ status, headers: {}, body: '', hangMs: ms });
    },
    async close() {
      for (const timer of hanging) clearTimeout(timer);
      hanging.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

import { Webhook } from 'standardwebhooks';
import type { WebhookTargetConfig } from '../../domain/config/schema.js';
import {
  retryAfterMs,
  TargetError,
  type PushResult,
  type TargetEvent,
  type TargetFields,
  type TargetPlugin,
  type TargetPush,
} from './types.js';

/*
 * The webhook target: one signed JSON event per push, POSTed to the configured URL the Standard
 * Webhooks way (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
 * `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`), made with the
 * `standardwebhooks` library so a receiver using any of its ports verifies what we send.
 *
 * A webhook cannot converge the way a directory does (there is nothing to compare against), so it
 * is made safe to repeat instead: `webhook-id` is the push's eventId, the same on every retry and
 * re-run of one event, and the standard asks receivers to drop an id they have already handled.
 */

/** The JSON body of every event flowthru sends. */
export interface WebhookEvent {
  readonly type: `user.${TargetEvent}`;
  /** When this event was sent (ISO 8601). */
  readonly timestamp: string;
  readonly data: {
    /** The target's configured name. */
    readonly target: string;
    readonly customer: string;
    /** The user's id in their source. */
    readonly externalId: string;
    /** flowthru's id of the user. */
    readonly userId: string;
    /** The target's data filter applied to the user; on user.deprovisioned, what was last sent. */
    readonly fields: TargetFields;
  };
}

export interface WebhookTargetOptions {
  readonly fetch?: typeof fetch;
  readonly now?: () => Date;
}

/** How much of a refusing receiver's answer goes into the message. */
const BODY_EXCERPT_CHARS = 200;

/** Statuses that say "not now" rather than "never": retried, honouring Retry-After. */
const RETRY_LATER = new Set([408, 429]);

export function createWebhookTarget(
  config: WebhookTargetConfig,
  env: NodeJS.ProcessEnv = process.env,
  options: WebhookTargetOptions = {},
): TargetPlugin {
  const doFetch = options.fetch ?? globalThis.fetch;
  const now = options.now ?? (() => new Date());
  const where = displayUrl(config.url);
  const what = `webhook target "${config.name}"`;
  const { username, password } = new URL(config.url);
  const withCredentials = username !== '' || password !== '';

  /**
   * Read on every push rather than once: a secret set (or fixed) after the worker started is
   * picked up by the next retry, and a bad one fails that push instead of the worker.
   */
  function signer(): { webhook: Webhook; secret: string } {
    const secret = env[config.secretEnv];
    if (secret === undefined || secret === '') {
      throw new TargetError(`the environment variable ${config.secretEnv} (the signing secret of ${what}) is not set`, {
        retryable: false,
        kind: 'MissingSecret',
      });
    }
    // The library also takes secrets without the prefix, but every Standard Webhooks secret has
    // it; demanding it catches a password or token pasted into the wrong variable.
    if (secret.startsWith('whsec_')) {
      try {
        return { webhook: new Webhook(secret), secret };
      } catch {
        // Bad base64 or an empty key; the library's message is not needed (and never the secret).
      }
    }
    throw new TargetError(
      `the environment variable ${config.secretEnv} (the signing secret of ${what}) is not a Standard Webhooks secret: expected whsec_ followed by base64, e.g. whsec_ + 24 random bytes in base64`,
      { retryable: false, kind: 'BadSecret' },
    );
  }

  async function send(push: TargetPush, type: WebhookEvent['type'], fields: TargetFields): Promise<PushResult> {
    if (withCredentials) {
      // fetch refuses such a URL with a TypeError that quotes it, credentials included: say so ourselves.
      throw new TargetError(
        `the url of ${what} has a user name or password in it, which flowthru does not send; the receiver authenticates flowthru by the signature`,
        { retryable: false, kind: 'BadUrl' },
      );
    }
    const { webhook, secret } = signer();
    const at = now();
    const event: WebhookEvent = {
      type,
      timestamp: at.toISOString(),
      data: {
        target: push.target,
        customer: push.subject.customer,
        externalId: push.subject.externalId,
        userId: push.subject.userId,
        fields,
      },
    };
    const body = JSON.stringify(event);
    const timeout = AbortSignal.timeout(config.timeoutMs);
    push.heartbeat?.();
    let response: Response;
    try {
      response = await doFetch(config.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'flowthru',
          'webhook-id': push.eventId,
          'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
          'webhook-signature': webhook.sign(push.eventId, at, body),
        },
        body,
        // A redirect would resend the event, signature and all, to wherever it points; say where instead.
        redirect: 'manual',
        signal: push.signal ? AbortSignal.any([timeout, push.signal]) : timeout,
      });
    } catch (error) {
      throw unreachable(error, push, timeout);
    }
    const status = response.status;
    if (status >= 200 && status < 300) {
      // Nothing in a 2xx is used; dropping the body lets the connection be reused.
      await response.body?.cancel().catch(() => {});
      return { remoteId: null, changed: true, summary: `POST ${where} → ${status} (${type})` };
    }
    throw await refusal(response, type, secret);
  }

  /** A fetch that threw: the push was cancelled, the receiver did not answer in time, or it is unreachable. */
  function unreachable(error: unknown, push: TargetPush, timeout: AbortSignal): unknown {
    // The activity was cancelled (or timed out): let its own reason through, so Temporal sees a cancellation.
    if (push.signal?.aborted && !timeout.aborted) return push.signal.reason;
    const reason = timeout.aborted ? `no answer within ${config.timeoutMs} ms` : networkReason(error);
    return new TargetError(`${what} is unreachable: POST ${where}: ${reason}`, { retryable: true, kind: 'Unavailable', cause: error });
  }

  /** The error for a non-2xx answer, retryable when the receiver may take the event later. */
  async function refusal(response: Response, type: WebhookEvent['type'], secret: string): Promise<TargetError> {
    const status = response.status;
    const said = redact(await excerpt(response), secret);
    const answered = `POST ${where} (${type}) answered ${status}${said ? `: ${said}` : ''}`;
    if (RETRY_LATER.has(status) || status >= 500) {
      return new TargetError(`${what} cannot take the event now: ${answered}`, {
        retryable: true,
        kind: status === 429 ? 'Throttled' : 'Unavailable',
        retryAfterMs: retryAfterMs(response.headers.get('retry-after'), now().getTime()),
      });
    }
    if (status >= 300 && status < 400) {
      const to = redirectTarget(response.headers.get('location'), config.url);
      return new TargetError(`${what} redirects POST ${where} (${status}) to ${to}; configure the final URL as the target's url`, {
        retryable: false,
        kind: 'Redirected',
      });
    }
    if (status === 401 || status === 403) {
      // Standard Webhooks receivers refuse an unverifiable signature this way: the secrets differ.
      return new TargetError(`${what} refused the event: ${answered}; check that the receiver verifies with the secret in ${config.secretEnv}`, {
        retryable: false,
        kind: 'Unauthorized',
      });
    }
    return new TargetError(`${what} rejected the event: ${answered}`, { retryable: false, kind: 'Rejected' });
  }

  return {
    provision: (push) => send(push, `user.${push.event}`, push.subject.fields),
    // What was last sent is what the receiver holds; the subject's current fields only stand in before a first push.
    deprovision: (push) => send(push, 'user.deprovisioned', push.memory.pushed ?? push.subject.fields),
    // fetch keeps no connection of ours open between pushes.
    close: async () => {},
  };
}

/** A URL as it may appear in logs: no credentials, no query (either may carry a token). */
function displayUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

/** Where a redirect points, resolved against the URL it came from, for a message. */
function redirectTarget(location: string | null, from: string): string {
  if (location === null || location === '') return 'nowhere (no Location header)';
  try {
    return displayUrl(new URL(location, from).toString());
  } catch {
    return `an unreadable Location (${location.slice(0, BODY_EXCERPT_CHARS)})`;
  }
}

/** The first characters of an answer's body, on one line; empty when there is none or it cannot be read. */
async function excerpt(response: Response): Promise<string> {
  try {
    const text = (await response.text()).replace(/\s+/g, ' ').trim();
    return text.length > BODY_EXCERPT_CHARS ? `${text.slice(0, BODY_EXCERPT_CHARS)}…` : text;
  } catch {
    return '';
  }
}

/** A receiver has no business echoing the secret, but a message must never carry it. */
function redact(text: string, secret: string): string {
  const key = secret.slice('whsec_'.length);
  return text.split(secret).join('[redacted]').split(key).join('[redacted]');
}

/** Why a fetch threw, without its URL: `ECONNREFUSED`, `ENOTFOUND`, `UND_ERR_SOCKET`. */
function networkReason(error: unknown): string {
  const err = error as Error & { cause?: { code?: string; message?: string } };
  return err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(error);
}

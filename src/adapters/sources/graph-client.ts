import { PermanentError } from '../errors.js';

/**
 * A small Microsoft Graph client: OAuth 2.0 client credentials against the Microsoft identity
 * platform, and GET requests with Graph's documented fault handling (throttling with Retry-After,
 * retried server faults, one token refresh on 401, permanent errors for what retrying cannot fix).
 *
 * Why not @azure/msal-node: before MSAL asks for a token it resolves its authority. It fetches the
 * tenant's OpenID configuration (`{authority}/{tenant}/v2.0/.well-known/openid-configuration`) and,
 * for a host it does not know, asks Microsoft's instance discovery endpoint whether the host is an
 * authority at all; it also refuses authorities that are not https. A national cloud, a proxy or
 * the fake Graph of the tests would have to serve those documents (or be declared with
 * knownAuthorities/authorityMetadata/cloudDiscoveryMetadata per deployment), and MSAL keeps a token
 * cache of its own besides. Client credentials are one form POST to `{authority}/{tenant}/oauth2/
 * v2.0/token`, so flowthru does that itself and caches the token here.
 *
 * Secrets and tokens never appear in errors or logs: messages are built from the identity
 * platform's and Graph's error codes and descriptions, and are redacted once more before throwing.
 */

/** What identifies an app registration in a tenant, and where its endpoints are. */
export interface GraphConnection {
  /** The source's name, for messages. */
  readonly name: string;
  readonly tenantId: string;
  readonly clientId: string;
  /** The environment variable that holds the client secret. */
  readonly clientSecretEnv: string;
  /** e.g. https://login.microsoftonline.com (https://login.microsoftonline.us for US Government). */
  readonly authorityUrl: string;
  /** e.g. https://graph.microsoft.com (https://graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn). */
  readonly graphUrl: string;
}

export interface GraphCallOptions {
  /** Where the secret variable is looked up; process.env by default. */
  readonly env?: NodeJS.ProcessEnv;
  /** Called before every request and while waiting, so a long throttle does not look like a hung activity. */
  readonly heartbeat?: () => void;
  readonly fetch?: typeof fetch;
  readonly sleep?: (ms: number) => Promise<void>;
  /** Each HTTP request (headers and body) is aborted after this long; 30 s by default. */
  readonly requestTimeoutMs?: number;
}

/**
 * A transient failure after the retries inside one call: throttling that did not end, server
 * faults, timeouts, an unreachable endpoint. Not a PermanentError, so the activity is retried;
 * `retryAfterMs` is what Graph last asked for (Retry-After), when it did.
 */
export class GraphUnavailableError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'GraphUnavailableError';
  }
}

/** Graph no longer knows the delta or skip token of a request (`syncStateNotFound`, 410 Gone…). */
export class GraphStaleStateError extends Error {
  override name = 'GraphStaleStateError';
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Throttled (429/503) requests are retried this many times within one call, honouring Retry-After. */
export const MAX_THROTTLE_RETRIES = 5;
/** Other server faults (5xx, network errors, timeouts) are retried this many times, backing off. */
export const MAX_FAULT_RETRIES = 4;
const FAULT_BACKOFF_MS = 1_000;
/**
 * Throttling waits longer than these (one Retry-After, or all of one request's) are not waited out
 * inside the call: it throws GraphUnavailableError and the activity's retry takes over, so a call
 * stays well inside the sync's 10-minute start-to-close timeout.
 */
const MAX_SINGLE_WAIT_MS = 2 * 60_000;
const MAX_TOTAL_WAIT_MS = 4 * 60_000;
/** Waits are cut into slices this long, with a heartbeat between them (the sync's heartbeat timeout is 20 s). */
const HEARTBEAT_SLICE_MS = 5_000;
/** A cached token is renewed this long before it expires (a tenth of its lifetime for short tokens). */
const TOKEN_RENEWAL_MARGIN_MS = 5 * 60_000;

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A configured base URL without trailing slashes: `https://graph.microsoft.com`. */
export function baseUrl(url: string): string {
  return url.replace(/\/+$/, '');
}

interface CachedToken {
  readonly accessToken: string;
  readonly renewAt: number;
}

/** Tokens per (authority, tenant, client, scope), shared by every call in this process. */
const tokenCache = new Map<string, CachedToken>();
/** A token request under way, so concurrent calls wait for it instead of asking again. */
const tokenRequests = new Map<string, Promise<CachedToken>>();

export function clearTokenCache(): void {
  tokenCache.clear();
  tokenRequests.clear();
}

function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out;
}

/** Seconds (`Retry-After: 10`) or an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(header: string | null): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const trimmed = header.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.ceil(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function backoffMs(attempt: number): number {
  // 1 s, 2 s, 4 s, 8 s… with ±20 % jitter so many workers do not retry in step.
  return Math.round(FAULT_BACKOFF_MS * 2 ** attempt * (0.8 + Math.random() * 0.4));
}

/** Why a fetch threw, without its URL: `ECONNREFUSED`, `timed out after 30000 ms`. */
function networkReason(error: unknown, timeoutMs: number): string {
  const err = error as Error & { cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  return err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(error);
}

/** The `error` object of a Graph error body: `{ error: { code, message, innerError: { 'request-id' } } }`. */
interface GraphErrorInfo {
  readonly code: string;
  readonly message: string;
  readonly requestId?: string;
}

function graphError(body: unknown): GraphErrorInfo {
  const error = (body as { error?: { code?: unknown; message?: unknown; innerError?: Record<string, unknown> } } | null)?.error;
  const requestId = error?.innerError?.['request-id'];
  return {
    code: typeof error?.code === 'string' ? error.code : 'unknown',
    message: typeof error?.message === 'string' ? error.message : '(no message)',
    ...(typeof requestId === 'string' ? { requestId } : {}),
  };
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return { unparsed: text.slice(0, 200) };
  }
}

/** Delta-state codes Graph uses when a delta or skip token can no longer be resumed. */
const STALE_STATE_CODES = new Set(['syncStateNotFound', 'syncStateInvalid', 'resyncRequired', 'resyncApplyDifferences', 'resyncUploadDifferences']);

export interface GraphGetRequest {
  /** The application permission this endpoint needs, named when Graph answers 403. */
  readonly permission: string;
  /** A delta request: stale-state answers throw GraphStaleStateError instead of a PermanentError. */
  readonly delta?: boolean;
  readonly headers?: Readonly<Record<string, string>>;
}

export class GraphClient {
  private readonly graph: string;
  private readonly authority: string;
  private readonly fetch: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly heartbeat: () => void;
  private readonly timeoutMs: number;
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly connection: GraphConnection,
    options: GraphCallOptions = {},
  ) {
    this.graph = baseUrl(connection.graphUrl);
    this.authority = baseUrl(connection.authorityUrl);
    this.fetch = options.fetch ?? globalThis.fetch;
    this.sleep = options.sleep ?? realSleep;
    this.heartbeat = options.heartbeat ?? (() => {});
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.env = options.env ?? process.env;
  }

  /** The Graph root this client talks to, e.g. `https://graph.microsoft.com`. */
  get root(): string {
    return this.graph;
  }

  private get scope(): string {
    return `${this.graph}/.default`;
  }

  private get source(): string {
    return `source "${this.connection.name}"`;
  }

  private get cacheKey(): string {
    return JSON.stringify([this.authority, this.connection.tenantId, this.connection.clientId, this.scope]);
  }

  private secret(): string {
    const secret = this.env[this.connection.clientSecretEnv];
    if (secret === undefined || secret === '') {
      throw new PermanentError(
        'SourceCredentials',
        `the environment variable ${this.connection.clientSecretEnv} (the client secret of Entra ID ${this.source}) is not set`,
      );
    }
    return secret;
  }

  /** Waits `ms`, heartbeating at least every few seconds. */
  private async wait(ms: number): Promise<void> {
    let left = ms;
    while (left > 0) {
      this.heartbeat();
      const slice = Math.min(left, HEARTBEAT_SLICE_MS);
      await this.sleep(slice);
      left -= slice;
    }
    this.heartbeat();
  }

  /** A valid access token: the cached one, or a new one from the token endpoint. */
  async token(): Promise<string> {
    const key = this.cacheKey;
    const cached = tokenCache.get(key);
    if (cached && Date.now() < cached.renewAt) return cached.accessToken;
    let request = tokenRequests.get(key);
    if (!request) {
      request = this.requestToken().finally(() => tokenRequests.delete(key));
      tokenRequests.set(key, request);
    }
    const token = await request;
    tokenCache.set(key, token);
    return token.accessToken;
  }

  /** Forgets `accessToken` (Graph refused it), unless a newer one has replaced it already. */
  private dropToken(accessToken: string): void {
    const key = this.cacheKey;
    if (tokenCache.get(key)?.accessToken === accessToken) tokenCache.delete(key);
  }

  private async requestToken(): Promise<CachedToken> {
    const secret = this.secret();
    const { tenantId, clientId } = this.connection;
    const url = `${this.authority}/${encodeURIComponent(tenantId)}/oauth2/v2.0/token`;
    const form = new URLSearchParams({ client_id: clientId, client_secret: secret, grant_type: 'client_credentials', scope: this.scope });
    const what = `the token endpoint ${this.authority} (tenant ${tenantId}, ${this.source})`;
    let faults = 0;
    let throttles = 0;
    for (;;) {
      this.heartbeat();
      let response: Response;
      try {
        response = await this.fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: form.toString(),
          redirect: 'manual',
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (error) {
        if (faults >= MAX_FAULT_RETRIES) throw new GraphUnavailableError(`${what} is unreachable: ${networkReason(error, this.timeoutMs)}`);
        await this.wait(backoffMs(faults++));
        continue;
      }
      let body: Record<string, unknown>;
      try {
        body = ((await readBody(response)) ?? {}) as Record<string, unknown>;
      } catch (error) {
        if (faults >= MAX_FAULT_RETRIES) throw new GraphUnavailableError(`${what} did not finish its answer: ${networkReason(error, this.timeoutMs)}`);
        await this.wait(backoffMs(faults++));
        continue;
      }
      if (response.ok) {
        const accessToken = body.access_token;
        const expiresIn = Number(body.expires_in);
        if (typeof accessToken !== 'string' || accessToken === '' || !Number.isFinite(expiresIn)) {
          throw new GraphUnavailableError(`${what} answered without an access token and its lifetime`);
        }
        const lifetime = expiresIn * 1000;
        return { accessToken, renewAt: Date.now() + lifetime - Math.min(TOKEN_RENEWAL_MARGIN_MS, lifetime / 10) };
      }
      const error = typeof body.error === 'string' ? body.error : `HTTP ${response.status}`;
      const description = typeof body.error_description === 'string' ? body.error_description.split(/\r?\n/)[0]!.trim() : '';
      const trace = [
        typeof body.trace_id === 'string' ? `trace ID ${body.trace_id}` : '',
        typeof body.correlation_id === 'string' ? `correlation ID ${body.correlation_id}` : '',
      ].filter(Boolean);
      const detail = redact(`${error}${description ? `: ${description}` : ''}${trace.length ? ` (${trace.join(', ')})` : ''}`, [secret]);
      if (response.status === 429 || response.status >= 500) {
        const after = retryAfterMs(response.headers.get('retry-after'));
        const isThrottle = response.status === 429 || response.status === 503;
        const exhausted = isThrottle ? throttles >= MAX_THROTTLE_RETRIES : faults >= MAX_FAULT_RETRIES;
        if (exhausted || (after ?? 0) > MAX_SINGLE_WAIT_MS) {
          throw new GraphUnavailableError(`${what} answered ${response.status} (${detail})`, after);
        }
        await this.wait(after ?? backoffMs(isThrottle ? throttles : faults));
        if (isThrottle) throttles++;
        else faults++;
        continue;
      }
      // invalid_client (a wrong or expired secret), unauthorized_client (no such app in the tenant),
      // invalid_request (no such tenant), invalid_scope: the configuration or the secret must change.
      throw new PermanentError(
        'SourceCredentials',
        `Entra ID refused the client credentials of ${this.source} (tenant ${tenantId}, client ${clientId}, secret from ${this.connection.clientSecretEnv}): ${detail}`,
      );
    }
  }

  /**
   * GETs a Graph URL and returns its JSON body. Throttling (429, 503) waits for Retry-After and
   * retries up to MAX_THROTTLE_RETRIES times; other 5xx, network errors and timeouts back off and
   * retry up to MAX_FAULT_RETRIES times; both then throw GraphUnavailableError. A 401 renews the
   * token and retries once. 403, 404 and other 4xx are PermanentErrors.
   */
  async get(url: string, request: GraphGetRequest): Promise<Record<string, unknown>> {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      throw new PermanentError('SourceRequest', `not a URL to read from Microsoft Graph (${this.source}): ${url.slice(0, 200)}`);
    }
    if (target.origin !== new URL(this.graph).origin) {
      // Never send the token anywhere but the configured Graph.
      throw new PermanentError('SourceRequest', `refusing to follow a link to ${target.origin}, which is not ${this.source}'s Graph (${this.graph})`);
    }
    const what = `GET ${target.pathname}`;
    let faults = 0;
    let throttles = 0;
    let renewedToken = false;
    let throttleWaited = 0;
    let lastRetryAfter: number | undefined;
    for (;;) {
      const token = await this.token();
      this.heartbeat();
      const scrub = (text: string) => redact(text, [token, this.env[this.connection.clientSecretEnv]]);
      let response: Response;
      let body: unknown;
      try {
        response = await this.fetch(target, {
          headers: { ...request.headers, authorization: `Bearer ${token}`, accept: 'application/json' },
          redirect: 'manual',
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        body = await readBody(response);
      } catch (error) {
        if (faults >= MAX_FAULT_RETRIES) {
          throw new GraphUnavailableError(
            `Microsoft Graph (${this.graph}) failed ${what} for ${this.source} ${faults + 1} times; last: ${scrub(networkReason(error, this.timeoutMs))}`,
            lastRetryAfter,
          );
        }
        await this.wait(backoffMs(faults++));
        continue;
      }
      const status = response.status;
      if (response.ok) {
        if (typeof body !== 'object' || body === null || Array.isArray(body) || 'unparsed' in body) {
          if (faults >= MAX_FAULT_RETRIES) throw new GraphUnavailableError(`Microsoft Graph answered ${what} for ${this.source} with something other than a JSON object`);
          await this.wait(backoffMs(faults++));
          continue;
        }
        return body as Record<string, unknown>;
      }
      const info = graphError(body);
      const said = scrub(`${info.code}: ${info.message}${info.requestId ? ` (request-id ${info.requestId})` : ''}`);
      if (status === 429 || status === 503) {
        const after = retryAfterMs(response.headers.get('retry-after'));
        lastRetryAfter = after;
        const wait = after ?? backoffMs(throttles + 1);
        if (throttles >= MAX_THROTTLE_RETRIES || wait > MAX_SINGLE_WAIT_MS || throttleWaited + wait > MAX_TOTAL_WAIT_MS) {
          throw new GraphUnavailableError(
            `Microsoft Graph is throttling ${this.source}: ${what} answered ${status} ${throttles + 1} times` +
              `${after !== undefined ? ` (Retry-After ${Math.ceil(after / 1000)} s)` : ''}; last: ${said}`,
            after,
          );
        }
        // Graph documents Retry-After on throttling; without it, back off exponentially.
        await this.wait(wait);
        throttleWaited += wait;
        throttles++;
        continue;
      }
      if (status >= 500) {
        if (faults >= MAX_FAULT_RETRIES) {
          throw new GraphUnavailableError(`Microsoft Graph failed ${what} for ${this.source} ${faults + 1} times; last: ${status} ${said}`, lastRetryAfter);
        }
        await this.wait(backoffMs(faults++));
        continue;
      }
      if (status === 401) {
        this.dropToken(token);
        if (!renewedToken) {
          renewedToken = true;
          continue;
        }
        throw new PermanentError(
          'SourceCredentials',
          `Microsoft Graph refused the access token of ${this.source} twice, a fresh one too (${what}: ${said}); check the app registration and tenant`,
        );
      }
      if (status === 403) {
        throw new PermanentError(
          'SourcePermission',
          `Microsoft Graph refused ${what} (${this.source}): the app registration needs the application permission ${request.permission}, granted with admin consent (Graph said ${said})`,
        );
      }
      if (request.delta && (status === 410 || STALE_STATE_CODES.has(info.code))) {
        throw new GraphStaleStateError(`${what}: ${status} ${said}`);
      }
      if (status >= 300 && status < 400) {
        throw new PermanentError('SourceRequest', `Microsoft Graph redirected ${what} (${this.source}) to ${response.headers.get('location') ?? 'nowhere'}; check graphUrl (${this.graph})`);
      }
      if (status === 404) {
        throw new PermanentError('SourceNotFound', `Microsoft Graph has no ${what} (${this.source}): ${said}; check graphUrl (${this.graph})`);
      }
      throw new PermanentError('SourceRequest', `Microsoft Graph rejected ${what} (${this.source}) with ${status}: ${said}`);
    }
  }
}

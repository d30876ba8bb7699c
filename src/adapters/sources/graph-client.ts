import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ClientCertificateCredential, ClientSecretCredential, type TokenCredential } from '@azure/identity';
import { Agent, fetch as undiciFetch } from 'undici';
import { PermanentError } from '../errors.js';
import { certificateFileProblem, untrustedCertificate } from '../tls.js';

/**
 * A small Microsoft Graph client: app-only tokens from the Microsoft identity platform through
 * `@azure/identity` (a client secret or a client certificate), and GET requests with Graph's
 * documented fault handling (throttling with Retry-After, retried server faults, one token refresh
 * on 401, permanent errors for what retrying cannot fix).
 *
 * Tokens: `ClientSecretCredential` or `ClientCertificateCredential` (MSAL underneath: it reads the
 * authority's OpenID metadata, signs the client assertion for a certificate, caches the token).
 * `disableInstanceDiscovery` is always set: the authority is the one configured (a national cloud,
 * a proxy, the tests' fake), never looked up at Microsoft's discovery endpoint.
 *
 * Graph requests: hand-written on `fetch` rather than `@microsoft/microsoft-graph-client`, whose
 * retry handler waits out Retry-After without heartbeating the activity, gives up after 3 attempts
 * without telling the caller how long Graph asked to wait (the activity's next retry delay here),
 * and follows any `@odata.nextLink` with the token, where this client refuses a link to another
 * origin.
 *
 * Secrets and tokens never appear in errors or logs: messages are built from the identity
 * platform's and Graph's error codes and descriptions, and are redacted once more before throwing.
 */

/** How the app registration proves who it is. */
export type GraphCredentialConfig =
  | { readonly kind: 'secret'; /** The environment variable that holds the client secret. */ readonly env: string }
  | {
      readonly kind: 'certificate';
      /** A PEM file with the private key and the certificate registered with the app. */
      readonly file: string;
      /** The environment variable holding the private key's passphrase, when it is encrypted. */
      readonly passwordEnv?: string;
      /** Send the certificate chain (x5c) with each assertion: subject name / issuer authentication. */
      readonly sendChain?: boolean;
    };

/** What identifies an app registration in a tenant, and where its endpoints are. */
export interface GraphConnection {
  /** The source's name, for messages. */
  readonly name: string;
  readonly tenantId: string;
  readonly clientId: string;
  readonly credential: GraphCredentialConfig;
  /** e.g. https://login.microsoftonline.com (https://login.microsoftonline.us for US Government). */
  readonly authorityUrl: string;
  /** e.g. https://graph.microsoft.com (https://graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn). */
  readonly graphUrl: string;
  /** CA certificates (PEM file) to trust instead of the system's, for the authority and Graph. */
  readonly caFile?: string;
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
  /** The first wait before a failed token request is retried (doubling each time); 1 s by default. */
  readonly tokenRetryDelayMs?: number;
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

/** A credential and the token it gave, per (authority, tenant, client, credential, scope), shared in this process. */
interface CredentialEntry {
  readonly credential: TokenCredential;
  token?: CachedToken;
  /** A token request under way, so concurrent calls wait for it instead of asking again. */
  request?: Promise<CachedToken>;
}

const credentials = new Map<string, CredentialEntry>();

/** Forgets every credential and token (tests; a rotated secret or certificate takes effect at the next token anyway). */
export function clearTokenCache(): void {
  credentials.clear();
}

/** `fetch` through an agent that trusts `ca` (PEM) instead of the system's CAs; one agent per CA. */
const agents = new Map<string, Agent>();
function fetchTrusting(ca: string): typeof fetch {
  let dispatcher = agents.get(ca);
  if (!dispatcher) {
    dispatcher = new Agent({ connect: { ca } });
    agents.set(ca, dispatcher);
  }
  const agent = dispatcher;
  return ((input: string | URL, init?: RequestInit) =>
    undiciFetch(input, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher: agent })) as unknown as typeof fetch;
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

/** Where the identity platform's error description ends in an MSAL ServerError's message. */
const DESCRIPTION = /Description: (.*?)(?:\r?\n| - Correlation ID| - Trace ID|$)/s;
const TRACE_ID = /Trace ID: ([0-9a-f-]{36})/i;
const CORRELATION_ID = /Correlation ID: ([0-9a-f-]{36})/i;

/** An MSAL ServerError, as @azure/identity passes it on in `cause`: the token endpoint's answer. */
interface TokenEndpointError {
  readonly errorCode: string;
  readonly errorMessage: string;
  readonly status?: number;
}

function tokenEndpointError(error: unknown): TokenEndpointError | undefined {
  for (let e = error as { name?: string; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    const candidate = e as Partial<TokenEndpointError> & { name?: string };
    if (candidate.name === 'ServerError' && typeof candidate.errorCode === 'string') {
      return { errorCode: candidate.errorCode, errorMessage: String(candidate.errorMessage ?? ''), ...(typeof candidate.status === 'number' ? { status: candidate.status } : {}) };
    }
  }
  return undefined;
}

/** `invalid_client: AADSTS7000215: Invalid client secret provided… (trace ID …, correlation ID …)`. */
function describeTokenError(error: TokenEndpointError): string {
  const description = DESCRIPTION.exec(error.errorMessage)?.[1]?.trim();
  const trace = TRACE_ID.exec(error.errorMessage)?.[1];
  const correlation = CORRELATION_ID.exec(error.errorMessage)?.[1];
  const ids = [trace ? `trace ID ${trace}` : '', correlation ? `correlation ID ${correlation}` : ''].filter(Boolean);
  return `${error.errorCode}${description ? `: ${description}` : ''}${ids.length ? ` (${ids.join(', ')})` : ''}`;
}

export class GraphClient {
  private readonly graph: string;
  private readonly authority: string;
  private readonly fetch: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly heartbeat: () => void;
  private readonly timeoutMs: number;
  private readonly tokenRetryDelayMs: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly ca: string | undefined;

  constructor(
    private readonly connection: GraphConnection,
    options: GraphCallOptions = {},
  ) {
    this.graph = baseUrl(connection.graphUrl);
    this.authority = baseUrl(connection.authorityUrl);
    this.sleep = options.sleep ?? realSleep;
    this.heartbeat = options.heartbeat ?? (() => {});
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.tokenRetryDelayMs = options.tokenRetryDelayMs ?? FAULT_BACKOFF_MS;
    this.env = options.env ?? process.env;
    this.ca = connection.caFile === undefined ? undefined : this.readFile(connection.caFile, 'caFile', 'the CA certificates');
    this.fetch = options.fetch ?? (this.ca === undefined ? globalThis.fetch : fetchTrusting(this.ca));
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

  /** The credential in words, for messages: `secret from GRAPH_SECRET`, `certificate /etc/flowthru/app.pem`. */
  private get credentialName(): string {
    const credential = this.connection.credential;
    return credential.kind === 'secret' ? `secret from ${credential.env}` : `certificate ${credential.file}`;
  }

  private readFile(file: string, setting: string, what: string): string {
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      throw new PermanentError('SourceCredentials', `cannot read ${setting} ${file} (${what} of Entra ID ${this.source}): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }

  private secretFrom(variable: string, what: string): string {
    const value = this.env[variable];
    if (value === undefined || value === '') {
      throw new PermanentError('SourceCredentials', `the environment variable ${variable} (${what} of Entra ID ${this.source}) is not set`);
    }
    return value;
  }

  /** The secrets a message must never show. */
  private get secrets(): string[] {
    const credential = this.connection.credential;
    const variable = credential.kind === 'secret' ? credential.env : credential.passwordEnv;
    const value = variable === undefined ? undefined : this.env[variable];
    return value ? [value] : [];
  }

  /**
   * The credential for this connection, made once per process and per secret or certificate
   * content (a rotated secret or a replaced certificate file makes a new one). The certificate file
   * is read and checked here, so a wrong file is named in the error, not deep inside MSAL.
   */
  private entry(): { key: string; entry: CredentialEntry } {
    const { tenantId, clientId, credential } = this.connection;
    const identity = {
      authorityHost: this.authority,
      disableInstanceDiscovery: true,
      ...(this.ca === undefined ? {} : { tlsOptions: { ca: this.ca } }),
      // Retried inside one token request: 5xx, 429 with Retry-After and network errors.
      retryOptions: { maxRetries: MAX_FAULT_RETRIES, retryDelayInMs: this.tokenRetryDelayMs, maxRetryDelayInMs: this.tokenRetryDelayMs * 8 },
    };
    let material: string;
    let make: () => TokenCredential;
    if (credential.kind === 'secret') {
      const secret = this.secretFrom(credential.env, 'the client secret');
      material = secret;
      make = () => new ClientSecretCredential(tenantId, clientId, secret, identity);
    } else {
      const pem = this.readFile(credential.file, 'clientCertificateFile', 'the client certificate');
      const password = credential.passwordEnv === undefined ? undefined : this.secretFrom(credential.passwordEnv, 'the client certificate\'s passphrase');
      const problem = certificateFileProblem(pem, password);
      if (problem) throw new PermanentError('SourceCredentials', `clientCertificateFile ${credential.file} of Entra ID ${this.source} ${problem}`);
      material = pem + (password ?? '');
      make = () =>
        new ClientCertificateCredential(tenantId, clientId, { certificate: pem, ...(password === undefined ? {} : { certificatePassword: password }) }, {
          ...identity,
          sendCertificateChain: credential.sendChain ?? false,
        });
    }
    const fingerprint = createHash('sha256').update(material).digest('base64url');
    const key = JSON.stringify([this.authority, tenantId, clientId, credential.kind, fingerprint, this.scope, this.ca ?? '']);
    let entry = credentials.get(key);
    if (!entry) {
      entry = { credential: make() };
      credentials.set(key, entry);
    }
    return { key, entry };
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

  /** A valid access token: the cached one, or a new one from the identity platform. */
  async token(): Promise<string> {
    const { entry } = this.entry();
    if (entry.token && Date.now() < entry.token.renewAt) return entry.token.accessToken;
    if (!entry.request) {
      const request = this.requestToken(entry.credential);
      entry.request = request;
      request.then(
        (token) => {
          entry.token = token;
          if (entry.request === request) delete entry.request;
        },
        () => {
          if (entry.request === request) delete entry.request;
        },
      );
    }
    return (await entry.request).accessToken;
  }

  /**
   * Forgets `accessToken` (Graph refused it), unless a newer one has replaced it already, and the
   * credential that gave it: MSAL would otherwise hand out the same token from its own cache.
   */
  private dropToken(accessToken: string): void {
    const { key, entry } = this.entry();
    if (entry.token?.accessToken === accessToken) credentials.delete(key);
  }

  /** Where MSAL reads the tenant's OpenID metadata before it asks for a token. */
  private get metadataUrl(): string {
    return `${this.authority}/${encodeURIComponent(this.connection.tenantId)}/v2.0/.well-known/openid-configuration`;
  }

  private async requestToken(credential: TokenCredential): Promise<CachedToken> {
    const what = `the Microsoft identity platform at ${this.authority} (tenant ${this.connection.tenantId}, ${this.source})`;
    // Two request timeouts for the metadata and the token each, with the retries' backoff between them.
    const patience = 4 * this.timeoutMs + this.tokenRetryDelayMs * 2 ** (MAX_FAULT_RETRIES + 1);
    const abort = new AbortController();
    const beat = setInterval(() => this.heartbeat(), HEARTBEAT_SLICE_MS);
    let timer: NodeJS.Timeout | undefined;
    this.heartbeat();
    try {
      const token = await Promise.race([
        credential.getToken(this.scope, { abortSignal: abort.signal }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            abort.abort();
            reject(new GraphUnavailableError(`${what} gave no token within ${Math.round(patience / 1000)} s`));
          }, patience);
        }),
      ]);
      if (!token || token.token === '') throw new GraphUnavailableError(`${what} answered without an access token`);
      const lifetime = token.expiresOnTimestamp - Date.now();
      return { accessToken: token.token, renewAt: Date.now() + lifetime - Math.min(TOKEN_RENEWAL_MARGIN_MS, lifetime / 10) };
    } catch (error) {
      if (error instanceof GraphUnavailableError || error instanceof PermanentError) throw error;
      throw await this.tokenFailure(error, what);
    } finally {
      clearInterval(beat);
      clearTimeout(timer);
      this.heartbeat();
    }
  }

  /** Why no token came, as an error that names the cause and says whether retrying can help. */
  private async tokenFailure(error: unknown, what: string): Promise<Error> {
    const scrub = (text: string) => redact(text, this.secrets);
    const refused = (detail: string) =>
      new PermanentError(
        'SourceCredentials',
        `Entra ID refused the client credentials of ${this.source} (tenant ${this.connection.tenantId}, client ${this.connection.clientId}, ${this.credentialName}): ${scrub(detail)}`,
      );
    const server = tokenEndpointError(error);
    if (server) {
      const detail = describeTokenError(server);
      // invalid_client (a wrong or expired secret, a certificate not registered), unauthorized_client
      // (no such app in the tenant), invalid_request, invalid_scope: the configuration must change.
      if (server.status === undefined || server.status === 429 || server.status >= 500) {
        return new GraphUnavailableError(scrub(`${what} answered ${server.status ?? 'with an error'} (${detail})`));
      }
      return refused(detail);
    }
    const name = (error as Error | undefined)?.name;
    const message = scrub(String((error as Error | undefined)?.message ?? error).split(/\r?\n/)[0]!.slice(0, 300));
    if (name === 'CredentialUnavailableError' || /endpoints_resolution_error/.test(message)) {
      // MSAL could not read the authority's OpenID metadata and does not say why: ask it ourselves.
      return this.metadataFailure(what);
    }
    if (name === 'AbortError') return new GraphUnavailableError(`${what} gave no token: ${message}`);
    return new GraphUnavailableError(`${what} gave no token: ${name ?? 'Error'}: ${message}`);
  }

  /** Reads the tenant's OpenID metadata to say why MSAL could not: TLS, the network, an unknown tenant. */
  private async metadataFailure(what: string): Promise<Error> {
    const url = this.metadataUrl;
    let response: Response;
    let body: unknown;
    try {
      response = await this.fetch(url, { headers: { accept: 'application/json' }, redirect: 'manual', signal: AbortSignal.timeout(this.timeoutMs) });
      body = await readBody(response);
    } catch (error) {
      const certificate = untrustedCertificate((error as { cause?: unknown }).cause);
      if (certificate) {
        return new PermanentError(
          'SourceCertificate',
          `${what} presented a certificate that is not trusted (${certificate}): set caFile to the CA that signed it, or check authorityUrl (${this.authority})`,
        );
      }
      return new GraphUnavailableError(`${what} is unreachable: ${networkReason(error, this.timeoutMs)}`);
    }
    const fields = (body ?? {}) as Record<string, unknown>;
    const said = [
      typeof fields.error === 'string' ? fields.error : '',
      typeof fields.error_description === 'string' ? fields.error_description.split(/\r?\n/)[0]!.trim() : '',
    ]
      .filter(Boolean)
      .join(': ');
    if (response.status === 429 || response.status >= 500) return new GraphUnavailableError(`${what} answered ${response.status} for its OpenID metadata${said ? ` (${said})` : ''}`);
    if (fields.error === 'invalid_tenant') {
      return new PermanentError('SourceCredentials', `Entra ID does not know tenant ${this.connection.tenantId} of ${this.source} at ${this.authority}: ${said}`);
    }
    if (!response.ok) {
      return new PermanentError(
        'SourceRequest',
        `${what} answered ${response.status} for its OpenID metadata (${url})${said ? `: ${said}` : ''}; check authorityUrl and tenantId`,
      );
    }
    return new GraphUnavailableError(`${what}: MSAL could not use the OpenID metadata at ${url}`);
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
      const scrub = (text: string) => redact(text, [token, ...this.secrets]);
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
        const certificate = untrustedCertificate((error as { cause?: unknown }).cause);
        if (certificate) {
          throw new PermanentError(
            'SourceCertificate',
            `Microsoft Graph (${this.graph}) presented a certificate that is not trusted (${certificate}) to ${this.source}: set caFile to the CA that signed it, or check graphUrl`,
          );
        }
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

import { constants, createHash, randomBytes, randomUUID, verify, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { makeCertificates } from '../../src/demo/certificates.js';

/**
 * A fake Microsoft Graph (and Microsoft identity platform) on https://127.0.0.1, with a certificate
 * from a throwaway CA (`caFile`), following the documented behaviour flowthru relies on:
 *
 * - `GET /{tenant}/v2.0/.well-known/openid-configuration`: the OpenID metadata a real authority
 *   serves, which MSAL reads before it asks for a token (`invalid_tenant` AADSTS90002 for a tenant
 *   it does not know).
 * - `POST /{tenant}/oauth2/v2.0/token`, client credentials: checks tenant, client id, scope
 *   (`{url}/.default`) and the credential: a client secret, or a client assertion (RFC 7523 JWT)
 *   signed by the private key of a certificate registered with the app (`certificates`), its
 *   `x5t`/`x5t#S256` thumbprint naming the certificate, `aud` the token endpoint, `iss` = `sub` =
 *   the client id, not expired. Answers `{ token_type, expires_in, ext_expires_in, access_token }` or
 *   the identity platform's errors (`invalid_client` + AADSTS7000215, AADSTS700027 …).
 * - Every `/v1.0/…` request needs a live bearer token, else 401 `InvalidAuthenticationToken`.
 * - `GET /v1.0/users/delta`: `$select` honoured (unknown properties are a 400, unset selected
 *   properties come back as null), pages of `Prefer: odata.maxpagesize` (or the default size) with
 *   an `@odata.nextLink` carrying a `$skiptoken`, the last page an `@odata.deltaLink` carrying a
 *   `$deltatoken` that encodes a change sequence number. A deltatoken round returns the users
 *   changed since (all their selected properties) and `{ id, "@removed": { reason } }` for removed
 *   ones. `expireDeltaTokens()` makes every earlier token answer 400 `syncStateNotFound`.
 * - `GET /v1.0/subscribedSkus`.
 * - Faults: `throttleNext` (429/503 with Retry-After), `failNext` (any status), `stallNext` (no
 *   answer), `forbid` (403 `Authorization_RequestDenied`).
 */

export type GraphUser = Record<string, unknown> & { id: string };

export interface FakeSku {
  skuId: string;
  skuPartNumber: string;
  capabilityStatus?: string;
  consumedUnits: number;
  prepaidUnits: { enabled: number; suspended?: number; warning?: number; lockedOut?: number };
}

export interface FakeGraphOptions {
  users?: GraphUser[];
  skus?: FakeSku[];
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
  /** PEM certificates registered with the app (the public part only): client assertions they verify are accepted. */
  certificates?: string[];
  tokenLifetimeSeconds?: number;
  /** Users per page when the request has no `Prefer: odata.maxpagesize` (Graph's default is 100). */
  pageSize?: number;
}

export interface FakeGraphRequest {
  readonly method: string;
  /** Path and query as received, e.g. `/v1.0/users/delta?$skiptoken=…`. */
  readonly path: string;
  /** The Authorization header, if any. */
  readonly auth: string | null;
  readonly prefer: string | null;
  /** The answer's status (0 while unanswered or stalled). */
  status: number;
}

export interface FakeGraph {
  /** https://127.0.0.1:PORT: the authority and Graph root alike. */
  readonly url: string;
  /** The CA certificate (PEM file) that signed the fake's server certificate: a source's caFile. */
  readonly caFile: string;
  readonly tenantId: string;
  readonly clientId: string;
  readonly clientSecret: string;
  stop(): Promise<void>;
  addUser(user: GraphUser): void;
  /** Merges `changes` into the user (a null value clears a property). */
  updateUser(id: string, changes: Record<string, unknown>): void;
  removeUser(id: string, reason?: 'changed' | 'deleted'): void;
  /**
   * Every delta and skip token issued so far is stale: answered 400 syncStateNotFound, or with
   * `gone`, 410 Gone (with a Location to start over), as Graph answers either for an expired delta.
   */
  expireDeltaTokens(answer?: 'syncStateNotFound' | 'gone'): void;
  /** From now on every `every`-th Graph request answers 429 with `Retry-After: retryAfterSeconds`; 0 stops it. */
  throttleEvery(every: number, retryAfterSeconds?: number): void;
  /** The next `n` Graph requests answer `status` (429 or 503) with `Retry-After: retryAfterSeconds`. */
  throttleNext(n: number, retryAfterSeconds: number, status?: 429 | 503): void;
  /** The next `n` requests (to Graph, or to the token endpoint) answer `status` with an error body. */
  failNext(n: number, status: number, target?: 'graph' | 'token'): void;
  /** The next `n` Graph requests get no answer at all (until stop). */
  stallNext(n: number): void;
  /** Changes a subscribed SKU's counts: the tenant bought licences, or assigned some. */
  updateSku(skuPartNumber: string, changes: Partial<Pick<FakeSku, 'consumedUnits' | 'prepaidUnits'>>): void;
  /** Requests to paths starting with `path` (e.g. `/v1.0/subscribedSkus`) answer 403. */
  forbid(path: string): void;
  readonly requests: FakeGraphRequest[];
  readonly tokensIssued: number;
  /** Tokens issued for a client assertion (certificate credential). */
  readonly tokensIssuedForCertificate: number;
  /** The JOSE header of every client assertion accepted: `alg`, the thumbprint, `x5c` when the chain was sent. */
  readonly assertionHeaders: Record<string, unknown>[];
  /** Every access token issued so far is expired from now on. */
  expireTokensNow(): void;
  /** Graph requests only (not the token endpoint). */
  graphRequests(): FakeGraphRequest[];
}

/** Properties of microsoft.graph.user that $select may name (a subset of v1.0's, enough here). */
const USER_PROPERTIES = [
  'id', 'accountEnabled', 'ageGroup', 'assignedLicenses', 'assignedPlans', 'businessPhones', 'city', 'companyName',
  'country', 'createdDateTime', 'creationType', 'deletedDateTime', 'department', 'displayName', 'employeeHireDate',
  'employeeId', 'employeeOrgData', 'employeeType', 'externalUserState', 'faxNumber', 'givenName', 'identities',
  'imAddresses', 'jobTitle', 'lastPasswordChangeDateTime', 'mail', 'mailNickname', 'mobilePhone', 'officeLocation',
  'onPremisesDistinguishedName', 'onPremisesDomainName', 'onPremisesExtensionAttributes', 'onPremisesImmutableId',
  'onPremisesLastSyncDateTime', 'onPremisesSamAccountName', 'onPremisesSecurityIdentifier', 'onPremisesSyncEnabled',
  'onPremisesUserPrincipalName', 'otherMails', 'passwordPolicies', 'postalCode', 'preferredDataLocation',
  'preferredLanguage', 'proxyAddresses', 'showInAddressList', 'state', 'streetAddress', 'surname', 'usageLocation',
  'userPrincipalName', 'userType',
];
/** What Graph returns for a user without $select. */
const DEFAULT_SELECT = ['businessPhones', 'displayName', 'givenName', 'jobTitle', 'mail', 'mobilePhone', 'officeLocation', 'preferredLanguage', 'surname', 'userPrincipalName', 'id'];
const COLLECTIONS = new Set(['businessPhones', 'imAddresses', 'otherMails', 'proxyAddresses', 'assignedLicenses', 'assignedPlans', 'identities']);

/** State carried by a skip or delta token (base64url JSON: opaque to clients, as Graph's are). */
interface DeltaState {
  /** expireDeltaTokens() bumps the epoch; tokens of earlier epochs are stale. */
  epoch: number;
  /** Changes after this sequence number are in the round; null: a full round. */
  since: number | null;
  /** The sequence number when the round started: the next round's `since`. */
  upTo: number;
  offset: number;
  select: string[];
}

const encode = (state: object) => Buffer.from(JSON.stringify(state)).toString('base64url');

function decode(token: string): DeltaState | null {
  try {
    const state = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as DeltaState;
    return typeof state.epoch === 'number' && Array.isArray(state.select) ? state : null;
  } catch {
    return null;
  }
}

interface Fault {
  status: number;
  retryAfter?: number;
  target: 'graph' | 'token';
  stall?: boolean;
}

interface StoredUser {
  user: GraphUser;
  /** Sequence number of the last change (creation included). */
  changed: number;
}

export async function startFakeGraph(options: FakeGraphOptions = {}): Promise<FakeGraph> {
  const tenantId = options.tenantId ?? randomUUID();
  const clientId = options.clientId ?? randomUUID();
  const clientSecret = options.clientSecret ?? `secret~${randomBytes(12).toString('base64url')}`;
  const lifetime = options.tokenLifetimeSeconds ?? 3599;
  const defaultPageSize = options.pageSize ?? 100;

  let sequence = 0;
  let epoch = 1;
  let staleAnswer: 'syncStateNotFound' | 'gone' = 'syncStateNotFound';
  const users = new Map<string, StoredUser>();
  const removed = new Map<string, { changed: number; reason: 'changed' | 'deleted' }>();
  const skus = [...(options.skus ?? [])];
  const tokens = new Map<string, number>();
  let tokensIssued = 0;
  let certificateTokens = 0;
  const assertionHeaders: Record<string, unknown>[] = [];
  const registered = (options.certificates ?? []).map((pem) => {
    const x509 = new X509Certificate(pem);
    return { x509, sha1: createHash('sha1').update(x509.raw).digest('base64url'), sha256: createHash('sha256').update(x509.raw).digest('base64url') };
  });
  const faults: Fault[] = [];
  let throttling: { every: number; retryAfterSeconds: number } | undefined;
  let throttleCount = 0;
  const forbidden: string[] = [];
  const requests: FakeGraphRequest[] = [];
  const stalled = new Set<ServerResponse>();
  let url = '';

  const addUser = (user: GraphUser) => {
    users.set(user.id, { user: structuredClone(user), changed: ++sequence });
    removed.delete(user.id);
  };
  for (const user of options.users ?? []) addUser(user);

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8', 'request-id': randomUUID(), ...headers });
    res.end(text);
  }

  function graphError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}) {
    const requestId = randomUUID();
    send(res, status, { error: { code, message, innerError: { date: new Date().toISOString().slice(0, 19), 'request-id': requestId, 'client-request-id': requestId } } }, headers);
  }

  function tokenError(res: ServerResponse, status: number, error: string, code: number, description: string) {
    const traceId = randomUUID();
    const correlationId = randomUUID();
    send(res, status, {
      error,
      error_description: `AADSTS${code}: ${description}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${new Date().toISOString()}`,
      error_codes: [code],
      timestamp: new Date().toISOString(),
      trace_id: traceId,
      correlation_id: correlationId,
    });
  }

  function takeFault(target: 'graph' | 'token'): Fault | undefined {
    const index = faults.findIndex((f) => f.target === target);
    return index < 0 ? undefined : faults.splice(index, 1)[0];
  }

  async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  }

  async function token(req: IncomingMessage, res: ServerResponse, tenant: string) {
    const form = await readForm(req);
    const fault = takeFault('token');
    if (fault) {
      return send(res, fault.status, { error: 'temporarily_unavailable', error_description: 'AADSTS50196: The server is temporarily unavailable.' }, fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : {});
    }
    if (tenant !== tenantId) {
      return tokenError(res, 400, 'invalid_request', 90002, `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`);
    }
    if (form.get('grant_type') !== 'client_credentials') {
      return tokenError(res, 400, 'unsupported_grant_type', 70003, 'The app requested an unsupported grant type.');
    }
    if (form.get('client_id') !== clientId) {
      return tokenError(res, 400, 'unauthorized_client', 700016, `Application with identifier '${form.get('client_id')}' was not found in the directory '${tenantId}'.`);
    }
    const assertion = form.get('client_assertion');
    if (assertion !== null) {
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
        return tokenError(res, 400, 'invalid_request', 50027, 'Invalid client_assertion_type.');
      }
      const refusal = assertionRefusal(assertion, `${url}/${tenant}/oauth2/v2.0/token`);
      if (refusal) return tokenError(res, 401, 'invalid_client', refusal.code, refusal.description);
      certificateTokens++;
    } else if (form.get('client_secret') !== clientSecret) {
      return tokenError(res, 401, 'invalid_client', 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`);
    }
    if (form.get('scope') !== `${url}/.default`) {
      return tokenError(res, 400, 'invalid_scope', 1002012, `The provided value for scope ${form.get('scope')} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`);
    }
    const accessToken = `eyJ0eXAiOiJKV1Qi.${randomBytes(24).toString('base64url')}`;
    tokens.set(accessToken, Date.now() + lifetime * 1000);
    tokensIssued++;
    send(res, 200, { token_type: 'Bearer', expires_in: lifetime, ext_expires_in: lifetime, access_token: accessToken });
  }

  /**
   * Why a client assertion is refused, as the identity platform says it (AADSTS700027 for a
   * signature no registered certificate verifies), or undefined when it is good.
   */
  function assertionRefusal(assertion: string, audience: string): { code: number; description: string } | undefined {
    const parts = assertion.split('.');
    if (parts.length !== 3) return { code: 50012, description: 'The client assertion is not a JWT.' };
    let header: Record<string, unknown>;
    let claims: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      return { code: 50012, description: 'The client assertion is not a JWT.' };
    }
    const sha1 = typeof header.x5t === 'string' ? header.x5t : undefined;
    const sha256 = typeof header['x5t#S256'] === 'string' ? header['x5t#S256'] : undefined;
    const certificate = registered.find((c) => (sha256 !== undefined ? c.sha256 === sha256 : c.sha1 === sha1));
    if (!certificate) {
      return { code: 700027, description: `The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '${sha256 ?? sha1 ?? 'none'}']` };
    }
    const data = Buffer.from(`${parts[0]}.${parts[1]}`);
    const signature = Buffer.from(parts[2]!, 'base64url');
    const key = certificate.x509.publicKey;
    const good =
      header.alg === 'PS256'
        ? verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature)
        : header.alg === 'RS256'
          ? verify('sha256', data, key, signature)
          : false;
    if (!good) return { code: 700027, description: 'Client assertion failed signature validation.' };
    const now = Date.now() / 1000;
    if (claims.aud !== audience) return { code: 700021, description: `Client assertion audience claim does not match Realm issuer (${String(claims.aud)}).` };
    if (claims.iss !== clientId || claims.sub !== clientId) return { code: 700016, description: `Application with identifier '${String(claims.iss)}' was not found in the directory '${tenantId}'.` };
    if (typeof claims.exp !== 'number' || claims.exp < now - 300) return { code: 700024, description: 'Client assertion is not within its valid time range.' };
    if (typeof claims.nbf === 'number' && claims.nbf > now + 300) return { code: 700024, description: 'Client assertion is not within its valid time range.' };
    assertionHeaders.push(header);
    return undefined;
  }

  function openIdConfiguration(res: ServerResponse, tenant: string) {
    if (tenant !== tenantId) {
      const traceId = randomUUID();
      const correlationId = randomUUID();
      return send(res, 400, {
        error: 'invalid_tenant',
        error_description: `AADSTS90002: Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${new Date().toISOString()}`,
        error_codes: [90002],
        timestamp: new Date().toISOString(),
        trace_id: traceId,
        correlation_id: correlationId,
      });
    }
    const base = `${url}/${tenantId}`;
    send(res, 200, {
      token_endpoint: `${base}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      jwks_uri: `${url}/${tenantId}/discovery/v2.0/keys`,
      response_modes_supported: ['query', 'fragment', 'form_post'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      issuer: `${base}/v2.0`,
      request_uri_parameter_supported: false,
      userinfo_endpoint: `${url}/oidc/userinfo`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
      http_logout_supported: true,
      frontchannel_logout_supported: true,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nbf', 'tid', 'ver'],
      kerberos_endpoint: `${base}/kerberos`,
      tenant_region_scope: 'EU',
      cloud_instance_name: 'microsoftonline.com',
      cloud_graph_host_name: 'graph.windows.net',
      msgraph_host: new URL(url).host,
      rbac_url: 'https://pas.windows.net',
    });
  }

  /** The user as Graph returns it for `select`: every selected property, null when unset. */
  function project(user: GraphUser, select: readonly string[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const name of select) {
      const value = user[name];
      if (name === 'onPremisesExtensionAttributes') {
        const ext = (value ?? {}) as Record<string, unknown>;
        out[name] = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`extensionAttribute${i + 1}`, ext[`extensionAttribute${i + 1}`] ?? null]));
      } else {
        out[name] = value ?? (COLLECTIONS.has(name) ? [] : null);
      }
    }
    out.id = user.id;
    return out;
  }

  function delta(res: ServerResponse, query: URLSearchParams, prefer: string | null) {
    const known = new Set([...USER_PROPERTIES, ...[...users.values()].flatMap((u) => Object.keys(u.user))]);
    let state: DeltaState;
    const skipToken = query.get('$skiptoken');
    const deltaToken = query.get('$deltatoken');
    if (skipToken !== null || deltaToken !== null) {
      const decoded = decode((skipToken ?? deltaToken)!);
      if (!decoded) return graphError(res, 400, 'BadRequest', 'The request contains an invalid skip or delta token.');
      if (decoded.epoch !== epoch) {
        if (staleAnswer === 'gone') {
          return graphError(res, 410, 'Gone', 'The delta token has expired.', { location: `${url}/v1.0/users/delta` });
        }
        return graphError(res, 400, 'syncStateNotFound', 'The sync state generation is not found. Delta tokens can expire; please start a full synchronization.');
      }
      state = skipToken !== null ? decoded : { ...decoded, since: decoded.upTo, upTo: sequence, offset: 0 };
    } else {
      const selectParam = query.get('$select');
      const select = selectParam ? selectParam.split(',').map((s) => s.trim()).filter(Boolean) : DEFAULT_SELECT;
      for (const name of select) {
        if (!known.has(name)) return graphError(res, 400, 'BadRequest', `Could not find a property named '${name}' on type 'microsoft.graph.user'.`);
      }
      state = { epoch, since: null, upTo: sequence, offset: 0, select };
    }

    const since = state.since;
    const items: Record<string, unknown>[] = [];
    for (const stored of users.values()) {
      if (since === null || stored.changed > since) items.push(project(stored.user, state.select));
    }
    if (since !== null) {
      for (const [id, gone] of removed) if (gone.changed > since) items.push({ '@odata.type': '#microsoft.graph.user', id, '@removed': { reason: gone.reason } });
    }

    const asked = /odata\.maxpagesize=(\d+)/.exec(prefer ?? '');
    const size = asked ? Math.min(Math.max(1, Number(asked[1])), 999) : defaultPageSize;
    const page = items.slice(state.offset, state.offset + size);
    const body: Record<string, unknown> = { '@odata.context': `${url}/v1.0/$metadata#users(${state.select.join(',')})` };
    if (state.offset + size < items.length) {
      body['@odata.nextLink'] = `${url}/v1.0/users/delta?$skiptoken=${encode({ ...state, offset: state.offset + size })}`;
    } else {
      body['@odata.deltaLink'] = `${url}/v1.0/users/delta?$deltatoken=${encode({ epoch, upTo: state.upTo, select: state.select, since: null, offset: 0 })}`;
    }
    body.value = page;
    send(res, 200, body, asked ? { 'preference-applied': `odata.maxpagesize=${size}` } : {});
  }

  function subscribedSkus(res: ServerResponse) {
    send(res, 200, {
      '@odata.context': `${url}/v1.0/$metadata#subscribedSkus`,
      value: skus.map((sku) => ({
        accountName: 'Contoso',
        accountId: tenantId,
        appliesTo: 'User',
        capabilityStatus: sku.capabilityStatus ?? 'Enabled',
        consumedUnits: sku.consumedUnits,
        id: `${tenantId}_${sku.skuId}`,
        skuId: sku.skuId,
        skuPartNumber: sku.skuPartNumber,
        subscriptionIds: [randomUUID()],
        prepaidUnits: { enabled: sku.prepaidUnits.enabled, suspended: sku.prepaidUnits.suspended ?? 0, warning: sku.prepaidUnits.warning ?? 0, lockedOut: sku.prepaidUnits.lockedOut ?? 0 },
        servicePlans: [],
      })),
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const entry: FakeGraphRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      auth: req.headers.authorization ?? null,
      prefer: (req.headers.prefer as string | undefined) ?? null,
      status: 0,
    };
    requests.push(entry);
    res.on('finish', () => (entry.status = res.statusCode));
    const parsed = new URL(req.url ?? '/', url);
    const path = parsed.pathname;

    const metadata = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(path);
    if (metadata) return openIdConfiguration(res, decodeURIComponent(metadata[1]!));
    const tokenPath = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(path);
    if (tokenPath) {
      if (req.method !== 'POST') return tokenError(res, 405, 'invalid_request', 900561, 'The endpoint only accepts POST requests.');
      return token(req, res, decodeURIComponent(tokenPath[1]!));
    }
    if (!path.startsWith('/v1.0/')) return graphError(res, 400, 'BadRequest', 'Invalid version.');

    // Chaos: every n-th Graph request is throttled, for as long as it is set.
    if (throttling && ++throttleCount % throttling.every === 0) {
      return graphError(res, 429, 'TooManyRequests', 'Too many requests.', { 'retry-after': String(throttling.retryAfterSeconds) });
    }
    const fault = takeFault('graph');
    if (fault?.stall) {
      stalled.add(res);
      return;
    }
    if (fault) {
      if (fault.status === 429) return graphError(res, 429, 'TooManyRequests', 'Too many requests.', { 'retry-after': String(fault.retryAfter ?? 1) });
      if (fault.status === 503) return graphError(res, 503, 'ServiceUnavailable', 'Service unavailable.', fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : {});
      if (fault.status === 401) return graphError(res, 401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.', { 'www-authenticate': 'Bearer realm=""' });
      return graphError(res, fault.status, fault.status >= 500 ? 'generalException' : 'BadRequest', `Injected failure (${fault.status}).`);
    }

    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!auth) return graphError(res, 401, 'InvalidAuthenticationToken', 'Access token is empty.', { 'www-authenticate': 'Bearer realm=""' });
    const expires = tokens.get(auth[1]!);
    if (expires === undefined) return graphError(res, 401, 'InvalidAuthenticationToken', 'Invalid JWT token. The token is malformed.', { 'www-authenticate': 'Bearer realm=""' });
    if (expires <= Date.now()) {
      return graphError(res, 401, 'InvalidAuthenticationToken', 'Lifetime validation failed, the token is expired.', { 'www-authenticate': 'Bearer realm="", error="invalid_token", error_description="The access token has expired"' });
    }
    if (forbidden.some((p) => path.startsWith(p))) {
      return graphError(res, 403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
    }
    if (req.method !== 'GET') return graphError(res, 405, 'Request_BadRequest', 'Method not allowed.');
    if (path === '/v1.0/users/delta') return delta(res, parsed.searchParams, entry.prefer);
    if (path === '/v1.0/subscribedSkus') return subscribedSkus(res);
    return graphError(res, 400, 'BadRequest', `Resource not found for the segment '${path.split('/')[2] ?? ''}'.`);
  }

  const certificateDir = mkdtempSync(join(tmpdir(), 'flowthru-fake-graph-'));
  const tls = makeCertificates(certificateDir);
  const server = createServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, (req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) graphError(res, 500, 'generalException', String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    caFile: tls.ca,
    tenantId,
    clientId,
    clientSecret,
    async stop() {
      for (const res of stalled) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(certificateDir, { recursive: true, force: true });
    },
    addUser,
    updateUser(id, changes) {
      const stored = users.get(id);
      if (!stored) throw new Error(`no user ${id}`);
      const user = { ...stored.user };
      for (const [key, value] of Object.entries(changes)) {
        if (value === null) delete user[key];
        else user[key] = structuredClone(value);
      }
      users.set(id, { user: user as GraphUser, changed: ++sequence });
    },
    removeUser(id, reason = 'changed') {
      if (!users.delete(id)) throw new Error(`no user ${id}`);
      removed.set(id, { changed: ++sequence, reason });
    },
    expireDeltaTokens(answer = 'syncStateNotFound') {
      epoch++;
      staleAnswer = answer;
    },
    updateSku(skuPartNumber, changes) {
      const index = skus.findIndex((s) => s.skuPartNumber === skuPartNumber);
      if (index < 0) throw new Error(`fake Graph: no SKU ${skuPartNumber}`);
      skus[index] = { ...skus[index]!, ...changes };
    },
    throttleEvery(every, retryAfterSeconds = 1) {
      throttling = every > 0 ? { every, retryAfterSeconds } : undefined;
      throttleCount = 0;
    },
    throttleNext(n, retryAfterSeconds, status = 429) {
      for (let i = 0; i < n; i++) faults.push({ status, retryAfter: retryAfterSeconds, target: 'graph' });
    },
    failNext(n, status, target = 'graph') {
      for (let i = 0; i < n; i++) faults.push({ status, target });
    },
    stallNext(n) {
      for (let i = 0; i < n; i++) faults.push({ status: 0, target: 'graph', stall: true });
    },
    forbid(path) {
      forbidden.push(path);
    },
    requests,
    get tokensIssued() {
      return tokensIssued;
    },
    get tokensIssuedForCertificate() {
      return certificateTokens;
    },
    assertionHeaders,
    expireTokensNow() {
      for (const key of tokens.keys()) tokens.set(key, 0);
    },
    graphRequests() {
      return requests.filter((r) => r.path.startsWith('/v1.0/'));
    },
  };
}

/**
 * A self-signed RSA certificate for an app registration, as `az ad sp create-for-rbac --create-cert`
 * makes one: `file` holds the private key and the certificate (what ClientCertificateCredential
 * reads), `certificate` the public part to register with the fake.
 */
export function makeClientCertificate(dir: string, name = 'app', passphrase?: string): { file: string; certificate: string; key: string } {
  const keyFile = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', cert, '-days', '2', '-subj', `/CN=flowthru ${name}`], { stdio: 'pipe' });
  const key =
    passphrase === undefined
      ? readFileSync(keyFile, 'utf8')
      : execFileSync('openssl', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', keyFile, '-passout', `pass:${passphrase}`], { encoding: 'utf8' });
  const certificate = readFileSync(cert, 'utf8');
  const file = join(dir, `${name}.pem`);
  writeFileSync(file, key + certificate, { mode: 0o600 });
  return { file, certificate, key };
}

/** `fetch` that trusts the CA in `caFile` (the fake's), as a source with that caFile does. */
export function trustingFetch(caFile: string): typeof fetch {
  const dispatcher = new Agent({ connect: { ca: readFileSync(caFile, 'utf8') } });
  return ((input: string | URL | Request, init?: RequestInit) =>
    undiciFetch(input instanceof Request ? input.url : input, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher })) as unknown as typeof fetch;
}

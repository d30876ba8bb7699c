import { createHash } from 'node:crypto';
import type { SourceConfig } from '../../domain/config/schema.js';
import type { AttributeValue } from '../../domain/user.js';
import { PermanentError } from '../errors.js';
import { clearTokenCache, GraphClient, GraphStaleStateError, type GraphCallOptions } from './graph-client.js';
import type { RawRecord } from './records.js';

export { GraphUnavailableError } from './graph-client.js';

/**
 * Microsoft Entra ID users through Microsoft Graph's delta query (`/v1.0/users/delta`).
 *
 * A round of delta pages starts at `/users/delta?$select=…` (every user: a full read) or at the
 * `@odata.deltaLink` of the previous round (only the users changed or removed since: an incremental
 * read). Each call reads one Graph page and returns the `@odata.nextLink` as the cursor (Graph's
 * links are stateless, so the link is all there is to resume); the round's last page carries the
 * new `@odata.deltaLink`, which the caller persists once the sync has succeeded.
 *
 * Without `Prefer: return=minimal` Graph returns every selected property of a changed user, not
 * only the changed ones, so an incremental record is as complete as a full one.
 */

export type EntraSourceConfig = Extract<SourceConfig, { type: 'entra' }>;

/**
 * Where a round stopped: Graph's `@odata.nextLink`. `full` is true when this round was restarted
 * as a full read because Graph had forgotten its delta state (a stale `$deltatoken` or
 * `$skiptoken`); every later page of the round then reports `restartedFull` too, so whichever page
 * the caller looks at tells it to treat the round as a full sync. A round the caller started
 * without a watermark is a full read anyway and keeps `full: false` unless it had to restart.
 */
export interface EntraCursor {
  readonly nextLink: string;
  readonly full: boolean;
}

/** The `@odata.deltaLink` that starts the next incremental round; persist it after a successful sync. */
export interface EntraWatermark {
  readonly deltaLink: string;
}

export interface EntraPage {
  /** Users, with `externalId` = the Graph user id (a GUID) among their attributes. */
  readonly records: RawRecord[];
  readonly problems: { at: string; message: string }[];
  /** Ids of the `@removed` entries (deleted, soft-deleted or out of scope): feed the delete sync. */
  readonly removed: string[];
  /** null when the delta round is complete. */
  readonly next: EntraCursor | null;
  /** On the round's last page: the watermark to persist after the sync succeeds. */
  readonly watermark: EntraWatermark | null;
  /** The delta state was stale and this round restarted as a full read: treat it as a full sync. */
  readonly restartedFull: boolean;
}

export interface EntraReadOptions extends GraphCallOptions {
  /** Where the previous round ended; used only when `cursor` is null. */
  readonly watermark?: EntraWatermark | null;
}

export interface SubscribedSku {
  skuId: string;
  skuPartNumber: string;
  /** prepaidUnits.enabled: licences bought. */
  enabled: number;
  /** consumedUnits: licences assigned. */
  consumed: number;
  /** Enabled, Warning, Suspended, Deleted, LockedOut. */
  capabilityStatus: string;
}

/** The user properties every read selects (`$select`); attributeMap keys naming other properties are added. */
export const ENTRA_USER_ATTRIBUTES: readonly string[] = Object.freeze([
  'id',
  'displayName',
  'givenName',
  'surname',
  'mail',
  'userPrincipalName',
  'city',
  'state',
  'country',
  'postalCode',
  'department',
  'jobTitle',
  'officeLocation',
  'businessPhones',
  'mobilePhone',
  'employeeId',
  'companyName',
  'usageLocation',
  'accountEnabled',
  'onPremisesExtensionAttributes',
]);

/** Graph's users hold at most 999 per page. */
export const GRAPH_MAX_PAGE_SIZE = 999;

/** The application permissions each endpoint needs, named when Graph answers 403. */
const USERS_PERMISSION = 'User.Read.All (and Organization.Read.All for licences)';
const SKUS_PERMISSION = 'Organization.Read.All';

/**
 * Graph user property → canonical attribute. The source's configured attributeMap is merged over
 * it (`{ ...entraDefaultAttributeMap(), ...source.attributeMap }`), so configuration can override
 * any entry. `manager` is not mapped: it is a relationship Graph only returns with `$expand`.
 */
export function entraDefaultAttributeMap(): Record<string, string> {
  return {
    userPrincipalName: 'username',
    mail: 'email',
    givenName: 'firstName',
    surname: 'lastName',
    displayName: 'displayName',
    department: 'department',
    city: 'city',
    state: 'state',
    country: 'country',
    postalCode: 'postalCode',
    jobTitle: 'title',
    employeeId: 'employeeId',
    businessPhones: 'phone',
    mobilePhone: 'mobile',
    usageLocation: 'usageLocation',
  };
}

/** Forgets every cached access token (tests; a rotated secret takes effect at the next token anyway). */
export function clearEntraTokenCache(): void {
  clearTokenCache();
}

/** A Graph property name as $select takes it (directory extensions `extension_<app>_<name>` included). */
const PROPERTY = /^[A-Za-z][A-Za-z0-9_]*$/;
/** The flattened names of onPremisesExtensionAttributes, which $select reaches through their parent. */
const EXTENSION_ATTRIBUTE = /^extensionAttribute([1-9]|1[0-5])$/;
/** Names flowthru gives raw attributes itself, not Graph properties. */
const OWN_NAMES = new Set(['externalId']);

/** The $select list: the base attributes plus the Graph properties the attribute map names. */
export function entraSelect(source: Pick<EntraSourceConfig, 'attributeMap'>): string[] {
  const select = [...ENTRA_USER_ATTRIBUTES];
  for (const key of Object.keys(source.attributeMap)) {
    if (!PROPERTY.test(key) || EXTENSION_ATTRIBUTE.test(key) || OWN_NAMES.has(key)) continue;
    if (!select.some((s) => s.toLowerCase() === key.toLowerCase())) select.push(key);
  }
  return select;
}

function client(source: EntraSourceConfig, options: GraphCallOptions): GraphClient {
  return new GraphClient(
    {
      name: source.name,
      tenantId: source.tenantId,
      clientId: source.clientId,
      credential:
        source.clientCertificateFile !== undefined
          ? {
              kind: 'certificate',
              file: source.clientCertificateFile,
              ...(source.clientCertificatePasswordEnv === undefined ? {} : { passwordEnv: source.clientCertificatePasswordEnv }),
              ...(source.sendCertificateChain === undefined ? {} : { sendChain: source.sendCertificateChain }),
            }
          : { kind: 'secret', env: source.clientSecretEnv ?? '' },
      authorityUrl: source.authorityUrl,
      graphUrl: source.graphUrl,
      ...(source.caFile === undefined ? {} : { caFile: source.caFile }),
    },
    options,
  );
}

/**
 * A deltaLink keeps the $select of the round that started it. The watermark remembers which
 * $select that was in its URL fragment (never sent over HTTP), so a changed attribute map starts a
 * full read instead of silently never delivering the newly mapped property.
 */
const SELECT_MARK = 'flowthru-select=';

function selectMark(select: readonly string[]): string {
  return createHash('sha256').update(select.join(',')).digest('base64url').slice(0, 16);
}

/** The URL to resume from a watermark, or null when it cannot be used (other Graph, other $select). */
function resumeUrl(watermark: EntraWatermark, graphRoot: string, mark: string): string | null {
  let url: URL;
  try {
    url = new URL(watermark.deltaLink);
  } catch {
    return null;
  }
  if (url.origin !== new URL(graphRoot).origin) return null;
  if (url.hash !== `#${SELECT_MARK}${mark}`) return null;
  url.hash = '';
  return url.toString();
}

/** One raw value as a source attribute: strings, lists of strings; null and empty dropped. */
function rawValue(value: unknown): AttributeValue {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) {
    const list = value
      .map((v) => (v === null || v === undefined ? undefined : typeof v === 'object' ? JSON.stringify(v) : String(v)))
      .filter((v): v is string => v !== undefined);
    return list.length === 0 ? undefined : list;
  }
  return JSON.stringify(value);
}

/**
 * A Graph user as raw attributes: `externalId` = id, `onPremisesExtensionAttributes.extensionAttributeN`
 * as `extensionAttributeN`, other complex properties flattened as `parent.child`, arrays kept as
 * lists, booleans and numbers as text, nulls and OData annotations (`@odata.type`) dropped.
 */
function userAttributes(user: Record<string, unknown>, id: string): Record<string, AttributeValue> {
  const attributes: Record<string, AttributeValue> = { externalId: id };
  const put = (name: string, value: unknown) => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) {
        if (!key.includes('@')) put(name === 'onPremisesExtensionAttributes' ? key : `${name}.${key}`, inner);
      }
      return;
    }
    const raw = rawValue(value);
    if (raw !== undefined) attributes[name] = raw;
  };
  for (const [key, value] of Object.entries(user)) {
    if (key.includes('@')) continue;
    put(key, value);
  }
  return attributes;
}

function pageItems(body: Record<string, unknown>, what: string): unknown[] {
  if (!Array.isArray(body.value)) throw new Error(`Microsoft Graph answered ${what} without a "value" list`);
  return body.value as unknown[];
}

/**
 * Reads one Graph page of users: the first page of a round (from the watermark's deltaLink when
 * there is one, else a full read), or the page at `cursor`. A stale delta or skip token (400
 * `syncStateNotFound`/`resyncRequired`, 410 Gone) drops the watermark and restarts the round as a
 * full read, with `restartedFull: true` on that page and every later one of the round.
 */
export async function readEntraPage(
  source: EntraSourceConfig,
  cursor: EntraCursor | null,
  pageSize: number,
  options: EntraReadOptions = {},
): Promise<EntraPage> {
  const graph = client(source, options);
  const select = entraSelect(source);
  const mark = selectMark(select);
  const fullReadUrl = `${graph.root}/v1.0/users/delta?$select=${select.join(',')}`;
  const size = Number.isFinite(pageSize) ? Math.min(Math.max(1, Math.floor(pageSize)), GRAPH_MAX_PAGE_SIZE) : GRAPH_MAX_PAGE_SIZE;
  const request = { permission: USERS_PERMISSION, delta: true, headers: { prefer: `odata.maxpagesize=${size}` } };

  let restartedFull = cursor?.full ?? false;
  let url: string;
  if (cursor) {
    url = cursor.nextLink;
  } else if (options.watermark) {
    const resume = resumeUrl(options.watermark, graph.root, mark);
    if (resume === null) restartedFull = true;
    url = resume ?? fullReadUrl;
  } else {
    url = fullReadUrl;
  }

  let body: Record<string, unknown>;
  try {
    body = await graph.get(url, request);
  } catch (error) {
    if (!(error instanceof GraphStaleStateError)) throw error;
    if (url === fullReadUrl) {
      throw new PermanentError('SourceRequest', `Microsoft Graph has no delta state even for a fresh read of users (source "${source.name}"): ${error.message}`);
    }
    restartedFull = true;
    body = await graph.get(fullReadUrl, request);
  }

  const records: RawRecord[] = [];
  const problems: EntraPage['problems'] = [];
  const removed: string[] = [];
  pageItems(body, 'GET /v1.0/users/delta').forEach((item, index) => {
    const user = item as Record<string, unknown> | null;
    const id = typeof user?.id === 'string' && user.id.trim() !== '' ? user.id : undefined;
    if (!user || typeof user !== 'object' || Array.isArray(user) || id === undefined) {
      problems.push({ at: `users/delta page item ${index + 1}`, message: 'a user without an id, skipped' });
      return;
    }
    if (user['@removed'] !== undefined) removed.push(id);
    // accountEnabled is always selected; null (unknown) is not taken for disabled.
    else if (user.accountEnabled === false) records.push({ at: `user ${id}`, attributes: userAttributes(user, id), disabled: 'accountEnabled is false' });
    else records.push({ at: `user ${id}`, attributes: userAttributes(user, id) });
  });

  const nextLink = body['@odata.nextLink'];
  const deltaLink = body['@odata.deltaLink'];
  if (typeof nextLink === 'string') {
    return { records, problems, removed, next: { nextLink, full: restartedFull }, watermark: null, restartedFull };
  }
  if (typeof deltaLink !== 'string') {
    throw new Error(`Microsoft Graph answered GET /v1.0/users/delta (source "${source.name}") with neither @odata.nextLink nor @odata.deltaLink`);
  }
  const watermark = new URL(deltaLink);
  watermark.hash = `${SELECT_MARK}${mark}`;
  return { records, problems, removed, next: null, watermark: { deltaLink: watermark.toString() }, restartedFull };
}

/** The tenant's licences: `GET /v1.0/subscribedSkus` (application permission Organization.Read.All). */
export async function readSubscribedSkus(source: EntraSourceConfig, options: GraphCallOptions = {}): Promise<SubscribedSku[]> {
  const graph = client(source, options);
  const skus: SubscribedSku[] = [];
  let url: string | null = `${graph.root}/v1.0/subscribedSkus`;
  while (url !== null) {
    const body: Record<string, unknown> = await graph.get(url, { permission: SKUS_PERMISSION });
    for (const item of pageItems(body, 'GET /v1.0/subscribedSkus')) {
      const sku = item as {
        skuId?: unknown;
        skuPartNumber?: unknown;
        capabilityStatus?: unknown;
        consumedUnits?: unknown;
        prepaidUnits?: { enabled?: unknown } | null;
      } | null;
      if (typeof sku?.skuId !== 'string') continue;
      skus.push({
        skuId: sku.skuId,
        skuPartNumber: typeof sku.skuPartNumber === 'string' ? sku.skuPartNumber : sku.skuId,
        enabled: Number(sku.prepaidUnits?.enabled ?? 0) || 0,
        consumed: Number(sku.consumedUnits ?? 0) || 0,
        capabilityStatus: typeof sku.capabilityStatus === 'string' ? sku.capabilityStatus : 'Unknown',
      });
    }
    const next = body['@odata.nextLink'];
    url = typeof next === 'string' ? next : null;
  }
  return skus;
}

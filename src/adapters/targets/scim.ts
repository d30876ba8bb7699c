/*
 * The SCIM 2.0 target: a client of a service provider's /Users endpoint (RFC 7643 resources,
 * RFC 7644 protocol) on Node's fetch; npm has no maintained SCIM client.
 *
 * A push converges. The resource is found by its remembered id, else by `externalId eq` and then
 * `userName eq` filters; it is compared with what the fields say and written only where it
 * differs: a PatchOp of replace/remove operations, or a full PUT when the service provider's
 * ServiceProviderConfig says it does not do PATCH. A resource that is not there is POSTed; when
 * the POST meets one that is (a 409 uniqueness, or the re-run of a POST whose answer was lost) that
 * one is adopted, never doubled. With etag support each write carries If-Match of the version read;
 * a 412 (someone else wrote in between) reads again and compares again, a few times.
 *
 * flowthru owns only the attributes its fields name: an attribute whose field the target does not
 * configure is left as it is, and of the multi-valued emails and phoneNumbers only the entries of
 * the types it writes (work email; work and mobile phone) are replaced, the others are kept.
 *
 * The bearer token is read from the environment on every push and never appears in a message.
 */

import type { ScimTargetConfig } from '../../domain/config/schema.js';
import { SCIM_FIELDS } from '../../domain/targets.js';
import { retryAfterMs, TargetError, type PushResult, type TargetFields, type TargetPlugin, type TargetPush } from './types.js';

export type { ScimTargetConfig } from '../../domain/config/schema.js';
/** The field names a SCIM target understands; config validation refuses others. */
export { SCIM_FIELDS };
export type ScimField = (typeof SCIM_FIELDS)[number];

export interface ScimTargetOptions {
  readonly fetch?: typeof fetch;
}

const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
const ENTERPRISE_SCHEMA = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const MEDIA_TYPE = 'application/scim+json';
/** Writes refused with 412 are re-read and tried this many times in all before the push is retried later. */
const MAX_WRITE_TRIES = 3;
/** How much of an answer that is not a SCIM error goes into a message. */
const BODY_EXCERPT_CHARS = 200;

type Resource = Record<string, unknown>;
/** An attribute's place: `['displayName']`, `['name', 'givenName']`, `[ENTERPRISE_SCHEMA, 'department']`. */
type Path = readonly string[];

/** A resource as read: its id and the version an If-Match names. */
interface Held {
  readonly id: string;
  readonly body: Resource;
  readonly version: string | undefined;
}

/** One attribute to write: `value` undefined removes it. `fields` name it in the summary. */
interface Change {
  readonly fields: readonly ScimField[];
  readonly path: Path;
  readonly value: unknown;
}

/** What the service provider says it supports (ServiceProviderConfig, RFC 7643 §5). */
interface Features {
  readonly patch: boolean;
  readonly etag: boolean;
  readonly filter: boolean;
}

/** An HTTP answer with its body parsed: JSON, `{ unparsed }` for other text, null when empty. */
interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: unknown;
}

/** What the resource should hold: the push's fields, and `active` read from them. */
interface Want {
  readonly fields: TargetFields;
  readonly active: boolean;
}

/** One push's connection details and how messages name it. */
interface Call {
  readonly config: ScimTargetConfig;
  readonly push: TargetPush;
  readonly token: string | undefined;
  readonly fetch: typeof fetch;
  readonly base: string;
}

export function createScimTarget(config: ScimTargetConfig, env: NodeJS.ProcessEnv = process.env, options: ScimTargetOptions = {}): TargetPlugin {
  const doFetch = options.fetch ?? globalThis.fetch;
  const base = config.url.replace(/\/+$/, '');
  let features: Promise<Features> | undefined;

  /** Read on every push: a token set (or fixed) after the worker started is used by the next retry. */
  function token(push: TargetPush): string | undefined {
    if (config.tokenEnv === undefined) return undefined;
    const value = env[config.tokenEnv];
    if (value === undefined || value === '') {
      throw new TargetError(`the environment variable ${config.tokenEnv} (the bearer token of SCIM target "${push.target}") is not set`, {
        retryable: false,
        kind: 'MissingSecret',
      });
    }
    return value;
  }

  function begin(push: TargetPush): Call {
    return { config, push, token: token(push), fetch: doFetch, base };
  }

  /** Read once per plugin; a failed read is not kept, so the next push asks again. */
  function serviceProvider(call: Call): Promise<Features> {
    features ??= readFeatures(call).catch((error: unknown) => {
      features = undefined;
      throw error;
    });
    return features;
  }

  return {
    async provision(push) {
      const call = begin(push);
      const want = wanted(call, push.subject.fields);
      const supports = await serviceProvider(call);
      const located = await locate(call, supports, want.fields);
      if (located) return converge(call, supports, want, located.held, located.how);
      const created = await create(call, want);
      const gone = push.memory.remoteId ? ` (the remembered /Users/${push.memory.remoteId} is gone)` : '';
      if ('held' in created) return { remoteId: created.held.id, changed: true, summary: `created /Users/${created.held.id}${gone}` };
      // The userName (or another unique attribute) is taken: by a resource of ours whose POST
      // answer was lost, or one made before flowthru. Found by filter, it is adopted.
      const found = supports.filter ? await search(call, want.fields) : null;
      if (!found) throw created.conflict;
      return converge(call, supports, want, found.held, `409 ${created.scimType ?? 'conflict'}`);
    },

    async deprovision(push) {
      const call = begin(push);
      const supports = await serviceProvider(call);
      // What was last pushed is what the target holds; the current fields only stand in before a first push.
      const located = await locate(call, supports, push.memory.pushed ?? push.subject.fields);
      if (!located) return { remoteId: null, changed: false, summary: 'already absent' };
      return config.deprovision === 'delete' ? remove(call, supports, located.held) : deactivate(call, supports, located.held);
    },

    // fetch keeps no connection of ours that needs closing.
    close: async () => {},
  };
}

/* ------------------------------------------------------------------ finding and writing */

async function readFeatures(call: Call): Promise<Features> {
  const answer = await request(call, 'GET', '/ServiceProviderConfig');
  // The endpoint is mandatory (RFC 7644 §4), but some providers omit it: assume the common case.
  if (answer.status === 404) return { patch: true, etag: false, filter: true };
  const body = answer.body;
  if (answer.status !== 200 || !isObject(body)) throw failure(call, 'GET /ServiceProviderConfig', answer);
  const supported = (name: string) => {
    const feature = body[keyOf(body, name)];
    return isObject(feature) && feature.supported === true;
  };
  return { patch: supported('patch'), etag: supported('etag'), filter: supported('filter') };
}

/** The resource by its remembered id, else by filter; null when the target holds none. */
async function locate(call: Call, supports: Features, fields: TargetFields): Promise<{ held: Held; how: string | null } | null> {
  const remoteId = call.push.memory.remoteId;
  if (remoteId) {
    const held = await read(call, remoteId);
    if (held) return { held, how: null };
  }
  if (!supports.filter) return null;
  const found = await search(call, fields);
  // Found without being remembered: ours from a push whose answer was lost, or someone else's made before.
  return found ? { held: found.held, how: `found by ${found.by}` } : null;
}

async function read(call: Call, id: string): Promise<Held | null> {
  const path = `/Users/${encodeURIComponent(id)}`;
  const answer = await request(call, 'GET', path);
  if (answer.status === 404) return null;
  if (answer.status !== 200) throw failure(call, `GET ${path}`, answer);
  return held(call, `GET ${path}`, answer);
}

/**
 * `externalId eq`, then `userName eq`. The answer is checked too: a provider that ignores a
 * filter it does not support answers with every user, and one of them must not be taken for ours.
 */
async function search(call: Call, fields: TargetFields): Promise<{ held: Held; by: string } | null> {
  const externalId = text(fields.externalId);
  for (const [attribute, value] of [
    ['externalId', externalId],
    ['userName', text(fields.userName)],
  ] as const) {
    if (value === undefined) continue;
    const filter = `${attribute} eq ${filterString(value)}`;
    const path = `/Users?filter=${encodeURIComponent(filter)}`;
    const answer = await request(call, 'GET', path);
    if (answer.status !== 200) throw failure(call, `GET ${path}`, answer);
    const resources = isObject(answer.body) && Array.isArray(answer.body.Resources) ? answer.body.Resources.filter(isObject) : [];
    const matching = resources.filter((resource) => sameValue(attribute, valueAt(resource, [attribute]), value));
    if (matching.length > 1) {
      throw new TargetError(`${targetName(call)}: ${matching.length} users have ${filter}; flowthru cannot tell which one is the user's`, {
        retryable: false,
        kind: 'Conflict',
      });
    }
    if (matching.length === 0) continue;
    const found = toHeld(call, `GET ${path}`, matching[0]!, undefined);
    const theirs = asText(valueAt(found.body, ['externalId']));
    if (attribute === 'userName' && externalId !== undefined && theirs !== undefined && theirs !== externalId) {
      // Same userName, another identity: taking it over would hand one person's account to another.
      throw new TargetError(
        `${targetName(call)}: userName ${value} is held by /Users/${found.id} with externalId ${theirs}, not ${externalId}; flowthru does not take it over`,
        { retryable: false, kind: 'Conflict' },
      );
    }
    return { held: found, by: attribute };
  }
  return null;
}

/** POSTs the user; a 409 is returned (not thrown) so that the caller may adopt what is there. */
async function create(call: Call, want: Want): Promise<{ held: Held } | { conflict: TargetError; scimType: string | undefined }> {
  const body: Resource = { schemas: [USER_SCHEMA] };
  for (const change of diff(want, {})) applyChange(body, change);
  // diff() takes a missing `active` for true; a new resource says so.
  body.active = want.active;
  fixSchemas(body);
  const answer = await request(call, 'POST', '/Users', body);
  if (answer.status === 409) return { conflict: failure(call, 'POST /Users', answer), scimType: scimError(answer.body)?.scimType };
  if (answer.status !== 201 && answer.status !== 200) throw failure(call, 'POST /Users', answer);
  return { held: held(call, 'POST /Users', answer) };
}

/** Brings a found resource to what the fields say, re-reading after a 412. */
async function converge(call: Call, supports: Features, want: Want, found: Held, how: string | null): Promise<PushResult> {
  const adopted = how === null ? '' : `adopted existing /Users/${found.id} (${how}); `;
  let current = found;
  for (let attempt = 1; ; attempt++) {
    const changes = diff(want, current.body);
    if (changes.length === 0) return { remoteId: current.id, changed: false, summary: `${adopted}unchanged /Users/${current.id}` };
    const written = await write(call, supports, current, changes);
    if (written) return { remoteId: current.id, changed: true, summary: `${adopted}${written}` };
    current = await reread(call, current, attempt);
  }
}

async function remove(call: Call, supports: Features, found: Held): Promise<PushResult> {
  let current = found;
  for (let attempt = 1; ; attempt++) {
    const path = `/Users/${encodeURIComponent(current.id)}`;
    const answer = await request(call, 'DELETE', path, undefined, ifMatch(supports, current));
    if (answer.status === 204 || answer.status === 200) return { remoteId: null, changed: true, summary: `deleted /Users/${current.id}` };
    if (answer.status === 404) return { remoteId: null, changed: false, summary: `already absent (/Users/${current.id})` };
    if (answer.status !== 412) throw failure(call, `DELETE ${path}`, answer);
    if (attempt >= MAX_WRITE_TRIES) throw stale(call, current.id);
    const fresh = await read(call, current.id);
    if (!fresh) return { remoteId: null, changed: false, summary: `already absent (/Users/${current.id})` };
    current = fresh;
  }
}

/** The resource stays, inactive; its id is kept so that a later provision finds and reactivates it. */
async function deactivate(call: Call, supports: Features, found: Held): Promise<PushResult> {
  let current = found;
  for (let attempt = 1; ; attempt++) {
    if (activeValue(valueAt(current.body, ['active'])) === false) {
      return { remoteId: current.id, changed: false, summary: `already inactive /Users/${current.id}` };
    }
    const written = await write(call, supports, current, [{ fields: ['active'], path: ['active'], value: false }]);
    if (written) return { remoteId: current.id, changed: true, summary: `deactivated /Users/${current.id}` };
    current = await reread(call, current, attempt);
  }
}

/** After a 412: the resource as it is now, or a retryable error once the tries are spent. */
async function reread(call: Call, current: Held, attempt: number): Promise<Held> {
  if (attempt >= MAX_WRITE_TRIES) throw stale(call, current.id);
  const fresh = await read(call, current.id);
  if (!fresh) {
    // Deleted while we were writing: the retried push finds nothing remembered and starts afresh.
    throw new TargetError(`${targetName(call)}: /Users/${current.id} was deleted while flowthru was updating it`, { retryable: true, kind: 'Conflict' });
  }
  return fresh;
}

function stale(call: Call, id: string): TargetError {
  return new TargetError(`${targetName(call)}: /Users/${id} changed under every one of ${MAX_WRITE_TRIES} writes (412 Precondition Failed); will try again later`, {
    retryable: true,
    kind: 'PreconditionFailed',
  });
}

/** PATCHes (or PUTs) the changes; the summary of what was written, or null on a 412. */
async function write(call: Call, supports: Features, current: Held, changes: readonly Change[]): Promise<string | null> {
  const path = `/Users/${encodeURIComponent(current.id)}`;
  const written = new Set(changes.flatMap((change) => change.fields));
  const names = SCIM_FIELDS.filter((field) => written.has(field)).join(', ');
  const [method, body] = supports.patch
    ? (['PATCH', { schemas: [PATCH_OP], Operations: changes.map(patchOperation) }] as const)
    : (['PUT', replacement(current.body, changes)] as const);
  const answer = await request(call, method, path, body, ifMatch(supports, current));
  if (answer.status === 412) return null;
  // PATCH answers 200 with the resource, or 204 without (RFC 7644 §3.5.2).
  if (answer.status !== 200 && answer.status !== 204) throw failure(call, `${method} ${path}`, answer);
  return `${method} /Users/${current.id} (${names})`;
}

function ifMatch(supports: Features, current: Held): string | undefined {
  return supports.etag ? current.version : undefined;
}

function patchOperation(change: Change): Record<string, unknown> {
  const [first, ...rest] = change.path;
  // An extension's attribute is named by its schema URN, a colon, and the attribute (RFC 7644 §3.10).
  const path = first!.startsWith('urn:') ? `${first}:${rest.join('.')}` : change.path.join('.');
  return change.value === undefined ? { op: 'remove', path } : { op: 'replace', path, value: change.value };
}

/** The full resource for a PUT: what the provider holds, with the changes applied. */
function replacement(body: Resource, changes: readonly Change[]): Resource {
  const { meta: _meta, ...rest } = structuredClone(body);
  for (const change of changes) applyChange(rest, change);
  fixSchemas(rest);
  return rest;
}

function held(call: Call, what: string, answer: Answer): Held {
  if (!isObject(answer.body)) {
    // Something was written (or read) but the answer does not say what: a retry converges.
    throw new TargetError(`${targetName(call)}: ${displayPath(what)} answered ${answer.status} without a SCIM resource`, { retryable: true, kind: 'BadResponse' });
  }
  return toHeld(call, what, answer.body, answer.headers.get('etag') ?? undefined);
}

function toHeld(call: Call, what: string, body: Resource, etag: string | undefined): Held {
  const id = body.id;
  if (typeof id !== 'string' || id === '') {
    throw new TargetError(`${targetName(call)}: ${displayPath(what)} answered with a resource without an id`, { retryable: true, kind: 'BadResponse' });
  }
  // meta.version is the resource's ETag (RFC 7644 §3.14); the header only stands in when it is absent.
  const version = valueAt(body, ['meta', 'version']);
  return { id, body, version: typeof version === 'string' && version !== '' ? version : etag };
}

/* ------------------------------------------------------------------ fields → attributes */

/** A field's value, '' counting as none: a template over an empty attribute renders ''. */
function text(value: string | null | undefined): string | undefined {
  return value === null || value === undefined || value === '' ? undefined : value;
}

function asText(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function has(fields: TargetFields, field: ScimField): boolean {
  return Object.hasOwn(fields, field);
}

/** The fields checked before anything is sent: a userName (SCIM requires one) and a readable `active`. */
function wanted(call: Call, fields: TargetFields): Want {
  if (text(fields.userName) === undefined) {
    throw new TargetError(`${targetName(call)}: the user has no userName (the field is ${has(fields, 'userName') ? 'empty' : 'not configured'}); SCIM requires one`, {
      retryable: false,
      kind: 'MissingField',
    });
  }
  return { fields, active: desiredActive(call, fields) };
}

function activeValue(value: unknown): boolean | undefined {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  return undefined;
}

/** The `active` field, "true" or "false"; a user being provisioned is active unless it says otherwise. */
function desiredActive(call: Call, fields: TargetFields): boolean {
  const value = text(fields.active);
  if (value === undefined) return true;
  const active = activeValue(value.trim().toLowerCase());
  if (active === undefined) {
    throw new TargetError(`${targetName(call)}: the active field is "${value}"; it must be true or false`, { retryable: false, kind: 'InvalidValue' });
  }
  return active;
}

/** Single-valued string attributes, each written from the field of (nearly) the same name. */
const SIMPLE: Readonly<Partial<Record<ScimField, Path>>> = {
  userName: ['userName'],
  externalId: ['externalId'],
  displayName: ['displayName'],
  title: ['title'],
  preferredLanguage: ['preferredLanguage'],
  locale: ['locale'],
  timezone: ['timezone'],
  department: [ENTERPRISE_SCHEMA, 'department'],
  employeeNumber: [ENTERPRISE_SCHEMA, 'employeeNumber'],
};

/** phoneNumbers entries flowthru owns, by type. */
const PHONES: readonly (readonly [ScimField, string])[] = [
  ['phoneNumber', 'work'],
  ['mobile', 'mobile'],
];

/** What to write so that `resource` holds what is wanted, in the order of SCIM_FIELDS; empty when it already does. */
function diff(want: Want, resource: Resource): Change[] {
  const { fields } = want;
  const simple = (...names: ScimField[]) => names.flatMap((field) => simpleChange(fields, resource, field, SIMPLE[field]!));
  return [
    ...simple('userName', 'externalId', 'displayName'),
    ...nameChanges(fields, resource),
    ...emailChanges(fields, resource),
    ...phoneChanges(fields, resource),
    ...simple('title', 'preferredLanguage', 'locale', 'timezone', 'department', 'employeeNumber'),
    ...activeChanges(want.active, resource),
  ];
}

function simpleChange(fields: TargetFields, resource: Resource, field: ScimField, path: Path): Change[] {
  if (!has(fields, field)) return [];
  const want = text(fields[field]);
  return asText(valueAt(resource, path)) === want ? [] : [{ fields: [field], path, value: want }];
}

/**
 * name.givenName and name.familyName; name.formatted is written with them, made from both, but
 * not compared on its own: providers format names their own way, and a push must not rewrite
 * theirs every time.
 */
function nameChanges(fields: TargetFields, resource: Resource): Change[] {
  const parts = [simpleChange(fields, resource, 'givenName', ['name', 'givenName']), simpleChange(fields, resource, 'familyName', ['name', 'familyName'])].flat();
  if (parts.length === 0) return [];
  const part = (field: ScimField, name: string) => (has(fields, field) ? text(fields[field]) : asText(valueAt(resource, ['name', name])));
  const formatted = [part('givenName', 'givenName'), part('familyName', 'familyName')].filter((p) => p !== undefined).join(' ');
  return [...parts, { fields: parts.flatMap((p) => p.fields), path: ['name', 'formatted'], value: text(formatted) }];
}

const ofType = (type: string) => (entry: Resource) => typeof entry.type === 'string' && entry.type.toLowerCase() === type;

/** The work email, as the primary one; other emails are kept (no longer primary when ours is). */
function emailChanges(fields: TargetFields, resource: Resource): Change[] {
  if (!has(fields, 'email')) return [];
  const want = text(fields.email);
  const current = entries(valueAt(resource, ['emails']));
  const mine = current.filter(ofType('work'));
  const same =
    want === undefined
      ? mine.length === 0
      : mine.length === 1 && sameValue('email', mine[0]!.value, want) && mine[0]!.primary === true;
  if (same) return [];
  const others = current.filter((entry) => !ofType('work')(entry));
  const value =
    want === undefined
      ? others
      : [{ value: want, type: 'work', primary: true }, ...others.map((entry) => (entry.primary === true ? { ...entry, primary: false } : entry))];
  return [{ fields: ['email'], path: ['emails'], value: value.length > 0 ? value : undefined }];
}

/** The work and mobile numbers (those configured); numbers of other types are kept. */
function phoneChanges(fields: TargetFields, resource: Resource): Change[] {
  const owned = PHONES.filter(([field]) => has(fields, field));
  if (owned.length === 0) return [];
  const current = entries(valueAt(resource, ['phoneNumbers']));
  const changed = owned.filter(([field, type]) => {
    const want = text(fields[field]);
    const mine = current.filter(ofType(type));
    return want === undefined ? mine.length > 0 : !(mine.length === 1 && mine[0]!.value === want);
  });
  if (changed.length === 0) return [];
  const value = [
    ...owned.flatMap(([field, type]) => {
      const want = text(fields[field]);
      return want === undefined ? [] : [{ value: want, type }];
    }),
    ...current.filter((entry) => !owned.some(([, type]) => ofType(type)(entry))),
  ];
  return [{ fields: changed.map(([field]) => field), path: ['phoneNumbers'], value: value.length > 0 ? value : undefined }];
}

function activeChanges(want: boolean, resource: Resource): Change[] {
  const current = activeValue(valueAt(resource, ['active']));
  // A provider that keeps no `active` holds every user active: writing it again would never stick.
  if (current === want || (current === undefined && want)) return [];
  return [{ fields: ['active'], path: ['active'], value: want }];
}

/** Emails compare without case (providers canonicalize them, RFC 7643 §4.1.2); userName too (caseExact false). */
function sameValue(attribute: string, actual: unknown, want: string): boolean {
  if (typeof actual !== 'string') return false;
  return attribute === 'email' || attribute === 'userName' ? actual.toLowerCase() === want.toLowerCase() : actual === want;
}

/**
 * A filter's string literal: a JSON string (RFC 7644 §3.4.2.2 refers to RFC 7159), so quotes,
 * backslashes and control characters are escaped and nothing else can end the literal.
 */
function filterString(value: string): string {
  return JSON.stringify(value);
}

/* ------------------------------------------------------------------ resource objects */

function isObject(value: unknown): value is Resource {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function entries(value: unknown): Resource[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

/** Attribute names are case-insensitive (RFC 7643 §2.1): the key the object uses for `name`. */
function keyOf(object: Resource, name: string): string {
  const lower = name.toLowerCase();
  return Object.keys(object).find((key) => key.toLowerCase() === lower) ?? name;
}

function valueAt(resource: Resource, path: Path): unknown {
  let value: unknown = resource;
  for (const name of path) {
    if (!isObject(value)) return undefined;
    value = value[keyOf(value, name)];
  }
  return value;
}

/** Sets (or, for undefined, removes) the attribute at `path`, dropping a parent left empty. */
function applyChange(resource: Resource, change: Change): void {
  const [first, second] = change.path;
  if (second === undefined) {
    setOrDelete(resource, first!, change.value);
    return;
  }
  const key = keyOf(resource, first!);
  const parent = isObject(resource[key]) ? (resource[key] as Resource) : {};
  setOrDelete(parent, second, change.value);
  if (Object.keys(parent).length > 0) resource[key] = parent;
  else delete resource[key];
}

function setOrDelete(object: Resource, name: string, value: unknown): void {
  const key = keyOf(object, name);
  if (value === undefined) delete object[key];
  else object[key] = value;
}

/** `schemas` names the core schema, and the enterprise extension exactly when it has values. */
function fixSchemas(resource: Resource): void {
  const listed = Array.isArray(resource.schemas) ? resource.schemas.filter((s): s is string => typeof s === 'string') : [];
  const others = listed.filter((s) => s !== USER_SCHEMA && s !== ENTERPRISE_SCHEMA);
  const enterprise = isObject(resource[keyOf(resource, ENTERPRISE_SCHEMA)]);
  resource.schemas = [USER_SCHEMA, ...(enterprise ? [ENTERPRISE_SCHEMA] : []), ...others];
}

/* ------------------------------------------------------------------ HTTP */

function targetName(call: Call): string {
  return `SCIM target "${call.push.target}"`;
}

async function request(call: Call, method: string, path: string, body?: unknown, ifMatch?: string): Promise<Answer> {
  const timeout = AbortSignal.timeout(call.config.timeoutMs);
  const headers: Record<string, string> = { accept: MEDIA_TYPE };
  if (body !== undefined) headers['content-type'] = MEDIA_TYPE;
  if (call.token !== undefined) headers.authorization = `Bearer ${call.token}`;
  if (ifMatch !== undefined) headers['if-match'] = ifMatch;
  call.push.heartbeat?.();
  try {
    const response = await call.fetch(`${call.base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      // A redirect would carry the token to wherever it points; report it instead.
      redirect: 'manual',
      signal: call.push.signal ? AbortSignal.any([timeout, call.push.signal]) : timeout,
    });
    return { status: response.status, headers: response.headers, body: parse(await response.text()) };
  } catch (error) {
    // The activity was cancelled (or timed out): let its own reason through, so Temporal sees a cancellation.
    if (call.push.signal?.aborted && !timeout.aborted) throw call.push.signal.reason;
    const reason = timeout.aborted ? `no answer within ${call.config.timeoutMs} ms` : networkReason(error);
    throw new TargetError(redact(`${targetName(call)} is unreachable: ${method} ${displayPath(path)} at ${displayUrl(call.base)}: ${reason}`, call.token), {
      retryable: true,
      kind: 'Unavailable',
      cause: error,
    });
  }
}

function parse(text: string): unknown {
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return { unparsed: text };
  }
}

/** The error for an answer the caller did not expect, retryable when the provider may do it later. */
function failure(call: Call, what: string, answer: Answer): TargetError {
  const { status } = answer;
  const said = explain(answer.body);
  const message = (hint = '') => redact(`${targetName(call)}: ${displayPath(what)} answered ${status}${said ? ` (${said})` : ''}${hint}`, call.token);
  if (status === 429 || status === 503) {
    return new TargetError(message(), {
      retryable: true,
      kind: status === 429 ? 'Throttled' : 'Unavailable',
      retryAfterMs: retryAfterMs(answer.headers.get('retry-after')),
    });
  }
  if (status === 408 || status >= 500) return new TargetError(message(), { retryable: true, kind: 'Unavailable' });
  if (status === 412) return new TargetError(message(), { retryable: true, kind: 'PreconditionFailed' });
  if (status >= 300 && status < 400) {
    return new TargetError(message(`; it redirects to ${displayUrl(answer.headers.get('location') ?? 'nowhere')}, configure the final URL`), {
      retryable: false,
      kind: 'Redirected',
    });
  }
  const credential = call.config.tokenEnv ? `the token in ${call.config.tokenEnv}` : 'a bearer token (tokenEnv)';
  if (status === 401) return new TargetError(message(`; check ${credential}`), { retryable: false, kind: 'Unauthorized' });
  if (status === 403) return new TargetError(message(`; ${credential} may not do this`), { retryable: false, kind: 'Forbidden' });
  const kind = status === 404 ? 'NotFound' : status === 409 ? 'Conflict' : status === 400 ? 'BadRequest' : 'Rejected';
  return new TargetError(message(), { retryable: false, kind });
}

function scimError(body: unknown): { scimType: string | undefined; detail: string | undefined } | undefined {
  if (!isObject(body) || (body.detail === undefined && body.scimType === undefined)) return undefined;
  return {
    scimType: typeof body.scimType === 'string' ? body.scimType : undefined,
    detail: typeof body.detail === 'string' ? body.detail : undefined,
  };
}

/** A SCIM error's scimType and detail (RFC 7644 §3.12), else the start of the body, on one line. */
function explain(body: unknown): string {
  const error = scimError(body);
  if (error) return [error.scimType, error.detail].filter((part) => part !== undefined).join(': ');
  const raw = isObject(body) && typeof body.unparsed === 'string' ? body.unparsed : body === null ? '' : JSON.stringify(body);
  const line = raw.replace(/\s+/g, ' ').trim();
  return line.length > BODY_EXCERPT_CHARS ? `${line.slice(0, BODY_EXCERPT_CHARS)}…` : line;
}

/** A provider has no business echoing the token, but a message must never carry it. */
function redact(text: string, token: string | undefined): string {
  return token === undefined || token.length < 4 ? text : text.split(token).join('[redacted]');
}

/** A filter path as readable text: `/Users?filter=userName eq "ada"`. */
function displayPath(what: string): string {
  try {
    return decodeURIComponent(what);
  } catch {
    return what;
  }
}

/** A URL as it may appear in logs: no credentials, no query. */
function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return url.slice(0, BODY_EXCERPT_CHARS);
  }
}

/** Why a fetch threw, without its URL: `ECONNREFUSED`, `UND_ERR_SOCKET`. */
function networkReason(error: unknown): string {
  const err = error as Error & { cause?: { code?: string; message?: string } };
  return err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(error);
}

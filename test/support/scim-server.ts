import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import SCIMMY from 'scimmy';
import SCIMMYRouters from 'scimmy-routers';

/**
 * A real SCIM 2.0 service provider for the tests: scimmy (RFC 7643 schemas, filters, PatchOp,
 * ListResponse, error messages) behind scimmy-routers (the RFC 7644 endpoints on express), over an
 * in-memory store. What scimmy leaves to the implementer is done here the way a service provider
 * would: ids and `meta.version` (weak ETags, `W/"n"`), userName uniqueness (409 uniqueness,
 * case-insensitively as userName is caseExact false), and If-Match preconditions (412).
 *
 * Around scimmy, for tests: a request log, injected faults (`failNext`), a response lost after the
 * request was processed (`loseNextResponse`), a version changed behind the client's back (`touch`),
 * and `onNext` to run something just before a request reaches scimmy (a concurrent writer).
 *
 * scimmy keeps its resource declarations, handlers and configuration process-wide. The handlers are
 * therefore declared once and find the server's store in the request context, and each server puts
 * its own configuration (patch, etag) in place as each of its requests comes in.
 */

export type ScimResource = Record<string, unknown> & { id: string; userName: string; meta: { version: string } & Record<string, unknown> };

export interface ScimRequest {
  readonly method: string;
  /** Path and query as received, e.g. `/scim/v2/Users?filter=userName%20eq%20%22ada%22`. */
  readonly path: string;
  readonly headers: {
    readonly authorization?: string;
    readonly 'if-match'?: string;
    readonly 'content-type'?: string;
    readonly accept?: string;
  };
  /** The parsed JSON body of a POST, PUT or PATCH. */
  body?: unknown;
  /** The answer's status (0 while unanswered, or when the answer was lost). */
  status: number;
}

export interface ScimServerOptions {
  /** The bearer token requests must carry; none: every request is accepted. */
  token?: string;
  /** ServiceProviderConfig etag.supported (default true); If-Match is enforced either way. */
  etags?: boolean;
  /** ServiceProviderConfig patch.supported (default true); PATCH still works, as scimmy serves it. */
  patch?: boolean;
}

export interface ScimServer {
  /** The SCIM base URL, e.g. http://127.0.0.1:PORT/scim/v2. */
  readonly url: string;
  /** The User resources stored now (copies). */
  users(): ScimResource[];
  /** Creates a User through scimmy, as another client would (uniqueness applies). */
  create(user: Record<string, unknown>): Promise<ScimResource>;
  /** Another write to the resource: its version changes, so earlier ETags no longer match. */
  touch(id: string): void;
  /** The next `n` requests answer `status` (with a SCIM error body unless `body` is given) before scimmy sees them. */
  failNext(n: number, status: number, headers?: Record<string, string>, body?: unknown): void;
  /** The next request is processed normally, then its connection is destroyed before the answer is sent. */
  loseNextResponse(): void;
  /** Runs `action` just before the next request with this method reaches scimmy. */
  onNext(method: string, action: () => void | Promise<void>): void;
  readonly requests: ScimRequest[];
  close(): Promise<void>;
}

interface Store {
  readonly users: Map<string, ScimResource>;
  /** Indexes for the searches a SCIM client makes (externalId; userName in lower case), as a real service has. */
  readonly byExternalId: Map<string, string[]>;
  readonly byUserName: Map<string, string[]>;
}

/** What scimmy passes to the handlers: the server's store and the request's precondition. */
interface Context {
  readonly store: Store;
  readonly ifMatch: string | undefined;
}

let declared = false;

/** scimmy's own error, which its routers answer as a SCIM error message (RFC 7644 §3.12). */
function failure(status: number, detail: string, scimType?: string): Error {
  // scimmy passes null for "no scimType"; its typings ask for a string.
  return new SCIMMY.Types.Error(status, scimType as string, detail);
}

function context(ctx: unknown): Context {
  return ctx as Context;
}

/** `meta` and `id` are the server's; comparing the rest tells whether a write changed anything. */
function content(resource: Record<string, unknown>): string {
  const { meta: _meta, id: _id, ...rest } = resource;
  return JSON.stringify(rest);
}

function nextVersion(version: string | undefined): string {
  const n = Number(/^W\/"(\d+)"$/.exec(version ?? '')?.[1] ?? 0);
  return `W/"${n + 1}"`;
}

/**
 * RFC 7644 §3.14: a write whose If-Match is not the current version fails with 412. Checked here,
 * in the handlers, rather than in a middleware before the routers: scimmy-routers has no ETag
 * support of its own, and here the check comes after authentication and next to the write.
 */
function checkPrecondition(ifMatch: string | undefined, stored: ScimResource): void {
  if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== stored.meta.version) {
    throw failure(412, `Failed to update: resource ${stored.id} has changed on the server since you last retrieved it (version ${stored.meta.version})`);
  }
}

function checkUniqueness(store: Store, userName: unknown, id: string | undefined): void {
  if (typeof userName !== 'string') return;
  const taken = (store.byUserName.get(userName.toLowerCase()) ?? []).some((other) => other !== id);
  if (taken) throw failure(409, `userName ${userName} is already taken`, 'uniqueness');
}

/** The users a lone `externalId eq` / `userName eq` filter can match, or undefined for any other filter. */
function narrow(store: Store, filter: unknown): ScimResource[] | undefined {
  if (!Array.isArray(filter) || filter.length !== 1) return undefined;
  const expression = filter[0] as Record<string, unknown>;
  const keys = Object.keys(expression);
  if (keys.length !== 1) return undefined;
  const [attribute] = keys as [string];
  const test = expression[attribute];
  if (!Array.isArray(test) || test[0] !== 'eq' || typeof test[1] !== 'string') return undefined;
  const value = test[1];
  if (attribute.toLowerCase() === 'externalid') return (store.byExternalId.get(value) ?? []).flatMap((id) => store.users.get(id) ?? []);
  if (attribute.toLowerCase() === 'username') return (store.byUserName.get(value.toLowerCase()) ?? []).flatMap((id) => store.users.get(id) ?? []);
  return undefined;
}

/** Keeps the indexes in step with a stored (or deleted: `next` undefined) user. */
function reindex(store: Store, id: string, next: ScimResource | undefined): void {
  const previous = store.users.get(id);
  const drop = (index: Map<string, string[]>, key: unknown) => {
    if (typeof key !== 'string') return;
    const ids = (index.get(key) ?? []).filter((i) => i !== id);
    if (ids.length > 0) index.set(key, ids);
    else index.delete(key);
  };
  const add = (index: Map<string, string[]>, key: unknown) => {
    if (typeof key === 'string') index.set(key, [...(index.get(key) ?? []), id]);
  };
  if (previous) {
    drop(store.byExternalId, previous.externalId);
    drop(store.byUserName, typeof previous.userName === 'string' ? previous.userName.toLowerCase() : undefined);
  }
  if (next) {
    add(store.byExternalId, next.externalId);
    add(store.byUserName, typeof next.userName === 'string' ? next.userName.toLowerCase() : undefined);
  }
}

/** Declares the User resource (with the enterprise extension) and its handlers, once per process. */
function declareUsers(): void {
  if (declared) return;
  declared = true;
  SCIMMY.Resources.declare(SCIMMY.Resources.User.extend(SCIMMY.Schemas.EnterpriseUser, false))
    .ingress((resource, instance, ctx) => {
      const { store, ifMatch } = context(ctx);
      // The resource as scimmy coerced it (schema-checked, schemas and meta.resourceType set), without id and version.
      const incoming = JSON.parse(JSON.stringify(instance)) as ScimResource;
      const now = new Date().toISOString();
      const id = resource.id;
      if (id === undefined) {
        checkUniqueness(store, incoming.userName, undefined);
        const created: ScimResource = { ...incoming, id: randomUUID(), meta: { ...incoming.meta, created: now, lastModified: now, version: 'W/"1"' } };
        reindex(store, created.id, created);
        store.users.set(created.id, created);
        return structuredClone(created);
      }
      const stored = store.users.get(id);
      if (!stored) throw failure(404, `Resource ${id} not found`);
      checkPrecondition(ifMatch, stored);
      checkUniqueness(store, incoming.userName, id);
      // scimmy's PatchOp writes even when the operations changed nothing: keep the version then.
      if (content(incoming) === content(stored)) return structuredClone(stored);
      const updated: ScimResource = { ...incoming, id, meta: { ...stored.meta, lastModified: now, version: nextVersion(stored.meta.version) } };
      reindex(store, id, updated);
      store.users.set(id, updated);
      return structuredClone(updated);
    })
    .egress((resource, ctx) => {
      const { store } = context(ctx);
      if (resource.id !== undefined) {
        const stored = store.users.get(resource.id);
        if (!stored) throw failure(404, `Resource ${resource.id} not found`);
        return structuredClone(stored);
      }
      // Filtering is scimmy's own (Types.Filter#match), as parsed from ?filter= by the resource. Like
      // a real service's index, a lone `eq` on externalId or userName first narrows the candidates
      // (userName case-insensitively, a superset of what scimmy matches), so a search does not cost
      // a scan of every user: the benchmark measures flowthru, not this server.
      const candidates = narrow(store, resource.filter) ?? [...store.users.values()];
      const all = candidates.map((user) => structuredClone(user));
      return resource.filter ? resource.filter.match(all) : all;
    })
    .degress((resource, ctx) => {
      const { store, ifMatch } = context(ctx);
      const stored = resource.id === undefined ? undefined : store.users.get(resource.id);
      if (!stored) throw failure(404, `Resource ${resource.id} not found`);
      checkPrecondition(ifMatch, stored);
      reindex(store, stored.id, undefined);
      store.users.delete(stored.id);
    });
}

function scimError(status: number, detail: string, scimType?: string) {
  return { schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: String(status), ...(scimType ? { scimType } : {}), detail };
}

export async function startScimServer(options: ScimServerOptions = {}): Promise<ScimServer> {
  declareUsers();
  const store: Store = { users: new Map(), byExternalId: new Map(), byUserName: new Map() };
  const requests: ScimRequest[] = [];
  const faults: { status: number; headers: Record<string, string>; body: unknown }[] = [];
  const hooks: { method: string; action: () => void | Promise<void> }[] = [];
  let loseNext = false;
  const configuration = { patch: options.patch ?? true, etag: options.etags ?? true, filter: { supported: true, maxResults: 200 }, sort: true, bulk: false };

  // The routers' constructor sets its own configuration and appends its authentication scheme to
  // the process-wide list; start the list afresh so it names this server's scheme only.
  SCIMMY.Config.set({ authenticationSchemes: [] });
  const routers = new SCIMMYRouters({
    type: 'bearer',
    handler: (req) => {
      if (options.token !== undefined && req.header('authorization') !== `Bearer ${options.token}`) {
        throw new Error(req.header('authorization') ? 'Bearer token not accepted' : 'Authorization header missing');
      }
      return 'flowthru';
    },
    context: (req): Context => ({ store, ifMatch: req.header('if-match') }),
  });

  const app = express();
  // Express's own ETag is a hash of the body; a SCIM ETag is the resource's meta.version (RFC 7644
  // §3.14), which scimmy puts in the body but scimmy-routers does not send as the header.
  app.set('etag', false);
  app.use((_req: Request, res: Response, next: NextFunction) => {
    const json = res.json.bind(res);
    res.json = (body?: unknown) => {
      const version = (body as { meta?: { version?: unknown } } | undefined)?.meta?.version;
      if (typeof version === 'string') res.setHeader('ETag', version);
      return json(body);
    };
    next();
  });
  app.use((req: Request, res: Response, next: NextFunction) => {
    const header = (name: string) => req.header(name);
    const entry: ScimRequest = {
      method: req.method,
      path: req.originalUrl,
      headers: Object.fromEntries(
        (['authorization', 'if-match', 'content-type', 'accept'] as const).flatMap((name) => (header(name) === undefined ? [] : [[name, header(name)]])),
      ) as ScimRequest['headers'],
      status: 0,
    };
    requests.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
    });
    next();
  });
  app.use(express.json({ type: ['application/json', 'application/scim+json'] }));
  app.use(async (req: Request, res: Response, next: NextFunction) => {
    const entry = requests[requests.length - 1];
    if (entry && req.body !== undefined) entry.body = req.body as unknown;
    const hook = hooks.findIndex((h) => h.method === req.method);
    if (hook >= 0) await hooks.splice(hook, 1)[0]!.action();
    const fault = faults.shift();
    if (fault) {
      res.status(fault.status).set({ 'content-type': 'application/scim+json', ...fault.headers });
      const body = fault.body ?? scimError(fault.status, `injected fault ${fault.status}`);
      res.send(typeof body === 'string' ? body : JSON.stringify(body));
      return;
    }
    if (loseNext) {
      loseNext = false;
      // Let scimmy do the work, then drop the connection instead of sending what it answered.
      res.end = (() => {
        res.socket?.destroy();
        return res;
      }) as Response['end'];
    }
    // scimmy's configuration is process-wide: put this server's in place for its request.
    SCIMMY.Config.set(configuration);
    next();
  });
  app.use('/scim/v2', routers);
  // scimmy-routers answers 5xx itself and then passes the error on; it has been answered already.
  app.use((_error: unknown, _req: Request, _res: Response, _next: NextFunction) => {});

  const server: Server = await new Promise((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/scim/v2`,
    requests,
    users: () => [...store.users.values()].map((user) => structuredClone(user)),
    async create(user) {
      SCIMMY.Config.set(configuration);
      const written = await new SCIMMY.Resources.User().write(user, { store, ifMatch: undefined } satisfies Context);
      return JSON.parse(JSON.stringify(written)) as ScimResource;
    },
    touch(id) {
      const stored = store.users.get(id);
      if (!stored) throw new Error(`no User ${id} to touch`);
      stored.meta = { ...stored.meta, lastModified: new Date().toISOString(), version: nextVersion(stored.meta.version) };
    },
    failNext(n, status, headers = {}, body) {
      for (let i = 0; i < n; i++) faults.push({ status, headers, body });
    },
    loseNextResponse() {
      loseNext = true;
    },
    onNext(method, action) {
      hooks.push({ method: method.toUpperCase(), action });
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

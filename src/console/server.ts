import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import Handlebars from 'handlebars';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { createDatabase } from '../adapters/db/connection.js';
import type { Database } from '../adapters/db/schema.js';
import { loadConfigVersion } from '../adapters/db/config-store.js';
import { loadConfigText } from '../adapters/config-file.js';
import { closeLdapConnections } from '../adapters/sources/ldap.js';
import { formatProblem } from '../domain/config/validate.js';
import { impactRow } from '../client/commands/impact.js';
import { previewImpact, type ImpactUser } from '../client/impact.js';
import { OperationRefused, retryPipelines, RETRYABLE_STATUSES, setSchedulePaused, startSyncAs, triggerSchedule, type Actor } from '../client/operations.js';
import { declaredSchedules, listSchedules, type ScheduleView } from '../client/schedules.js';
import { SyncBusyError } from '../client/sync.js';
import { connectClient } from '../client/temporal.js';
import { isLoopback } from '../client/loopback.js';
import type { Settings } from '../settings.js';
import { USER_STATUSES } from '../domain/user.js';
import { onboardWorkflowId, SYNC_MODES, type SyncMode } from '../workflows/config.js';
import { syncProgressQuery } from '../workflows/messages.js';
import { customerNames, filterChoices, NUMBER_STATUSES, numbersPage, overview, PLACEMENT_STATUS_ORDER, syncRun, syncRuns, USER_SORTS, userPage, usersPage, type UserSort } from './data.js';

/*
 * `flowthru console`: a web console over flowthru's database and Temporal, server-rendered
 * (Fastify + Handlebars) with htmx for live parts and Chart.js for charts, all served from the
 * package. Read-mostly: its few actions call the same operations as the CLI (client/operations.ts)
 * and are written to the transaction log with who took them.
 */

/** How many changed users the console's preview page lists (the counts cover everyone). */
const PREVIEW_ROWS = 200;

/** How long a page waits for Temporal (schedules) before it shows the page without them. */
const TEMPORAL_PAGE_WAIT_MS = 5_000;

/** A console that cannot start as asked (an open address without a token). */
export class ConsoleRefused extends Error {}

export interface ConsoleOptions {
  readonly settings: Settings;
  readonly host: string;
  readonly port: number;
  /** FLOWTHRU_CONSOLE_TOKEN: every request must carry it (required beyond loopback). */
  readonly token?: string | undefined;
  /** Help-desk mode: every page, no action. */
  readonly readOnly?: boolean | undefined;
  /** Where Temporal UI is, for links to workflows (default FLOWTHRU_TEMPORAL_UI or the dev server's). */
  readonly temporalUi?: string | undefined;
  readonly logger?: Logger | undefined;
  /** An existing database handle (the demo's); else the console opens its own pool. */
  readonly db?: Kysely<Database> | undefined;
}

export interface RunningConsole {
  readonly url: string;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}


const SESSION_COOKIE = 'flowthru_console';
const OPERATOR_COOKIE = 'flowthru_operator';

const here = fileURLToPath(new URL('.', import.meta.url));
const require = createRequire(import.meta.url);

/** Assets served under /assets/: the console's own, and the libraries' browser builds from node_modules. */
function assetFiles(): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>();
  const add = (name: string, path: string, type: string) => files.set(name, { body: readFileSync(path), type });
  add('htmx.min.js', require.resolve('htmx.org/dist/htmx.min.js'), 'text/javascript; charset=utf-8');
  // chart.js exports no subpaths: its browser build sits beside its main file.
  add('chart.umd.min.js', join(dirname(require.resolve('chart.js')), 'chart.umd.min.js'), 'text/javascript; charset=utf-8');
  add('console.css', `${here}assets/console.css`, 'text/css; charset=utf-8');
  add('console.js', `${here}assets/console.js`, 'text/javascript; charset=utf-8');
  return files;
}

function templates() {
  const hbs = Handlebars.create();
  hbs.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  hbs.registerHelper('or', (...args: unknown[]) => args.slice(0, -1).some(Boolean));
  hbs.registerHelper('add', (a: number, b: number) => a + b);
  hbs.registerHelper('n', (value: unknown) => (typeof value === 'number' ? value.toLocaleString('en-US') : value ?? '–'));
  hbs.registerHelper('seconds', (value: unknown) => (typeof value === 'number' ? `${value.toFixed(1)} s` : '–'));
  hbs.registerHelper('percent', (part: number, total: number) => (total > 0 ? ((100 * part) / total).toFixed(1) : '0'));
  hbs.registerHelper('when', (iso: unknown) => (typeof iso === 'string' ? iso.replace('T', ' ').replace(/(\.\d+)?Z$/, 'Z') : '–'));
  // JSON inside <script type="application/json">: nothing in it may close the script element.
  hbs.registerHelper('json', (value: unknown) => new Handlebars.SafeString(JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026')));
  hbs.registerHelper('kv', (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value)));
  const dir = `${here}views/`;
  const pages: Record<string, HandlebarsTemplateDelegate> = {};
  for (const file of readdirSync(dir)) {
    const name = file.replace(/\.hbs$/, '');
    const source = readFileSync(`${dir}${file}`, 'utf8');
    if (name.startsWith('_')) hbs.registerPartial(name.slice(1), source);
    else pages[name] = hbs.compile(source, { strict: false });
  }
  return pages;
}

/** The query string of the current filters with some changed (for sort links and pages). */
function queryWith(current: Record<string, unknown>, changes: Record<string, unknown>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries({ ...current, ...changes })) {
    if (value !== undefined && value !== null && value !== '' && value !== false) params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** A status filter the list does not know: said, rather than ignored (the page would show everyone). */
function unknownStatus(status: string | undefined, known: readonly string[], what: string): string | null {
  return status === undefined || known.includes(status) ? null : `There is no ${what} status "${status}": it is one of ${known.join(', ')}.`;
}

const text = (value: unknown): string | undefined => (typeof value === 'string' && value.trim() !== '' ? value.trim().slice(0, 200) : undefined);
const pageNumber = (value: unknown): number => {
  const n = Number(value);
  return Number.isSafeInteger(n) && n > 0 ? n : 1;
};

export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const token = options.token?.trim() || undefined;
  if (!isLoopback(options.host) && token === undefined) {
    throw new ConsoleRefused(`the console shows personal data and can act on users: listening on ${options.host} needs FLOWTHRU_CONSOLE_TOKEN set (or listen on 127.0.0.1)`);
  }
  const settings = options.settings;
  const db = options.db ?? createDatabase(settings.databaseUrl, { max: 6 });
  const ownDb = options.db === undefined;
  const uiBase = (options.temporalUi ?? process.env.FLOWTHRU_TEMPORAL_UI ?? 'http://127.0.0.1:8233').replace(/\/+$/, '');
  const uiLink = (workflowId: string) => `${uiBase}/namespaces/${encodeURIComponent(settings.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}`;
  const readOnly = Boolean(options.readOnly);
  const pages = templates();
  const assets = assetFiles();
  const log = options.logger;
  const sessionValue = token ? createHmac('sha256', token).update('flowthru console session').digest('base64url') : undefined;

  // Temporal is dialled when a page first needs it, and again after a failure.
  let client: Promise<Client> | undefined;
  const temporal = async (): Promise<Client> => {
    client ??= connectClient(settings);
    try {
      return await client;
    } catch (error) {
      client = undefined;
      throw error;
    }
  };

  const app = Fastify({ logger: false, trustProxy: false, bodyLimit: 64 * 1024 });
  await app.register(fastifyCookie);
  await app.register(fastifyFormbody);
  await app.register(fastifyCsrf, {
    cookieKey: 'flowthru_csrf',
    cookieOpts: { path: '/', sameSite: 'strict', httpOnly: true },
    getToken: (req) => (req.body as Record<string, string> | undefined)?._csrf,
  });

  // Server-Timing: how long the page took to make, for the browser's devtools and bench/console.ts.
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('server-timing', `app;dur=${reply.elapsedTime.toFixed(1)}`);
    return payload;
  });

  // Requests are logged by route pattern, never by URL: a search or a user's id is nobody's business in a log.
  app.addHook('onResponse', async (req, reply) => {
    log?.info({ method: req.method, route: req.routeOptions.url ?? 'unknown', status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'console request');
  });

  const render = (reply: FastifyReply, page: string, data: Record<string, unknown>, status = 200) => {
    const body = pages[page]!({ ...data, readOnly });
    const html = pages.layout!({ ...data, body, readOnly, uiBase, nav: data.nav ?? page });
    return reply.code(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
  };

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-frame-options', 'DENY');
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'same-origin');
    reply.header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'");
    // Without a token the console trusts loopback only: a page elsewhere that rebinds a name to
    // 127.0.0.1 must not read it, so the Host must be a loopback name.
    if (!token) {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      if (!isLoopback(host)) return reply.code(421).type('text/plain').send('this console answers on loopback addresses only (set FLOWTHRU_CONSOLE_TOKEN to open it to others)');
    }
    if (req.url.startsWith('/assets/')) return;
    if (token && !authenticated(req)) {
      if (req.url === '/login' && req.method === 'POST') return;
      return render(reply, 'login', { title: 'Sign in', nav: 'login', wrong: false }, 401);
    }
  });

  function authenticated(req: FastifyRequest): boolean {
    const header = req.headers.authorization;
    const given = header?.startsWith('Bearer ') ? createHmac('sha256', header.slice(7)).update('flowthru console session').digest('base64url') : req.cookies[SESSION_COOKIE];
    if (!given || !sessionValue) return false;
    const a = Buffer.from(given);
    const b = Buffer.from(sessionValue);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** An action's request must come from the console's own pages: same origin, with the form's CSRF token. */
  const sameOrigin = async (req: FastifyRequest, reply: FastifyReply) => {
    const origin = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    // Behind a TLS proxy the page's origin is https: the host must be the console's (a proxy passes Host on).
    const sameHost = (value: string) => {
      try {
        const url = new URL(value);
        return (url.protocol === 'http:' || url.protocol === 'https:') && url.host === req.headers.host;
      } catch {
        return false;
      }
    };
    if ((origin !== undefined && !sameHost(origin)) || (site !== undefined && site !== 'same-origin' && site !== 'none')) {
      return reply.code(403).type('text/plain').send('refused: this action was sent from another site');
    }
  };

  app.post('/login', { preHandler: sameOrigin }, async (req, reply) => {
    const given = text((req.body as Record<string, unknown> | undefined)?.token);
    const value = given ? createHmac('sha256', given).update('flowthru console session').digest('base64url') : '';
    if (!sessionValue || value.length !== sessionValue.length || !timingSafeEqual(Buffer.from(value), Buffer.from(sessionValue))) {
      return render(reply, 'login', { title: 'Sign in', nav: 'login', wrong: true }, 401);
    }
    reply.setCookie(SESSION_COOKIE, sessionValue, { path: '/', httpOnly: true, sameSite: 'strict' });
    return reply.redirect('/', 303);
  });

  app.get('/assets/:name', async (req, reply) => {
    const file = assets.get((req.params as { name: string }).name);
    if (!file) return reply.code(404).send('not found');
    return reply.type(file.type).header('cache-control', 'public, max-age=3600').send(file.body);
  });

  app.get('/', async (req, reply) => {
    const customers = await customerNames(db);
    const chosen = text((req.query as Record<string, unknown>).customer) ?? customers[0];
    const view = chosen ? await overview(db, chosen) : undefined;
    const schedules = await scheduleViews(chosen).catch((error: unknown) => ({ error: message(error) }));
    return render(reply, 'overview', {
      title: chosen ? `${chosen}: overview` : 'Overview',
      customers,
      chosen,
      view,
      schedules: Array.isArray(schedules) ? schedules : [],
      schedulesError: Array.isArray(schedules) ? null : schedules.error,
      statusOrder: PLACEMENT_STATUS_ORDER,
      chart: view ? { sites: [...view.sites, null], placement: view.placement } : null,
      csrf: readOnly ? null : reply.generateCsrf(),
      operator: req.cookies[OPERATOR_COOKIE] ?? '',
    });
  });

  /** The schedules of the configuration in force, as Temporal has them; a page does not wait more than a few seconds for Temporal. */
  async function scheduleViews(customer: string | undefined): Promise<ScheduleView[]> {
    const found = await loadConfigVersion(db);
    const declared = found ? declaredSchedules(found.config).filter((d) => !customer || d.customer === customer) : [];
    if (declared.length === 0) return [];
    const only = customer ? { customer } : {};
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Temporal at ${settings.temporalAddress} did not answer within ${TEMPORAL_PAGE_WAIT_MS / 1000} s`)), TEMPORAL_PAGE_WAIT_MS);
    });
    try {
      return await Promise.race([temporal().then((client) => listSchedules(client, settings.taskQueue, declared, only)), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  app.get('/users', async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const sort = (Object.keys(USER_SORTS) as UserSort[]).includes(q.sort as UserSort) ? (q.sort as UserSort) : 'name';
    const filter = { customer: text(q.customer), site: text(q.site), profile: text(q.profile), status: text(q.status), source: text(q.source), q: text(q.q), sort, desc: q.desc === '1', page: pageNumber(q.page) };
    const refused = unknownStatus(filter.status, USER_STATUSES, 'user');
    if (refused) return render(reply, 'error', { title: 'No such status', message: refused }, 400);
    const [result, choices, customers] = await Promise.all([usersPage(db, filter), filterChoices(db, filter.customer), customerNames(db)]);
    const current = { ...filter, desc: filter.desc ? '1' : undefined, page: undefined };
    const sortLink = (column: UserSort) => queryWith(current, { sort: column, desc: sort === column && !filter.desc ? '1' : undefined });
    return render(reply, 'users', {
      title: 'Users',
      filter,
      result,
      choices,
      customers,
      sorts: Object.fromEntries((Object.keys(USER_SORTS) as UserSort[]).map((c) => [c, { link: sortLink(c), active: sort === c, desc: filter.desc }])),
      prev: result.page > 1 ? queryWith(current, { page: result.page - 1 }) : null,
      next: result.page < result.pages ? queryWith(current, { page: result.page + 1 }) : null,
      first: (result.page - 1) * 50 + (result.rows.length > 0 ? 1 : 0),
      last: (result.page - 1) * 50 + result.rows.length,
    });
  });

  app.get('/users/:id', async (req, reply) => {
    const user = await userPage(db, (req.params as { id: string }).id);
    if (!user) return render(reply, 'error', { title: 'No such user', message: 'There is no user with this id.' }, 404);
    const workflowId = onboardWorkflowId(user.customer, user.source, user.externalId);
    return render(reply, 'user', {
      title: user.username ?? user.externalId,
      nav: 'users',
      user,
      attributes: Object.entries(user.attributes).map(([key, value]) => ({ key, value })),
      workflowLink: uiLink(workflowId),
      workflowId,
      retryable: user.status !== 'deleted',
      csrf: readOnly ? null : reply.generateCsrf(),
      operator: req.cookies[OPERATOR_COOKIE] ?? '',
      timeline: user.timeline.map((e) => ({ ...e, link: e.workflowId ? uiLink(e.workflowId) : null })),
    });
  });

  app.get('/numbers', async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const filter = { customer: text(q.customer), site: text(q.site), status: text(q.status), q: text(q.q), page: pageNumber(q.page) };
    const refused = unknownStatus(filter.status, NUMBER_STATUSES, 'number');
    if (refused) return render(reply, 'error', { title: 'No such status', message: refused }, 400);
    const [result, choices, customers] = await Promise.all([numbersPage(db, filter), filterChoices(db, filter.customer), customerNames(db)]);
    const current = { ...filter, page: undefined };
    return render(reply, 'numbers', {
      title: 'Numbers',
      filter,
      result,
      sites: choices.sites,
      customers,
      statuses: NUMBER_STATUSES,
      prev: result.page > 1 ? queryWith(current, { page: result.page - 1 }) : null,
      next: result.page < result.pages ? queryWith(current, { page: result.page + 1 }) : null,
    });
  });

  app.get('/syncs', async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const filter = { customer: text(q.customer), page: pageNumber(q.page) };
    const [result, customers, schedules] = await Promise.all([syncRuns(db, filter), customerNames(db), scheduleViews(filter.customer).catch((error: unknown) => ({ error: message(error) }))]);
    const found = await loadConfigVersion(db);
    const sources = (found?.config.customers ?? []).filter((c) => !filter.customer || c.name === filter.customer).flatMap((c) => c.sources.map((s) => ({ customer: c.name, source: s.name, type: s.type })));
    return render(reply, 'syncs', {
      title: 'Syncs and schedules',
      filter,
      result,
      customers,
      sources,
      modes: SYNC_MODES,
      schedules: Array.isArray(schedules) ? schedules : [],
      schedulesError: Array.isArray(schedules) ? null : schedules.error,
      csrf: readOnly ? null : reply.generateCsrf(),
      operator: req.cookies[OPERATOR_COOKIE] ?? '',
      prev: result.page > 1 ? queryWith(filter, { page: result.page - 1 }) : null,
      next: result.more ? queryWith(filter, { page: result.page + 1 }) : null,
    });
  });

  app.get('/syncs/:id', async (req, reply) => {
    const found = await syncRun(db, (req.params as { id: string }).id);
    if (!found) return render(reply, 'error', { title: 'No such sync', nav: 'syncs', message: 'There is no sync run with this id.' }, 404);
    return render(reply, 'sync', { title: `Sync of ${found.run.customer}/${found.run.source}`, nav: 'syncs', ...found, running: found.run.status === 'started', link: uiLink(found.run.workflowId) });
  });

  /** A running sync's live counts, from its `progress` query: htmx swaps it in every 2 seconds. */
  app.get('/syncs/:id/progress', async (req, reply) => {
    const found = await syncRun(db, (req.params as { id: string }).id);
    if (!found) return reply.code(404).send('');
    if (found.run.status !== 'started') return reply.header('HX-Refresh', 'true').type('text/html').send('<p>The sync has ended.</p>');
    try {
      const progress = await (await temporal()).workflow.getHandle(found.run.workflowId, found.run.runId).query(syncProgressQuery);
      return reply.type('text/html; charset=utf-8').send(pages.progress!({ progress }));
    } catch (error) {
      return reply.type('text/html; charset=utf-8').send(pages.progress!({ error: message(error) }));
    }
  });

  // The impact of a candidate configuration: the same code as flowthru preview --config, nothing written.
  const previewForm = async (req: FastifyRequest, reply: FastifyReply, extra: Record<string, unknown> = {}, status = 200) => {
    const found = await loadConfigVersion(db);
    const sources = (found?.config.customers ?? []).flatMap((c) => c.sources.map((s) => ({ value: `${c.name}/${s.name}`, label: `${c.name}/${s.name} (${s.type})` })));
    return render(reply, 'preview', { title: 'Impact of a configuration change', nav: 'preview', sources, csrf: reply.generateCsrf(), configVersion: found?.version ?? null, ...extra }, status);
  };
  app.get('/preview', (req, reply) => previewForm(req, reply));
  app.post('/preview', { bodyLimit: 4 * 1024 * 1024, preHandler: [sameOrigin, app.csrfProtection] }, async (req, reply) => {
    const body = req.body as Record<string, string | undefined>;
    const [customer, source] = (body.source ?? '').split('/');
    const yaml = body.yaml ?? '';
    const asked = { chosen: body.source, yaml, readSource: body.readSource === 'on' };
    if (!customer || !source || yaml.trim() === '') return previewForm(req, reply, { ...asked, problems: ['Choose a source and give the candidate configuration (paste it, or choose the file).'] }, 400);
    const inForce = await loadConfigVersion(db);
    // Relative paths in the candidate (CSV files, templates) mean what they mean beside the configuration in force.
    const base = inForce ? dirname(resolve((await db.selectFrom('config_versions').select('source_file').where('id', '=', inForce.version).executeTakeFirst())?.source_file ?? '.')) : process.cwd();
    const loaded = await loadConfigText(yaml, base);
    if (!loaded.ok) return previewForm(req, reply, { ...asked, problems: loaded.problems.map((p) => formatProblem(p, 'candidate')) }, 400);
    const candidate = loaded.config.customers.find((c) => c.name === customer && c.sources.some((s) => s.name === source));
    if (!candidate) return previewForm(req, reply, { ...asked, problems: [`The candidate has no source ${source} for customer ${customer}.`] }, 400);
    // The first users with a change are shown; the counts cover everyone.
    const shown: ImpactUser[] = [];
    let more = 0;
    try {
      const report = await previewImpact(db, {
        customer,
        source,
        configVersion: inForce?.version ?? 0,
        candidate,
        inForce: inForce?.config.customers.find((c) => c.name === customer),
        readSource: asked.readSource,
        onUsers: (users) => {
          const room = PREVIEW_ROWS - shown.length;
          shown.push(...users.slice(0, Math.max(0, room)));
          more += Math.max(0, users.length - Math.max(0, room));
        },
      });
      return previewForm(req, reply, { ...asked, report, shown: shown.map(impactRow), more });
    } catch (error) {
      return previewForm(req, reply, { ...asked, problems: [`The preview failed: ${message(error)}`] }, 502);
    } finally {
      if (asked.readSource) await closeLdapConnections();
    }
  });

  // Actions: a confirmation page (GET), then the action itself (POST, same origin, CSRF token).
  const ACTIONS = {
    'retry-user': 'Retry this user',
    'retry-status': 'Retry every user in a status',
    sync: 'Start a sync',
    'schedule-trigger': 'Run a schedule now',
    'schedule-pause': 'Pause a schedule',
    'schedule-unpause': 'Unpause a schedule',
    'allow-deletes': 'Let held deletions through',
  } as const;
  type ActionName = keyof typeof ACTIONS;

  app.get('/actions/:action', async (req, reply) => {
    const action = (req.params as { action: string }).action as ActionName;
    if (!(action in ACTIONS)) return render(reply, 'error', { title: 'No such action', message: 'There is no such action.' }, 404);
    if (readOnly) return render(reply, 'error', { title: 'Read-only', message: 'This console is read-only: it takes no actions.' }, 403);
    const q = req.query as Record<string, string | undefined>;
    return render(reply, 'confirm', {
      title: ACTIONS[action],
      nav: action.startsWith('retry') ? 'users' : 'syncs',
      action,
      fields: Object.entries(q).filter(([k, v]) => k !== '_csrf' && k !== 'operator' && typeof v === 'string').map(([name, value]) => ({ name, value })),
      describe: describeAction(action, q),
      csrf: reply.generateCsrf(),
      operator: req.cookies[OPERATOR_COOKIE] ?? '',
    });
  });

  function describeAction(action: ActionName, q: Record<string, string | undefined>): string {
    switch (action) {
      case 'retry-user':
        return `Run the pipeline of ${q.name ?? 'this user'} again (customer ${q.customer ?? '?'}).`;
      case 'retry-status':
        return `Run the pipeline of every ${q.status ?? '?'} user${q.site ? ` at site ${q.site}` : ''}${q.source ? ` of source ${q.source}` : ''}${q.pool ? ` whose line comes from the ${q.pool === 'customer' ? "customer's" : q.pool} pool` : ''} of customer ${q.customer ?? '?'} again.`;
      case 'sync':
        return `Sync ${q.customer ?? '?'}/${q.source ?? '?'} now (${q.modes ?? 'add'}).`;
      case 'schedule-trigger':
        return `Run the schedule of ${q.customer ?? '?'}/${q.source ?? '?'} now (skipped if its previous run is still going).`;
      case 'schedule-pause':
        return `Pause the schedule of ${q.customer ?? '?'}/${q.source ?? '?'}: it starts no runs until unpaused.`;
      case 'schedule-unpause':
        return `Let the schedule of ${q.customer ?? '?'}/${q.source ?? '?'} run again.`;
      case 'allow-deletes':
        return `Run a delete sync of ${q.customer ?? '?'}/${q.source ?? '?'} that may offboard up to ${q.deletions ?? '?'} users the source no longer has.`;
    }
  }

  app.post('/actions/:action', { preHandler: [sameOrigin, app.csrfProtection] }, async (req, reply) => {
    const action = (req.params as { action: string }).action as ActionName;
    if (!(action in ACTIONS)) return reply.code(404).send('no such action');
    if (readOnly) return render(reply, 'error', { title: 'Read-only', message: 'This console is read-only: it takes no actions.' }, 403);
    const body = req.body as Record<string, string | undefined>;
    const name = text(body.operator);
    if (!name) return render(reply, 'error', { title: ACTIONS[action], message: 'Say who you are (your name is written to the transaction log with the action).' }, 400);
    reply.setCookie(OPERATOR_COOKIE, name, { path: '/', httpOnly: true, sameSite: 'strict', maxAge: 365 * 24 * 3600 });
    const actor: Actor = { name, via: `console ${req.ip}` };
    try {
      const done = await perform(action, body, actor);
      return render(reply, 'done', { title: ACTIONS[action], nav: action.startsWith('retry') ? 'users' : 'syncs', ...done });
    } catch (error) {
      if (error instanceof OperationRefused || error instanceof SyncBusyError) return render(reply, 'error', { title: ACTIONS[action], message: error.message }, 409);
      return render(reply, 'error', { title: ACTIONS[action], message: `It could not be done: ${message(error)}` }, 502);
    }
  });

  async function perform(action: ActionName, body: Record<string, string | undefined>, actor: Actor): Promise<{ message: string; links: { href: string; text: string }[] }> {
    const client = await temporal();
    const customer = text(body.customer);
    const source = text(body.source) ?? '';
    switch (action) {
      case 'retry-user': {
        const { users } = await retryPipelines(db, client, settings.taskQueue, { userId: text(body.user) ?? '' }, actor);
        return { message: `Handed ${users[0]!.username ?? users[0]!.externalId} to their pipeline.`, links: [{ href: `/users/${text(body.user)}`, text: 'Back to the user' }, { href: uiLink(users[0]!.workflowId), text: 'The pipeline in Temporal UI' }] };
      }
      case 'retry-status': {
        const status = body.status as (typeof RETRYABLE_STATUSES)[number];
        if (!RETRYABLE_STATUSES.includes(status)) throw new OperationRefused(`only blocked or failed users are retried, not "${body.status}"`);
        const { users } = await retryPipelines(db, client, settings.taskQueue, { status, customer, site: text(body.site), source: text(body.source), pool: text(body.pool) }, actor);
        return { message: `Handed ${users.length} ${status} user${users.length === 1 ? '' : 's'} to their pipelines.`, links: [{ href: `/users${queryWith({}, { customer, status, site: text(body.site) })}`, text: `The ${status} users` }] };
      }
      case 'sync':
      case 'allow-deletes': {
        if (!customer) throw new OperationRefused('say which customer');
        const modes: SyncMode[] = action === 'allow-deletes' ? ['delete'] : (body.modes ?? 'add').split(',').filter((m): m is SyncMode => (SYNC_MODES as readonly string[]).includes(m));
        if (modes.length === 0) throw new OperationRefused(`"${body.modes}" names no sync mode: add, update or delete`);
        const allow = action === 'allow-deletes' ? Number(body.deletions) : undefined;
        if (allow !== undefined && !(Number.isSafeInteger(allow) && allow >= 0)) throw new OperationRefused('the number of deletions to let through is a whole number');
        const { workflowId } = await startSyncAs(db, client, { customer, source, mode: modes[0]!, modes, taskQueue: settings.taskQueue, ...(allow !== undefined ? { allowDeletes: allow } : {}) }, actor);
        return { message: `Started ${workflowId}.`, links: [{ href: '/syncs', text: 'Syncs' }, { href: uiLink(workflowId), text: 'The sync in Temporal UI' }] };
      }
      case 'schedule-trigger': {
        const result = await triggerSchedule(db, client, source, customer, actor);
        const said = result.outcome === 'started' ? `started ${result.workflowId}` : result.outcome === 'skipped' ? 'skipped: its previous run is still going' : 'its run has not started yet';
        return { message: `Triggered ${result.scheduleId}: ${said}.`, links: [{ href: '/syncs', text: 'Syncs and schedules' }] };
      }
      case 'schedule-pause':
      case 'schedule-unpause': {
        const view = await setSchedulePaused(db, client, source, customer, action === 'schedule-pause', actor, text(body.note));
        return { message: `${view.paused ? 'Paused' : 'Unpaused'} ${view.scheduleId}.`, links: [{ href: '/syncs', text: 'Syncs and schedules' }] };
      }
    }
  }

  app.setNotFoundHandler((req, reply) => render(reply, 'error', { title: 'Not found', message: 'There is no such page.' }, 404));
  app.setErrorHandler((error, req, reply) => {
    const status = (error as { statusCode?: number }).statusCode ?? 500;
    if (status === 403 && (error as { code?: string }).code?.startsWith('FST_CSRF')) {
      return reply.code(403).type('text/plain').send('refused: the form was not the console’s own (its CSRF token is missing or wrong); reload the page and try again');
    }
    log?.error({ route: req.routeOptions.url, err: { message: (error as Error).message } }, 'console request failed');
    return render(reply, 'error', { title: 'Something went wrong', message: status >= 500 ? `The console could not answer: ${message(error)}` : (error as Error).message }, status);
  });

  const address = await app.listen({ host: options.host, port: options.port });
  const port = Number(new URL(address).port);
  const shown = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${shown}:${port}`,
    app,
    close: async () => {
      await app.close();
      const connected = client;
      client = undefined;
      if (connected) await connected.then((c) => c.connection.close()).catch(() => undefined);
      if (ownDb) await db.destroy();
    },
  };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A random token for FLOWTHRU_CONSOLE_TOKEN. */
export const freshConsoleToken = () => randomBytes(24).toString('base64url');

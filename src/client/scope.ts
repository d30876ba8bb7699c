import type { Kysely } from 'kysely';
import type { Database } from '../adapters/db/schema.js';
import { UserError } from './cli.js';

/** What a listing command was asked to narrow to: each name must exist, or the empty answer would read as "none". */
export interface Scope {
  readonly customer?: string | undefined;
  readonly site?: string | undefined;
  readonly source?: string | undefined;
  /** customer, or a site's name. */
  readonly pool?: string | undefined;
  /** A username, external id or email. */
  readonly user?: string | undefined;
}

const listed = (names: readonly string[]) => (names.length > 0 ? names.join(', ') : 'none');

/**
 * Refuses a scope that names a customer, site, source or user flowthru does not have, naming the
 * ones it has: `users --site nowhere` would otherwise print an empty table, as if the site were
 * empty.
 */
export async function checkScope(db: Kysely<Database>, scope: Scope): Promise<void> {
  const customers = await db.selectFrom('customers').select(['id', 'name']).orderBy('name').execute();
  if (scope.customer !== undefined && !customers.some((c) => c.name === scope.customer)) {
    throw new UserError(`no customer "${scope.customer}" (customers: ${listed(customers.map((c) => c.name))})`);
  }
  const ids = customers.filter((c) => scope.customer === undefined || c.name === scope.customer).map((c) => c.id);
  const where = scope.customer === undefined ? '' : ` at customer "${scope.customer}"`;
  const sitesNamed = async () =>
    ids.length === 0 ? [] : (await db.selectFrom('sites').select('name').distinct().where('customer_id', 'in', ids).orderBy('name').execute()).map((s) => s.name);
  for (const [option, name] of [
    ['--site', scope.site],
    ['--pool', scope.pool === 'customer' ? undefined : scope.pool],
  ] as const) {
    if (name === undefined) continue;
    const sites = await sitesNamed();
    if (!sites.includes(name)) throw new UserError(`${option}: no site "${name}"${where} (sites: ${listed(sites)}${option === '--pool' ? '; or customer' : ''})`);
  }
  if (scope.source !== undefined) {
    const sources = ids.length === 0 ? [] : (await db.selectFrom('sync_sources').select('name').distinct().where('customer_id', 'in', ids).orderBy('name').execute()).map((s) => s.name);
    if (!sources.includes(scope.source)) throw new UserError(`--source: no source "${scope.source}"${where} (sources: ${listed(sources)})`);
  }
  if (scope.user !== undefined) {
    const who = scope.user;
    const found =
      ids.length > 0 &&
      (await db
        .selectFrom('users')
        .select('id')
        .where('customer_id', 'in', ids)
        .where((eb) => eb.or([eb('username', '=', who), eb('external_id', '=', who), eb('email', '=', who)]))
        .limit(1)
        .executeTakeFirst()) !== undefined;
    if (!found) throw new UserError(`no user "${who}"${where} (a username, external id or email)`);
  }
}

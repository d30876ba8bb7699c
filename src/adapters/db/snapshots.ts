import type { Kysely } from 'kysely';
import type { CustomerConfig, ProfileConfig, SourceConfig } from '../../domain/config/schema.js';
import type { ResolvedConfig } from '../../domain/config/resolved.js';
import type { FtpRuleCandidate, SiteCandidate } from '../../domain/matching.js';
import { PermanentError } from '../errors.js';
import { loadConfigVersion } from './config-store.js';
import type { Database } from './schema.js';

/** One customer as a configuration version describes it, with the database ids of its parts. */
export interface CustomerSnapshot {
  readonly version: number;
  readonly customerId: number;
  readonly config: CustomerConfig;
  readonly welcomeTemplate: string | undefined;
  readonly movedTemplate: string | undefined;
  readonly sites: readonly SiteCandidate[];
  readonly siteIds: ReadonlyMap<string, number>;
  readonly siteNames: ReadonlyMap<number, string>;
  readonly ftpRules: readonly FtpRuleCandidate[];
  readonly profiles: ReadonlyMap<string, ProfileConfig & { readonly id: number }>;
  readonly profileNames: ReadonlyMap<number, string>;
  readonly sources: ReadonlyMap<string, SourceConfig & { readonly id: number }>;
}

/** A customer's sites and FTP rules as the matching functions take them: configuration only, no database. */
export function matchingOf(config: CustomerConfig): { sites: SiteCandidate[]; ftpRules: FtpRuleCandidate[] } {
  const criteria = new Map(config.criteria.map((k) => [k.name, { name: k.name, condition: k.when }]));
  const sites: SiteCandidate[] = config.sites.map((site) => ({
    name: site.name,
    moveCriteria: Object.fromEntries(
      Object.entries(site.moveCriteria).flatMap(([userType, ref]) => (ref && criteria.has(ref) ? [[userType, criteria.get(ref)!]] : [])),
    ),
  }));
  const ftp = config.ftpCriteria.find((f) => f.name === config.settings.flowThrough.criteria);
  const ftpRules: FtpRuleCandidate[] = (ftp?.rules ?? []).map((rule) => ({
    criteria: criteria.get(rule.criteria)!,
    profile: rule.profile,
    role: rule.role,
  }));
  return { sites, ftpRules };
}

/**
 * Configuration versions are immutable, so each is read and compiled once per process and then
 * served from memory: a step costs no configuration queries.
 */
export class ConfigSnapshots {
  private readonly versions = new Map<number, Promise<ResolvedConfig>>();
  private readonly customers = new Map<string, Promise<CustomerSnapshot>>();

  constructor(private readonly db: Kysely<Database>) {}

  async latestVersion(): Promise<number> {
    const row = await this.db.selectFrom('config_versions').select('id').orderBy('id', 'desc').limit(1).executeTakeFirst();
    if (!row) throw new PermanentError('NoConfiguration', 'no configuration has been applied yet: run flowthru config apply FILE');
    return row.id;
  }

  private version(version: number): Promise<ResolvedConfig> {
    let config = this.versions.get(version);
    if (!config) {
      config = loadConfigVersion(this.db, version).then((found) => {
        if (!found) throw new PermanentError('UnknownConfigVersion', `configuration version ${version} does not exist`);
        return found.config;
      });
      config.catch(() => this.versions.delete(version));
      this.versions.set(version, config);
    }
    return config;
  }

  customer(version: number, name: string): Promise<CustomerSnapshot> {
    const key = `${version}/${name}`;
    let snapshot = this.customers.get(key);
    if (!snapshot) {
      snapshot = this.compile(version, name);
      snapshot.catch(() => this.customers.delete(key));
      this.customers.set(key, snapshot);
    }
    return snapshot;
  }

  private async compile(version: number, name: string): Promise<CustomerSnapshot> {
    const resolved = await this.version(version);
    const config = resolved.customers.find((c) => c.name === name);
    if (!config) throw new PermanentError('UnknownCustomer', `customer "${name}" is not in configuration version ${version}`);
    const customer = await this.db.selectFrom('customers').select('id').where('name', '=', name).executeTakeFirst();
    if (!customer) throw new PermanentError('UnknownCustomer', `customer "${name}" is not in the database`);
    const ids = async (table: 'sites' | 'user_profiles' | 'sync_sources') =>
      new Map(
        (await this.db.selectFrom(table).select(['id', 'name']).where('customer_id', '=', customer.id).execute()).map((r) => [r.name, r.id]),
      );
    const [siteIds, profileIds, sourceIds] = await Promise.all([ids('sites'), ids('user_profiles'), ids('sync_sources')]);

    const { sites, ftpRules } = matchingOf(config);
    const withId = <T extends { name: string }>(items: readonly T[], idsByName: Map<string, number>, what: string) =>
      new Map(
        items.map((item) => {
          const id = idsByName.get(item.name);
          if (id === undefined) {
            throw new PermanentError('StaleConfigVersion', `${what} "${item.name}" of configuration version ${version} no longer exists`);
          }
          return [item.name, { ...item, id }] as const;
        }),
      );
    return {
      version,
      customerId: customer.id,
      config,
      welcomeTemplate: resolved.templates[name],
      movedTemplate: resolved.movedTemplates?.[name],
      sites,
      siteIds,
      siteNames: new Map([...siteIds].map(([n, id]) => [id, n])),
      ftpRules,
      profiles: withId(config.profiles, profileIds, 'profile'),
      profileNames: new Map([...profileIds].map(([n, id]) => [id, n])),
      sources: withId(config.sources, sourceIds, 'source'),
    };
  }
}

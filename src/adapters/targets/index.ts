import type { TargetConfig } from '../../domain/config/schema.js';
import { createLdapTarget } from './ldap.js';
import { createScimTarget } from './scim.js';
import type { TargetPlugin } from './types.js';
import { createWebhookTarget } from './webhook.js';

export * from './types.js';

/** The plugin for a configured target: one per kind, all behind TargetPlugin. */
export function createTargetPlugin(config: TargetConfig, env: NodeJS.ProcessEnv = process.env): TargetPlugin {
  switch (config.kind) {
    case 'ldap':
      return createLdapTarget(config, env);
    case 'scim':
      return createScimTarget(config, env);
    case 'webhook':
      return createWebhookTarget(config, env);
  }
}

/**
 * Plugins by configuration version and target: a configuration version is immutable, so its
 * plugins are built once per worker and reused (their connections and cached server capabilities too).
 */
export class TargetPlugins {
  private readonly plugins = new Map<string, TargetPlugin>();

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  get(version: number, customer: string, config: TargetConfig): TargetPlugin {
    const key = `${version}/${customer}/${config.name}`;
    let plugin = this.plugins.get(key);
    if (!plugin) {
      plugin = createTargetPlugin(config, this.env);
      this.plugins.set(key, plugin);
    }
    return plugin;
  }

  async close(): Promise<void> {
    const all = [...this.plugins.values()];
    this.plugins.clear();
    await Promise.allSettled(all.map((p) => p.close()));
  }
}

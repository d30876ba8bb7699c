import type { Config, SourceConfig } from '../domain/config/schema.js';
import { itemIndex, type ConfigPath, type ConfigProblem } from '../domain/config/validate.js';

/** A setting that names the environment variable holding a secret. */
export interface SecretReference {
  readonly variable: string;
  readonly path: ConfigPath;
  /** Who needs it, in words: `customer acme, source directory, passwordEnv`. */
  readonly needer: string;
}

function sourceSecrets(source: SourceConfig): { setting: string; variable: string }[] {
  if (source.type === 'ldap') return [{ setting: 'passwordEnv', variable: source.passwordEnv }];
  if (source.type === 'entra') {
    return [
      ...(source.clientSecretEnv === undefined ? [] : [{ setting: 'clientSecretEnv', variable: source.clientSecretEnv }]),
      ...(source.clientCertificatePasswordEnv === undefined ? [] : [{ setting: 'clientCertificatePasswordEnv', variable: source.clientCertificatePasswordEnv }]),
    ];
  }
  return [];
}

/** Every secret variable the configuration names and would read at run time. */
export function secretReferences(config: Config): SecretReference[] {
  return config.customers.flatMap((customer, index) => {
    const c = itemIndex(customer, index);
    const refs: SecretReference[] = customer.sources.flatMap((source, s) =>
      sourceSecrets(source).map((secret) => ({
        variable: secret.variable,
        path: ['customers', c, 'sources', itemIndex(source, s), secret.setting],
        needer: `customer ${customer.name}, source ${source.name}, ${secret.setting}`,
      })),
    );
    customer.targets.forEach((target, t) => {
      const setting = target.kind === 'ldap' ? 'passwordEnv' : target.kind === 'scim' ? 'tokenEnv' : 'secretEnv';
      const variable = target.kind === 'ldap' ? target.passwordEnv : target.kind === 'scim' ? target.tokenEnv : target.secretEnv;
      // A disabled target is never called: its secret is not needed where the worker runs.
      if (variable === undefined || target.mode === 'disabled') return;
      refs.push({
        variable,
        path: ['customers', c, 'targets', itemIndex(target, t), setting],
        needer: `customer ${customer.name}, target ${target.name}, ${setting}`,
      });
    });
    const smtp = customer.settings.smtp;
    // The mailer reads the password only to log in, which it does only with a username.
    if (smtp?.passwordEnv !== undefined && smtp.username !== undefined) {
      refs.push({
        variable: smtp.passwordEnv,
        path: ['customers', c, 'settings', 'smtp', 'passwordEnv'],
        needer: `customer ${customer.name}, settings.smtp.passwordEnv`,
      });
    }
    return refs;
  });
}

/** Unset and empty alike: an empty password would turn an LDAP bind into an anonymous one. */
const isMissing = (env: NodeJS.ProcessEnv, variable: string) => env[variable] === undefined || env[variable] === '';

export function missingSecrets(config: Config, env: NodeJS.ProcessEnv): SecretReference[] {
  return secretReferences(config).filter((ref) => isMissing(env, ref.variable));
}

/** Where validate runs may not be where the worker runs: a missing secret there is only a warning. */
export function secretWarnings(config: Config, env: NodeJS.ProcessEnv): ConfigProblem[] {
  return missingSecrets(config, env).map((ref) => ({
    severity: 'warning',
    path: ref.path,
    message: `the environment variable ${ref.variable} is ${env[ref.variable] === undefined ? 'not set' : 'empty'} here; the worker needs it (${ref.needer})`,
  }));
}

/** A worker would fail every sync or email that needs these: it refuses to start instead. */
export class MissingSecrets extends Error {
  constructor(
    readonly version: number,
    readonly missing: readonly SecretReference[],
  ) {
    const byVariable = new Map<string, string[]>();
    for (const ref of missing) byVariable.set(ref.variable, [...(byVariable.get(ref.variable) ?? []), ref.needer]);
    const list = [...byVariable].map(([variable, needers]) => `${variable} (${needers.join('; ')})`).join(', ');
    super(
      `the worker cannot start: configuration version ${version} needs ${byVariable.size === 1 ? 'a secret environment variable that is' : 'secret environment variables that are'} not set: ${list}; set ${byVariable.size === 1 ? 'it' : 'them'} and start the worker again`,
    );
    this.name = 'MissingSecrets';
  }
}

/** Throws MissingSecrets when a variable the configuration names is not set in `env`. */
export function assertSecretsSet(version: number, config: Config, env: NodeJS.ProcessEnv): void {
  const missing = missingSecrets(config, env);
  if (missing.length > 0) throw new MissingSecrets(version, missing);
}

/** The attributes every source maps onto; raw source attributes live under `attributes.<name>`. */
export const CANONICAL_ATTRIBUTES = [
  'username',
  'email',
  'firstName',
  'lastName',
  'displayName',
  'department',
  'city',
  'state',
  'country',
  'postalCode',
  'title',
  'employeeId',
  'phone',
  'mobile',
  'manager',
  'usageLocation',
] as const;

export type CanonicalAttribute = (typeof CANONICAL_ATTRIBUTES)[number];

export const USER_TYPES = ['microsoft', 'ldap', 'cucm', 'webex', 'csv'] as const;

/**
 * Where a user stands, the one list the database (a CHECK constraint), the workflows and the CLI
 * share: `imported` (at customer level, flow-through off), `unplaced` (no site matches), `moved`
 * (placed, profile not chosen yet), `unmatched` (placed, no profile), `provisioning`,
 * `provisioned`, `blocked` and `failed` (with the reason), `deleted` (offboarded, kept for audit).
 */
export const USER_STATUSES = ['imported', 'unplaced', 'moved', 'unmatched', 'provisioning', 'provisioned', 'blocked', 'failed', 'deleted'] as const;
export type UserStatus = (typeof USER_STATUSES)[number];
export type UserType = (typeof USER_TYPES)[number];

/** A single- or multi-valued attribute after normalisation; absent when the source has no value. */
export type AttributeValue = string | readonly string[] | null | undefined;

export type CanonicalUser = Partial<Record<CanonicalAttribute, string>> & {
  readonly attributes?: Readonly<Record<string, AttributeValue>>;
};

const RAW_PREFIX = 'attributes.';

export function isCanonicalAttribute(name: string): name is CanonicalAttribute {
  return (CANONICAL_ATTRIBUTES as readonly string[]).includes(name);
}

/** Whether `path` names something a user can have: a canonical attribute or `attributes.<name>`. */
export function isAttributePath(path: string): boolean {
  return isCanonicalAttribute(path) || (path.startsWith(RAW_PREFIX) && path.length > RAW_PREFIX.length);
}

/**
 * Reads a canonical attribute or a raw one (`attributes.extensionAttribute3`). Raw names are matched
 * exactly first, then case-insensitively, because LDAP attribute names are case-insensitive.
 */
export function readAttribute(user: CanonicalUser, path: string): AttributeValue {
  if (path.startsWith(RAW_PREFIX)) {
    const raw = user.attributes;
    if (!raw) return undefined;
    const name = path.slice(RAW_PREFIX.length);
    if (Object.hasOwn(raw, name)) return raw[name];
    const lower = name.toLowerCase();
    const key = Object.keys(raw).find((k) => k.toLowerCase() === lower);
    return key === undefined ? undefined : raw[key];
  }
  return isCanonicalAttribute(path) ? user[path] : undefined;
}

import type { ColumnType, Generated, Insertable, JSONColumnType, Selectable, Updateable } from 'kysely';
import type { Condition } from '../../domain/criteria.js';
import type { ServiceSpec } from '../../domain/services.js';
import type { UserStatus, UserType } from '../../domain/user.js';

/*
 * The typed shape of the database, kept in step with migrations/: test/integration/db-schema.test.ts
 * compares these tables and columns with what the migrations create.
 */

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T extends object | null> = JSONColumnType<T, T, T>;
/** bigint ids come back from pg as strings; they are passed around as such. */
type BigId = ColumnType<string, string | number, string | number>;

export type { UserStatus };
export type NumberStatus = 'available' | 'reserved' | 'used' | 'cooling';

export interface ConfigVersionsTable {
  id: Generated<number>;
  hash: string;
  document: Json<object>;
  source_file: string | null;
  applied_at: Generated<Date>;
  applied_by: string | null;
}

export interface CustomersTable {
  id: Generated<number>;
  name: string;
  display_name: string | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface SitesTable {
  id: Generated<number>;
  customer_id: number;
  name: string;
  display_name: string | null;
  position: number;
}

export interface SiteDefaultsTable {
  site_id: number;
  customer_id: number;
  default_role: string | null;
  locale: string | null;
  time_zone: string | null;
}

export interface SiteMoveCriteriaTable {
  site_id: number;
  customer_id: number;
  user_type: UserType;
  criteria_id: number;
  criteria_usage: Generated<'move'>;
}

export interface CriteriaTable {
  id: Generated<number>;
  customer_id: number;
  name: string;
  description: string | null;
  usage: 'move' | 'ftp';
  condition: Json<Condition>;
}

export interface UserProfilesTable {
  id: Generated<number>;
  customer_id: number;
  name: string;
  description: string | null;
  role: string | null;
  number_from: 'site' | 'customer' | null;
  services: Json<ServiceSpec[]>;
}

export interface FtpCriteriaTable {
  id: Generated<number>;
  customer_id: number;
  name: string;
}

export interface FtpRulesTable {
  id: Generated<number>;
  customer_id: number;
  ftp_criteria_id: number;
  position: number;
  criteria_id: number;
  criteria_usage: Generated<'ftp'>;
  profile_id: number;
  role: string | null;
}

export interface GlobalSettingsTable {
  customer_id: number;
  flow_through_enabled: boolean;
  flow_through_add_sync: boolean;
  flow_through_update_sync: boolean;
  ftp_criteria_id: number | null;
  number_assignment_on_move: 'assign-new' | 'keep-existing';
  update_sync_profile_id: number | null;
  prevent_duplicate_numbers: boolean;
  number_cooling_enabled: boolean;
  number_cooling_days: number;
  welcome_email: Json<{ enabled: boolean; from?: string | undefined; subject: string; template?: string | undefined }>;
  smtp: Json<Record<string, unknown>> | null;
  delete_threshold: string | null;
}

export interface SyncSourcesTable {
  id: Generated<number>;
  customer_id: number;
  name: string;
  type: 'csv' | 'ldap' | 'entra' | 'cucm' | 'webex';
  user_type: UserType;
  settings: Json<Record<string, unknown>>;
  attribute_map: Json<Record<string, string>>;
  watermark: Json<object> | null;
  running_sync: string | null;
}

export interface UsersTable {
  id: Generated<string>;
  customer_id: number;
  source_id: number;
  external_id: string;
  user_type: UserType;
  username: string | null;
  email: string | null;
  attributes: Json<Record<string, unknown>>;
  source_hash: string;
  imported_by: string | null;
  ldap_entry: Json<Record<string, unknown>> | null;
  site_id: number | null;
  role: string | null;
  profile_id: number | null;
  status: ColumnType<UserStatus, UserStatus | undefined, UserStatus>;
  status_reason: string | null;
  deleted_at: Timestamp | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  seen_by: string | null;
  offboard_by: string | null;
}

export interface UserServicesTable {
  id: Generated<string>;
  customer_id: number;
  user_id: BigId;
  service_key: string;
  kind: string;
  settings: Json<Record<string, unknown>>;
  status: Generated<'active' | 'removed'>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface NumberInventoryTable {
  id: Generated<string>;
  customer_id: number;
  site_id: number | null;
  number: string;
  status: ColumnType<NumberStatus, NumberStatus | undefined, NumberStatus>;
  user_id: BigId | null;
  reserved_by: string | null;
  cooling_until: Timestamp | null;
  prevent_duplicates: boolean;
  updated_at: Generated<Date>;
}

export type TargetStateStatus = 'pending' | 'provisioned' | 'deprovisioned' | 'failed' | 'cancelled';

export interface TargetStateTable {
  customer_id: number;
  target: string;
  user_id: BigId;
  status: TargetStateStatus;
  remote_id: string | null;
  pushed: Json<Record<string, string | null>> | null;
  site: string | null;
  last_event: string | null;
  last_error: string | null;
  attempts: Generated<number>;
  failure_episode: Generated<number>;
  failing_since: Timestamp | null;
  push_count: Generated<number>;
  job_workflow_id: string | null;
  pushed_at: Timestamp | null;
  updated_at: Generated<Date>;
}

export interface EmailOutboxTable {
  id: Generated<string>;
  customer_id: number;
  user_id: BigId;
  event: string;
  message_id: string;
  to_address: string;
  subject: string;
  html: string;
  text: string;
  status: ColumnType<'pending' | 'sent' | 'failed', 'pending' | 'sent' | 'failed' | undefined>;
  attempts: Generated<number>;
  last_error: string | null;
  created_at: Generated<Date>;
  sent_at: Timestamp | null;
}

export interface TransactionLogTable {
  id: Generated<string>;
  customer_id: number | null;
  user_id: BigId | null;
  kind: 'sync' | 'step' | 'config' | 'operator';
  action: string;
  subject: string | null;
  status: 'started' | 'succeeded' | 'failed' | 'skipped' | 'blocked' | 'held';
  started_at: Generated<Date>;
  ended_at: Timestamp | null;
  error: string | null;
  details: Json<object> | null;
  workflow_id: string | null;
  run_id: string | null;
  idempotency_key: string | null;
}

export interface PipelineOutcomesTable {
  sync_id: string;
  external_id: string;
  user_id: BigId;
  status: string;
  moved: boolean;
  emailed: boolean;
  site: string | null;
  profile: string | null;
  number: string | null;
  reason: string | null;
  recorded_at: Generated<Date>;
  placed: Generated<boolean>;
  restored: Generated<boolean>;
}

export interface LicencesTable {
  customer_id: number;
  sku_part_number: string;
  sku_id: string;
  enabled: number;
  consumed: number;
  refreshed_at: Generated<Date>;
}

export interface LicenceAssignmentsTable {
  customer_id: number;
  sku_part_number: string;
  user_id: BigId;
  assigned_at: Generated<Date>;
}

export interface Database {
  config_versions: ConfigVersionsTable;
  customers: CustomersTable;
  sites: SitesTable;
  site_defaults: SiteDefaultsTable;
  site_move_criteria: SiteMoveCriteriaTable;
  criteria: CriteriaTable;
  user_profiles: UserProfilesTable;
  ftp_criteria: FtpCriteriaTable;
  ftp_rules: FtpRulesTable;
  global_settings: GlobalSettingsTable;
  sync_sources: SyncSourcesTable;
  users: UsersTable;
  user_services: UserServicesTable;
  number_inventory: NumberInventoryTable;
  email_outbox: EmailOutboxTable;
  transaction_log: TransactionLogTable;
  pipeline_outcomes: PipelineOutcomesTable;
  licences: LicencesTable;
  licence_assignments: LicenceAssignmentsTable;
  target_state: TargetStateTable;
}

/** Column names per table, as the type declares them: the schema test checks migrations against it. */
export const DATABASE_COLUMNS: { [T in keyof Database]: readonly (keyof Database[T])[] } = {
  config_versions: ['id', 'hash', 'document', 'source_file', 'applied_at', 'applied_by'],
  customers: ['id', 'name', 'display_name', 'created_at', 'updated_at'],
  sites: ['id', 'customer_id', 'name', 'display_name', 'position'],
  site_defaults: ['site_id', 'customer_id', 'default_role', 'locale', 'time_zone'],
  site_move_criteria: ['site_id', 'customer_id', 'user_type', 'criteria_id', 'criteria_usage'],
  criteria: ['id', 'customer_id', 'name', 'description', 'usage', 'condition'],
  user_profiles: ['id', 'customer_id', 'name', 'description', 'role', 'number_from', 'services'],
  ftp_criteria: ['id', 'customer_id', 'name'],
  ftp_rules: ['id', 'customer_id', 'ftp_criteria_id', 'position', 'criteria_id', 'criteria_usage', 'profile_id', 'role'],
  global_settings: [
    'customer_id',
    'flow_through_enabled',
    'flow_through_add_sync',
    'flow_through_update_sync',
    'ftp_criteria_id',
    'number_assignment_on_move',
    'update_sync_profile_id',
    'prevent_duplicate_numbers',
    'number_cooling_enabled',
    'number_cooling_days',
    'welcome_email',
    'smtp',
    'delete_threshold',
  ],
  sync_sources: ['id', 'customer_id', 'name', 'type', 'user_type', 'settings', 'attribute_map', 'watermark', 'running_sync'],
  users: [
    'id',
    'customer_id',
    'source_id',
    'external_id',
    'user_type',
    'username',
    'email',
    'attributes',
    'source_hash',
    'imported_by',
    'ldap_entry',
    'site_id',
    'role',
    'profile_id',
    'status',
    'status_reason',
    'deleted_at',
    'created_at',
    'updated_at',
    'seen_by',
    'offboard_by',
  ],
  user_services: ['id', 'customer_id', 'user_id', 'service_key', 'kind', 'settings', 'status', 'created_at', 'updated_at'],
  number_inventory: [
    'id',
    'customer_id',
    'site_id',
    'number',
    'status',
    'user_id',
    'reserved_by',
    'cooling_until',
    'prevent_duplicates',
    'updated_at',
  ],
  email_outbox: [
    'id',
    'customer_id',
    'user_id',
    'event',
    'message_id',
    'to_address',
    'subject',
    'html',
    'text',
    'status',
    'attempts',
    'last_error',
    'created_at',
    'sent_at',
  ],
  transaction_log: [
    'id',
    'customer_id',
    'user_id',
    'kind',
    'action',
    'subject',
    'status',
    'started_at',
    'ended_at',
    'error',
    'details',
    'workflow_id',
    'run_id',
    'idempotency_key',
  ],
  pipeline_outcomes: ['sync_id', 'external_id', 'user_id', 'status', 'moved', 'emailed', 'site', 'profile', 'number', 'reason', 'recorded_at', 'placed', 'restored'],
  licences: ['customer_id', 'sku_part_number', 'sku_id', 'enabled', 'consumed', 'refreshed_at'],
  licence_assignments: ['customer_id', 'sku_part_number', 'user_id', 'assigned_at'],
  target_state: [
    'customer_id',
    'target',
    'user_id',
    'status',
    'remote_id',
    'pushed',
    'site',
    'last_event',
    'last_error',
    'attempts',
    'failure_episode',
    'failing_since',
    'push_count',
    'job_workflow_id',
    'pushed_at',
    'updated_at',
  ],
};

export type User = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type NumberRow = Selectable<NumberInventoryTable>;

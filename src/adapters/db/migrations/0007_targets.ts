/* eslint-disable @typescript-eslint/no-explicit-any -- a migration sees the schema as it was, not as it is typed now */
import { sql, type Kysely } from 'kysely';

/*
 * Provisioning targets: what flowthru remembers of each user at each target (target_state), so a
 * push compares before it writes, a deprovision removes what was written, an enrollment target
 * hears only the first provision, and an operator sees pending and failed jobs.
 * - status: pending (a push is queued or being retried), provisioned, deprovisioned, failed (retries
 *   exhausted or refused for good; `last_error` says why), cancelled (an operator ended the job).
 * - remote_id: the target's id of the user (an entry's entryUUID, a SCIM resource id).
 * - pushed / site: the fields and the site of the last successful push (a move is a change of site).
 * - failure_episode: counts failure episodes; the administrators hear once per episode. An episode
 *   begins with a failure for good when the target is not failing already (failing_since null) and
 *   ends with the next successful push (failing_since cleared).
 * - push_count: successful pushes so far; part of each event's id, so a retry of one push keeps its
 *   id and every new push has a new one (a webhook receiver drops only true repeats).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('target_state')
    .addColumn('customer_id', 'integer', (c) => c.notNull().references('customers.id').onDelete('cascade'))
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('user_id', 'bigint', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('pending', 'provisioned', 'deprovisioned', 'failed', 'cancelled')`),
    )
    .addColumn('remote_id', 'text')
    .addColumn('pushed', 'jsonb')
    .addColumn('site', 'text')
    .addColumn('last_event', 'text')
    .addColumn('last_error', 'text')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('failure_episode', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('failing_since', 'timestamptz')
    .addColumn('push_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('job_workflow_id', 'text')
    .addColumn('pushed_at', 'timestamptz')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('target_state_pkey', ['customer_id', 'target', 'user_id'])
    .execute();
  await sql`create index target_state_status_idx on target_state (customer_id, status, target)`.execute(db);
  await sql`create index target_state_user_idx on target_state (user_id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('target_state').execute();
}

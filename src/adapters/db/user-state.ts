import type { Kysely, Selectable, Transaction, Updateable } from 'kysely';
import type { UserStatus } from '../../domain/user.js';
import { PermanentError } from '../errors.js';
import type { Database, UsersTable } from './schema.js';

/*
 * A user's place in the lifecycle, one statement each: where they are (site, role, profile) and
 * their status with its reason. Pipeline steps lock the user first, so passes never interleave.
 *
 * A transaction reads and locks a user once: the row it locked is kept beside the transaction, and
 * every change below writes the row and returns it (the same round trip), so the steps that share
 * a transaction (place: create, move, profile) see each other's changes without reading the row
 * again. Every change to a locked user inside a step's transaction goes through these functions.
 *
 * In the steps of `runSteps`, a change to a locked user is not written at once: it waits, merged
 * with the step's other changes to the user, and goes with the step's log entry, in the entry's
 * statement (see runSteps). The row kept beside the transaction has it at once.
 */

type Tx = Transaction<Database>;
export type UserRow = Selectable<UsersTable>;
type UserChange = Updateable<UsersTable>;

/** The users each open transaction has locked, as they stand now in it. */
const locked = new WeakMap<Tx, Map<string, UserRow>>();

/** Changes to locked users waiting for their step's log entry, per transaction that defers them. */
const deferred = new WeakMap<Tx, Map<string, UserChange>>();

/** From now on, changes to users this transaction locked wait for `takeUserChanges` (runSteps). */
export function deferUserChanges(tx: Tx): void {
  deferred.set(tx, new Map());
}

/** The changes waiting in this transaction, one per user (later ones merged over earlier ones), taken. */
export function takeUserChanges(tx: Tx): Array<{ userId: string; set: UserChange }> {
  const waiting = deferred.get(tx);
  if (!waiting || waiting.size === 0) return [];
  const changes = [...waiting].map(([userId, set]) => ({ userId, set }));
  waiting.clear();
  return changes;
}

/** The statement that writes a change to a user. */
export function userUpdate(tx: Tx, userId: string, set: UserChange) {
  return tx.updateTable('users').set(set).where('id', '=', userId);
}

/** Reads the user and locks their row for the rest of the step's transaction (once per transaction). */
export async function lockUser(tx: Tx, customerId: number, userId: string): Promise<UserRow> {
  const held = locked.get(tx)?.get(userId);
  if (held && Number(held.customer_id) === customerId) return held;
  const user = await tx.selectFrom('users').selectAll().where('id', '=', userId).where('customer_id', '=', customerId).forUpdate().executeTakeFirst();
  if (!user) throw new PermanentError('UnknownUser', `user ${userId} does not exist for this customer`);
  remember(tx, userId, user);
  return user;
}

/**
 * The user as they stand, with the first number they have in use (null: none), in one statement
 * and without a lock: what a message about them is written from (a consistent read of both).
 */
export async function readUserWithLine(db: Kysely<Database>, customerId: number, userId: string): Promise<UserRow & { line: string | null }> {
  const user = await db
    .selectFrom('users')
    .selectAll('users')
    .select((eb) =>
      eb
        .selectFrom('number_inventory')
        .select('number_inventory.number')
        .whereRef('number_inventory.user_id', '=', 'users.id')
        .where('number_inventory.status', '=', 'used')
        .orderBy('number_inventory.number')
        .limit(1)
        .as('line'),
    )
    .where('users.id', '=', userId)
    .where('users.customer_id', '=', customerId)
    .executeTakeFirst();
  if (!user) throw new PermanentError('UnknownUser', `user ${userId} does not exist for this customer`);
  return user;
}

function remember(tx: Tx, userId: string, row: UserRow): void {
  const rows = locked.get(tx) ?? new Map<string, UserRow>();
  rows.set(userId, row);
  locked.set(tx, rows);
}

/**
 * Writes the change (or, where the transaction defers them, lets it wait for the step's entry) and
 * keeps the row as it is now, when this transaction holds the user.
 */
async function change(tx: Tx, userId: string, set: UserChange): Promise<void> {
  const held = locked.get(tx)?.get(userId);
  const waiting = deferred.get(tx);
  if (held && waiting) {
    remember(tx, userId, { ...held, ...set } as UserRow);
    waiting.set(userId, { ...waiting.get(userId), ...set });
    return;
  }
  const row = await userUpdate(tx, userId, set).returningAll().executeTakeFirst();
  if (row && locked.get(tx)?.has(userId)) remember(tx, userId, row);
}

export async function setStatus(tx: Tx, userId: string, status: UserStatus, reason: string | null = null): Promise<void> {
  await change(tx, userId, { status, status_reason: reason, updated_at: new Date() });
}

/** A reason beside the status the user keeps (kept where they are by an update). */
export async function setReason(tx: Tx, userId: string, reason: string): Promise<void> {
  await change(tx, userId, { status_reason: reason, updated_at: new Date() });
}

/** At a site, with the site's role; the profile is chosen next. */
export async function placeAtSite(tx: Tx, userId: string, siteId: number, role: string | null): Promise<void> {
  await change(tx, userId, { site_id: siteId, role, status: 'moved', status_reason: null, updated_at: new Date() });
}

export async function setProfile(tx: Tx, userId: string, profileId: number | null, role: string | null, status: UserStatus, reason: string | null = null): Promise<void> {
  await change(tx, userId, { profile_id: profileId, ...(profileId === null ? {} : { role }), status, status_reason: reason, updated_at: new Date() });
}

/** An offboarded user seen again: back at customer level, to be placed and provisioned anew. */
export async function restoreUser(tx: Tx, userId: string): Promise<void> {
  await change(tx, userId, { status: 'imported', status_reason: null, site_id: null, profile_id: null, role: null, deleted_at: null, offboard_by: null, updated_at: new Date() });
}

/** Offboarded: kept for audit with where they were, marked deleted. */
export async function markDeleted(tx: Tx, userId: string, reason: string): Promise<void> {
  await change(tx, userId, { status: 'deleted', status_reason: reason, deleted_at: new Date(), updated_at: new Date() });
}

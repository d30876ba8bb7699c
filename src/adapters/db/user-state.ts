import type { Selectable, Transaction } from 'kysely';
import type { UserStatus } from '../../domain/user.js';
import { PermanentError } from '../errors.js';
import type { Database, UsersTable } from './schema.js';

/*
 * A user's place in the lifecycle, one statement each: where they are (site, role, profile) and
 * their status with its reason. Pipeline steps lock the user first, so passes never interleave.
 */

type Tx = Transaction<Database>;
export type UserRow = Selectable<UsersTable>;

/** Reads the user and locks their row for the rest of the step's transaction. */
export async function lockUser(tx: Tx, customerId: number, userId: string): Promise<UserRow> {
  const user = await tx.selectFrom('users').selectAll().where('id', '=', userId).where('customer_id', '=', customerId).forUpdate().executeTakeFirst();
  if (!user) throw new PermanentError('UnknownUser', `user ${userId} does not exist for this customer`);
  return user;
}

export async function setStatus(tx: Tx, userId: string, status: UserStatus, reason: string | null = null): Promise<void> {
  await tx.updateTable('users').set({ status, status_reason: reason, updated_at: new Date() }).where('id', '=', userId).execute();
}

/** A reason beside the status the user keeps (kept where they are by an update). */
export async function setReason(tx: Tx, userId: string, reason: string): Promise<void> {
  await tx.updateTable('users').set({ status_reason: reason, updated_at: new Date() }).where('id', '=', userId).execute();
}

/** At a site, with the site's role; the profile is chosen next. */
export async function placeAtSite(tx: Tx, userId: string, siteId: number, role: string | null): Promise<void> {
  await tx.updateTable('users').set({ site_id: siteId, role, status: 'moved', status_reason: null, updated_at: new Date() }).where('id', '=', userId).execute();
}

export async function setProfile(tx: Tx, userId: string, profileId: number | null, role: string | null, status: UserStatus, reason: string | null = null): Promise<void> {
  await tx
    .updateTable('users')
    .set({ profile_id: profileId, ...(profileId === null ? {} : { role }), status, status_reason: reason, updated_at: new Date() })
    .where('id', '=', userId)
    .execute();
}

/** An offboarded user seen again: back at customer level, to be placed and provisioned anew. */
export async function restoreUser(tx: Tx, userId: string): Promise<void> {
  await tx
    .updateTable('users')
    .set({ status: 'imported', status_reason: null, site_id: null, profile_id: null, role: null, deleted_at: null, offboard_by: null, updated_at: new Date() })
    .where('id', '=', userId)
    .execute();
}

/** Offboarded: kept for audit with where they were, marked deleted. */
export async function markDeleted(tx: Tx, userId: string, reason: string): Promise<void> {
  await tx.updateTable('users').set({ status: 'deleted', status_reason: reason, deleted_at: new Date(), updated_at: new Date() }).where('id', '=', userId).execute();
}

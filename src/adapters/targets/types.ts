/*
 * Provisioning targets: systems outside flowthru that hear about every provision, change, move and
 * offboarding of a user (SPEC §4). Each kind is a plugin behind this one interface; the pipeline,
 * the queued jobs and "reprovision all" call it through one activity, so a new kind adds no workflow.
 *
 * A push converges: the plugin is told what the target should hold for the subject (or that it should
 * hold nothing) and brings the target there, comparing before it writes. A retried or re-run push
 * therefore changes nothing the second time and never creates a second entry.
 */

/** The values a target sees of one user after its data filter: field name → value (null: none). */
export type TargetFields = Readonly<Record<string, string | null>>;

/** One user, as one target sees them. */
export interface TargetSubject {
  /** flowthru's id of the user (stable; the key of the target's state). */
  readonly userId: string;
  /** The user's id in their source (entryUUID, objectGUID, an Entra object id, a CSV key). */
  readonly externalId: string;
  readonly customer: string;
  /** The filtered, templated, formatted values the target is to hold (see domain/targets.ts). */
  readonly fields: TargetFields;
}

/** What flowthru remembers of a subject at a target between pushes (table target_state). */
export interface TargetMemory {
  /** The target's own id of the subject once known: an entry's entryUUID, a SCIM resource id. */
  readonly remoteId: string | null;
  /** The fields of the last successful push (what a deprovision removes), null before the first. */
  readonly pushed: TargetFields | null;
}

/** What happened to the user, as a webhook names it. */
export const TARGET_EVENTS = ['provisioned', 'changed', 'moved', 'deprovisioned'] as const;
export type TargetEvent = (typeof TARGET_EVENTS)[number];

export interface TargetPush {
  readonly event: TargetEvent;
  /** Stable per event: a retried or re-run push of the same event carries the same id (webhook-id). */
  readonly eventId: string;
  /** The target's configured name. */
  readonly target: string;
  readonly subject: TargetSubject;
  readonly memory: TargetMemory;
  /** Aborted when the activity is cancelled or times out. */
  readonly signal?: AbortSignal;
  /** Called during long work so the activity's heartbeat timeout does not fire. */
  readonly heartbeat?: () => void;
}

export interface PushResult {
  /** The target's id of the subject after the push (null after a deprovision, or when it has none). */
  readonly remoteId: string | null;
  /** False when the target already held exactly this: nothing was written. */
  readonly changed: boolean;
  /** One line for the transaction log: what was done ("created uid=ada,ou=people,…", "PATCH 2 attributes"). */
  readonly summary: string;
}

export interface TargetPlugin {
  /** Creates or updates the subject at the target so that it holds `subject.fields` (converging). */
  provision(push: TargetPush): Promise<PushResult>;
  /** Removes what flowthru put at the target for the subject (converging: already gone is success). */
  deprovision(push: TargetPush): Promise<PushResult>;
  /** Releases connections; the plugin is not used after. */
  close(): Promise<void>;
}

/**
 * A target's refusal or failure. `retryable` false: the same push fails the same way (a 4xx, an
 * object class violation, a bad credential); it fails for good with this message. Retryable ones
 * (a 5xx, a timeout, a refused connection) are retried by Temporal; `retryAfterMs` (a 429's or a
 * 503's Retry-After) becomes the next retry's delay.
 */
export class TargetError extends Error {
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  /** A short machine-readable kind: 'Unauthorized', 'Conflict', 'SchemaViolation', 'Unavailable', … */
  readonly kind: string;

  constructor(message: string, options: { retryable: boolean; kind: string; retryAfterMs?: number; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TargetError';
    this.retryable = options.retryable;
    this.kind = options.kind;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Reads a Retry-After header (seconds or an HTTP date) as milliseconds from `now`; undefined if absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header.trim());
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/*
 * A source's schedule as the configuration declares it: durations, cron expressions and time zones,
 * checked here so that `config validate` refuses what the Temporal server would refuse (or, worse,
 * read differently) later, and described in words for `flowthru schedule list`. No I/O.
 */

/** The modes a scheduled run may do, in the order a run does them. */
export const SCHEDULE_MODES = ['add', 'update', 'delete'] as const;

export type ScheduleMode = (typeof SCHEDULE_MODES)[number];

/** What `schedule:` on a source holds once parsed (defaults filled in). */
export interface SourceSchedule {
  readonly every?: string;
  readonly cron?: string;
  readonly modes: readonly ScheduleMode[];
  readonly timeZone: string;
  readonly jitter?: string;
  readonly paused: boolean;
}

export const DEFAULT_SCHEDULE_MODES: readonly ScheduleMode[] = ['add', 'update'];

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;
const DURATION = /^(?:\d+[dhms])+$/;

/** `90s`, `15m`, `1h30m`, `1d` in milliseconds; null when it is not such a duration. */
export function parseDuration(text: string): number | null {
  if (!DURATION.test(text)) return null;
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+)([dhms])/g)) ms += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  return ms;
}

/** `1 hour 30 minutes` for 5,400,000. */
export function durationInWords(ms: number): string {
  const parts: string[] = [];
  let rest = Math.round(ms / 1_000) * 1_000;
  for (const [unit, size] of [['day', UNIT_MS.d], ['hour', UNIT_MS.h], ['minute', UNIT_MS.m], ['second', UNIT_MS.s]] as const) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0) parts.push(`${n} ${unit}${n === 1 ? '' : 's'}`);
  }
  return parts.length > 0 ? parts.join(' ') : '0 seconds';
}

export const DURATION_HINT = 'a number and a unit (s, m, h, d), e.g. 90s, 15m, 1h or 1h30m';

interface CronField {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly names?: readonly string[];
}

const MONTH_NAMES = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAY_NAMES = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

const CRON_FIELDS: readonly CronField[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTH_NAMES },
  // 7 is Sunday too, as in most crons (and in Temporal's parser).
  { name: 'day of week', min: 0, max: 7, names: DAY_NAMES },
];

/** The shorthands Temporal's cron parser knows. */
const CRON_SHORTHANDS = ['@yearly', '@monthly', '@weekly', '@daily', '@hourly'];

function cronValue(text: string, field: CronField): number | string {
  if (/^\d+$/.test(text)) {
    const value = Number(text);
    return value >= field.min && value <= field.max ? value : `${field.name} "${text}" is out of range ${field.min}-${field.max}`;
  }
  const index = field.names?.indexOf(text.toUpperCase()) ?? -1;
  if (index >= 0) return index + (field.name === 'month' ? 1 : 0);
  const named = field.names ? ` or a name (${field.names[0]}-${field.names.at(-1)})` : '';
  return `${field.name} "${text}" is not a number from ${field.min} to ${field.max}${named}`;
}

function cronFieldProblem(text: string, field: CronField): string | null {
  for (const item of text.split(',')) {
    const match = /^([^/]+)(?:\/(.*))?$/.exec(item);
    if (!match) return `${field.name} "${text}": expected *, a value, a range (a-b) or a list of them, each with an optional /step`;
    const [, range, step] = match;
    if (step !== undefined && !(/^\d+$/.test(step) && Number(step) >= 1)) return `${field.name} "${item}": the step after "/" is a whole number of at least 1`;
    if (range === '*') continue;
    const bounds = range!.split('-');
    if (bounds.length > 2) return `${field.name} "${item}": a range is two values, a-b`;
    const values = bounds.map((b) => cronValue(b, field));
    const wrong = values.find((v) => typeof v === 'string');
    if (typeof wrong === 'string') return wrong;
    if (values.length === 2 && (values[1] as number) < (values[0] as number)) return `${field.name} "${item}": the range ends before it starts`;
  }
  return null;
}

/**
 * What is wrong with a 5-field cron expression (minute hour day-of-month month day-of-week), or one
 * of the @daily-style shorthands; none when Temporal will run it as written.
 */
export function cronProblems(expression: string): string[] {
  const text = expression.trim();
  // Temporal takes the rest of the line after "#" as a comment: "1#2" (the second Monday elsewhere) would quietly mean every Monday.
  if (text.includes('#')) return ['"#" is not cron syntax here: Temporal reads what follows it as a comment (there is no "nth weekday")'];
  if (text.startsWith('@')) {
    if (text.startsWith('@every')) return ['write an interval as "every:", not as a cron expression'];
    return CRON_SHORTHANDS.includes(text) ? [] : [`unknown shorthand "${text}" (one of ${CRON_SHORTHANDS.join(', ')})`];
  }
  if (/^(CRON_)?TZ=/.test(text)) return ['name the time zone with "timeZone:", not in the cron expression'];
  const fields = text.split(/\s+/);
  if (fields.length !== 5) {
    return [`a cron expression has 5 fields (minute hour day-of-month month day-of-week); this one has ${fields.length}`];
  }
  return fields.flatMap((field, i) => cronFieldProblem(field, CRON_FIELDS[i]!) ?? []);
}

/**
 * Temporal requires both day fields to match (classic cron runs when either does): a cron that
 * restricts both probably does not do what its author expects.
 */
export function cronRestrictsBothDays(expression: string): boolean {
  const fields = expression.trim().split(/\s+/);
  return fields.length === 5 && fields[2] !== '*' && fields[4] !== '*';
}

/** An IANA name the Temporal server can load; null when fine, else why not. */
export function timeZoneProblem(name: string): string | null {
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return `unknown time zone "${name}" (an IANA name such as UTC, Europe/Berlin or America/Chicago)`;
  }
  // Intl ignores case; the server looks names up in its zone files, where case matters.
  if (resolved !== name && resolved.toLowerCase() === name.toLowerCase()) return `write the time zone as "${resolved}" (names are case-sensitive)`;
  return null;
}

/** `every 15 minutes`, `cron "0 6 * * MON-FRI" in Europe/Berlin, jitter up to 5 minutes`. */
export function scheduleInWords(schedule: Pick<SourceSchedule, 'every' | 'cron' | 'timeZone' | 'jitter'>): string {
  const every = schedule.every === undefined ? null : parseDuration(schedule.every);
  const when = every !== null ? `every ${durationInWords(every)}` : `cron "${schedule.cron ?? '?'}"`;
  // An interval counts from the epoch: its time zone changes nothing, so it is not worth a word.
  const zone = schedule.cron !== undefined && schedule.timeZone !== 'UTC' ? ` in ${schedule.timeZone}` : schedule.cron !== undefined ? ' UTC' : '';
  const jitter = schedule.jitter === undefined ? null : parseDuration(schedule.jitter);
  return `${when}${zone}${jitter ? `, jitter up to ${durationInWords(jitter)}` : ''}`;
}

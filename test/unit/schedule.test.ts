import { describe, expect, it } from 'vitest';
import { cronProblems, cronRestrictsBothDays, durationInWords, parseDuration, scheduleInWords, timeZoneProblem } from '../../src/domain/schedule.js';

describe('schedule durations', () => {
  it.each([
    ['90s', 90_000],
    ['15m', 900_000],
    ['1h30m', 5_400_000],
    ['1d', 86_400_000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '15', 'm', '15 m', '1.5h', '-5m', '15min'])('"%s" is no duration', (text) => expect(parseDuration(text)).toBeNull());

  it('says a duration in words', () => {
    expect(durationInWords(5_400_000)).toBe('1 hour 30 minutes');
    expect(durationInWords(60_000)).toBe('1 minute');
    expect(durationInWords(0)).toBe('0 seconds');
  });
});

describe('cron expressions', () => {
  it.each(['*/15 * * * *', '0 6 * * 1-5', '0 6 * * MON-FRI', '0 0 1 JAN *', '0 0 * * 7', '5,35 8-18/2 * * *', '@daily'])('accepts %s', (cron) => expect(cronProblems(cron)).toEqual([]));

  it.each([
    ['nonsense', /5 fields .* this one has 1/],
    ['60 * * * *', /minute "60" is out of range 0-59/],
    ['0 24 * * *', /hour "24" is out of range 0-23/],
    ['0 0 0 * *', /day of month "0" is out of range 1-31/],
    ['0 0 * 13 *', /month "13" is out of range 1-12/],
    ['*/0 * * * *', /the step after "\/" is a whole number of at least 1/],
    ['30-10 * * * *', /the range ends before it starts/],
    ['0 0 * * MON#2', /Temporal reads what follows it as a comment/],
    ['@every 5m', /write an interval as "every:"/],
    ['@fortnightly', /unknown shorthand/],
    ['TZ=Europe/Berlin 0 6 * * *', /with "timeZone:"/],
  ])('refuses %s, saying why', (cron, why) => expect(cronProblems(cron).join('; ')).toMatch(why));

  it('notices a cron that restricts both days (Temporal needs both to match)', () => {
    expect(cronRestrictsBothDays('0 6 1 * MON')).toBe(true);
    expect(cronRestrictsBothDays('0 6 * * MON')).toBe(false);
  });
});

describe('time zones', () => {
  it('takes IANA names as the server spells them', () => {
    expect(timeZoneProblem('Europe/Berlin')).toBeNull();
    expect(timeZoneProblem('UTC')).toBeNull();
    expect(timeZoneProblem('Mars/Base')).toMatch(/unknown time zone "Mars\/Base"/);
    expect(timeZoneProblem('europe/berlin')).toBe('write the time zone as "Europe/Berlin" (names are case-sensitive)');
  });
});

it('describes a schedule in words', () => {
  expect(scheduleInWords({ every: '15m', timeZone: 'UTC' })).toBe('every 15 minutes');
  expect(scheduleInWords({ cron: '0 6 * * 1-5', timeZone: 'Europe/Berlin', jitter: '5m' })).toBe('cron "0 6 * * 1-5" in Europe/Berlin, jitter up to 5 minutes');
  expect(scheduleInWords({ cron: '@daily', timeZone: 'UTC' })).toBe('cron "@daily" UTC');
});

import Handlebars from 'handlebars';
import { fieldReadOf, firstUnknownVariable } from '../../domain/template-variables.js';

export interface WelcomeVariables {
  readonly customer: string;
  readonly firstName: string;
  readonly lastName: string;
  readonly displayName: string;
  readonly email: string;
  readonly username: string;
  readonly department: string;
  readonly title: string;
  readonly site: string;
  /** The site's language tag and IANA time zone (its `locale` and `timeZone`); empty when it has none. */
  readonly siteLocale: string;
  readonly siteTimeZone: string;
  readonly number: string | null;
  readonly profile: string;
  /** The site a user moved from (a moved email); empty in a welcome. */
  readonly previousSite: string;
}

export const DEFAULT_WELCOME_TEMPLATE = `<!doctype html>
<html><body>
<p>Welcome to {{customer}}, {{firstName}}!</p>
<p>Your account is ready at the {{site}} site.</p>
{{#if number}}<p>Your phone number is <strong>{{number}}</strong>.</p>{{/if}}
</body></html>`;

const TEXT_TEMPLATE = `Welcome to {{customer}}, {{firstName}}!

Your account is ready at the {{site}} site.
{{#if number}}Your phone number is {{number}}.
{{/if}}`;

const compiled = new Map<string, HandlebarsTemplateDelegate>();

function compile(source: string, escape: boolean): HandlebarsTemplateDelegate {
  const key = `${escape}:${source}`;
  let template = compiled.get(key);
  if (!template) {
    // strict: a misspelt variable is an error, not a silently empty hole in the email.
    template = Handlebars.compile(source, { noEscape: !escape, strict: true, knownHelpersOnly: true });
    compiled.set(key, template);
  }
  return template;
}

export const SAMPLE_VARIABLES: WelcomeVariables = {
  customer: 'Acme',
  firstName: 'Joe',
  lastName: 'Adams',
  displayName: 'Joe Adams',
  email: 'joe@example.com',
  username: 'jadams',
  department: 'Engineering',
  title: 'Engineer',
  site: 'Chicago',
  siteLocale: 'en-US',
  siteTimeZone: 'America/Chicago',
  number: '+13125550100',
  profile: 'engineering',
  previousSite: 'Dallas',
};

/** What is wrong with a template, on one line, and where in the template (1-based) when known. */
export interface TemplateProblem {
  readonly message: string;
  readonly line?: number;
  readonly column?: number;
}

/**
 * Handlebars' parse errors span four lines (`Parse error on line 3:`, an excerpt, a caret, what it
 * expected); its other errors end in ` - LINE:COLUMN`. Both become one line with the place apart.
 */
function describeTemplateError(error: Error & { lineNumber?: number; column?: number }): TemplateProblem {
  const parse = /^(Parse error on line (\d+)):\n(.*)\n-*\^\n(.*)$/s.exec(error.message);
  if (parse) {
    const [, heading, line, near, expected] = parse;
    const what = expected!.replace(/^Expecting/, 'expecting').replace(/\n/g, ' ');
    return { message: `${heading}: ${what} near ${JSON.stringify(near)}`, line: Number(line) };
  }
  const message = error.message
    .replace(/ - \d+:\d+$/, '')
    .replace(/^("[^"]+") not defined in \[object Object\]$/, `$1 is not a template variable (one of ${Object.keys(SAMPLE_VARIABLES).join(', ')})`)
    .replace(/\s*\n\s*/g, ' ');
  if (error.lineNumber === undefined) return { message };
  // Handlebars counts columns from 0.
  return { message, line: error.lineNumber, ...(error.column === undefined ? {} : { column: error.column + 1 }) };
}

/** Checks a template by rendering it with sample values; says what fails, and where, if it does. */
export function templateProblem(source: string, escape = true): TemplateProblem | null {
  try {
    compile(source, escape)(SAMPLE_VARIABLES);
    const unknown = firstUnknownVariable(Handlebars.parse(source), (name) => Object.hasOwn(SAMPLE_VARIABLES, name));
    if (!unknown) return null;
    return { message: `"${unknown.name}" is not a template variable (one of ${Object.keys(SAMPLE_VARIABLES).join(', ')})`, line: unknown.line, column: unknown.column };
  } catch (error) {
    // A field of a plain value ({{site.city}}, or {{city}} inside {{#with site}}): the error is
    // JavaScript's own ("Cannot use 'in' operator…"), without a place.
    const field = error instanceof TypeError ? /^Cannot use 'in' operator to search for '([^']+)' in /.exec(error.message)?.[1] : undefined;
    const read = field === undefined ? null : fieldReadOf(Handlebars.parse(source), field);
    if (read) {
      const what = read.inWith ? `"${read.path}" inside {{#with ${read.owner}}} reads a field of ${read.owner}` : `"${read.path}" reads a field of ${read.owner}`;
      return { message: `${what}, a plain value with no fields: name the variables directly (one of ${Object.keys(SAMPLE_VARIABLES).join(', ')})`, line: read.line, column: read.column };
    }
    return error instanceof Error ? describeTemplateError(error) : { message: String(error) };
  }
}

export interface RenderedEmail {
  readonly subject: string;
  readonly html: string;
  readonly text: string;
}

export const DEFAULT_MOVED_TEMPLATE = `<!doctype html>
<html><body>
<p>Hello {{firstName}},</p>
<p>You have moved from the {{previousSite}} site to the {{site}} site of {{customer}}.</p>
{{#if number}}<p>Your phone number is now <strong>{{number}}</strong>.</p>{{/if}}
</body></html>`;

const MOVED_TEXT_TEMPLATE = `Hello {{firstName}},

You have moved from the {{previousSite}} site to the {{site}} site of {{customer}}.
{{#if number}}Your phone number is now {{number}}.
{{/if}}`;

/** Renders the welcome email: HTML with every variable HTML-escaped, a plain-text part, a subject. */
export function renderWelcome(template: string | undefined, subject: string, vars: WelcomeVariables): RenderedEmail {
  return render(template ?? DEFAULT_WELCOME_TEMPLATE, TEXT_TEMPLATE, subject, vars);
}

/** Renders the moved email (a user moved site): the same rules as the welcome. */
export function renderMoved(template: string | undefined, subject: string, vars: WelcomeVariables): RenderedEmail {
  return render(template ?? DEFAULT_MOVED_TEMPLATE, MOVED_TEXT_TEMPLATE, subject, vars);
}

function render(html: string, text: string, subject: string, vars: WelcomeVariables): RenderedEmail {
  return {
    // A subject is one header line: no line breaks, whatever the data holds.
    subject: compile(subject, false)(vars).replace(/[\r\n]+/g, ' ').trim(),
    html: compile(html, true)(vars),
    text: compile(text, false)(vars),
  };
}

import Handlebars from 'handlebars';

export interface WelcomeVariables {
  readonly customer: string;
  readonly firstName: string;
  readonly lastName: string;
  readonly displayName: string;
  readonly email: string;
  readonly username: string;
  readonly site: string;
  readonly number: string | null;
  readonly profile: string;
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
  site: 'Chicago',
  number: '+13125550100',
  profile: 'engineering',
};

/** Checks a template by rendering it with sample values; returns the error message if it fails. */
export function templateProblem(source: string, escape = true): string | null {
  try {
    compile(source, escape)(SAMPLE_VARIABLES);
    return null;
  } catch (error) {
    return (error as Error).message.split('\n')[0] ?? 'invalid template';
  }
}

export interface RenderedEmail {
  readonly subject: string;
  readonly html: string;
  readonly text: string;
}

/** Renders the welcome email: HTML with every variable HTML-escaped, a plain-text part, a subject. */
export function renderWelcome(template: string | undefined, subject: string, vars: WelcomeVariables): RenderedEmail {
  return {
    // A subject is one header line: no line breaks, whatever the data holds.
    subject: compile(subject, false)(vars).replace(/[\r\n]+/g, ' ').trim(),
    html: compile(template ?? DEFAULT_WELCOME_TEMPLATE, true)(vars),
    text: compile(TEXT_TEMPLATE, false)(vars),
  };
}

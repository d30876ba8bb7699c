import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acmeCsv, PipelineHarness } from '../support/pipeline.js';

/*
 * A user's data is only ever data in their email: markup and Handlebars syntax in a name, a title
 * or a department reach the welcome email as text (HTML-escaped in the HTML part, verbatim in the
 * text part), and a line break in a name cannot add a header.
 */

let h: PipelineHarness;
beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
});
afterAll(async () => h?.close());

describe('markup and template syntax in a user record', () => {
  it('arrive in the welcome email escaped, never evaluated, and never as a header', async () => {
    const template = h.writeFile('welcome.html', '<html><body><h1>Hello {{firstName}} {{lastName}}</h1><p>{{title}}, {{department}}, at {{site}}</p><p>{{siteLocale}} {{siteTimeZone}}</p></body></html>');
    const version = await h.apply({
      version: 1,
      customers: [
        h.acmeCustomer('escapes', (c) => {
          c.settings.welcomeEmail.template = template;
          c.settings.welcomeEmail.subject = 'Welcome, {{firstName}} ({{department}})';
          // Engineers of any department string that starts with Engineering.
          c.criteria.find((x: { name: string }) => x.name === 'engineering').when = { attribute: 'department', op: 'startsWith', value: 'Engineering' };
        }),
      ],
    });
    const firstName = '<img src=x onerror=alert(1)>\r\nBcc: eve@evil.example';
    const lastName = '{{#each this}}{{this}}{{/each}}';
    const department = 'Engineering <script>alert("d")</script> {{customer}}';
    const title = '"Chief" & <b>Boss</b>';
    h.writeFile('escapes.csv', acmeCsv([{ employee_id: 'X1', login: 'xss', mail: 'xss@acme.example', given_name: firstName, surname: lastName, department, city: 'Chicago', title }]));
    const report = await h.sync('escapes', 'hr', version);
    expect(report.counts).toMatchObject({ provisioned: 1, emailed: 1 });

    const [mail] = h.smtp.to('xss@acme.example');
    expect(mail).toBeDefined();
    // HTML part: every value escaped; nothing of the data became markup or ran as a template.
    expect(mail!.html).toContain('Hello &lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;');
    expect(mail!.html).toContain('{{#each this}}{{this}}{{/each}}');
    expect(mail!.html).toContain('&quot;Chief&quot; &amp; &lt;b&gt;Boss&lt;/b&gt;, Engineering &lt;script&gt;alert(&quot;d&quot;)&lt;/script&gt; {{customer}}, at');
    expect(mail!.html).not.toMatch(/<img|<script|<b>/);
    // The site's own settings are template variables too (examples/acme.yaml: Chicago's locale and time zone).
    expect(mail!.html).toContain('<p>en-US America/Chicago</p>');
    // Text part: the data as it is, evaluated nowhere.
    expect(mail!.text).toContain('<img src=x onerror=alert(1)>');
    // Subject: one line; the would-be Bcc header is text inside it, and nobody else got the mail.
    expect(mail!.subject).toBe('Welcome, <img src=x onerror=alert(1)> Bcc: eve@evil.example (Engineering <script>alert("d")</script> {{customer}})');
    expect(mail!.to).toEqual(['xss@acme.example']);
    expect(h.smtp.to('eve@evil.example')).toHaveLength(0);
    const headers = mail!.raw.split(/\r?\n\r?\n/)[0]!;
    expect(headers).not.toMatch(/^Bcc:/im);
  });
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfigText } from '../../src/domain/config/document.js';
import { templateProblem } from '../../src/adapters/mail/welcome.js';
import { formatPath, formatProblem, type ConfigProblem } from '../../src/domain/config/validate.js';

/** A small valid configuration; each test breaks one thing in a copy of it. */
function base() {
  return {
    version: 1,
    customers: [
      {
        name: 'acme',
        settings: { flowThrough: { enabled: true, addSync: true, criteria: 'acme-ftp' } },
        criteria: [
          { name: 'city-chicago', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Chicago' } },
          { name: 'city-dallas', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Dallas' } },
          { name: 'engineering', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Engineering' } },
        ] as Record<string, unknown>[],
        profiles: [{ name: 'engineering', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }] }],
        ftpCriteria: [{ name: 'acme-ftp', rules: [{ criteria: 'engineering', profile: 'engineering' }] }],
        sources: [
          { name: 'hr', type: 'csv', userType: 'csv', path: 'users.csv', externalId: 'id' } as Record<string, unknown>,
        ],
        sites: [
          {
            name: 'chicago',
            moveCriteria: { csv: 'city-chicago' },
            numberRanges: [{ from: '+13125550100', to: '+13125550199' }],
          },
          { name: 'dallas', moveCriteria: { csv: 'city-dallas' }, numberRanges: [{ from: '+12145550100', to: '+12145550199' }] },
        ] as Record<string, unknown>[],
      },
    ],
  };
}

function problemsOf(text: string): ConfigProblem[] {
  const result = validateConfigText(text);
  if (result.ok) throw new Error('expected the configuration to be rejected');
  return result.problems;
}

function problems(edit: (config: ReturnType<typeof base>) => void): string[] {
  const config = base();
  edit(config);
  return problemsOf(stringify(config)).map((p) => `${formatPath(p.path)}: ${p.message}`);
}

/** Errors and warnings of an edited copy of the base configuration, as `error|warning path: message`. */
function findings(edit: (config: ReturnType<typeof base>) => void): string[] {
  const config = base();
  edit(config);
  const result = validateConfigText(stringify(config));
  const all = [...(result.ok ? [] : result.problems), ...result.warnings];
  return all.map((p) => `${p.severity ?? 'error'} ${formatPath(p.path)}: ${p.message}`);
}

type Customer = ReturnType<typeof base>['customers'][number] & Record<string, unknown>;

describe('a valid configuration', () => {
  it('passes, with defaults filled in', () => {
    const result = validateConfigText(stringify(base()));
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.config.customers[0]?.settings.numberAssignmentOnMove).toBe('assign-new');
      expect(result.config.customers[0]?.settings.numberCooling).toEqual({ enabled: false, days: 30 });
      expect(result.config.customers[0]?.profiles[0]?.services).toEqual([{ kind: 'phone', settings: { model: '8865' } }]);
    }
  });
  it('includes the shipped Acme example, without a warning', () => {
    const result = validateConfigText(readFileSync('examples/acme.yaml', 'utf8'));
    expect(result.ok).toBe(true);
    expect(result.warnings).toEqual([]);
  });
});

describe('bad input gets a clear error naming the place at fault', () => {
  it('a YAML syntax error, with line and column', () => {
    const [problem, ...rest] = problemsOf('version: 1\ncustomers:\n  - name: acme\n    sites: [unclosed\n');
    expect(rest).toEqual([]);
    expect(problem?.message).toMatch(/^YAML syntax error/);
    expect(problem?.line).toBeGreaterThanOrEqual(4);
    expect(problem?.column).toBeGreaterThan(0);
  });
  it('duplicate keys are a syntax error too', () => {
    expect(problemsOf('version: 1\nversion: 1\ncustomers: []\n')[0]?.message).toMatch(/unique/i);
  });
  it('an empty file', () => {
    expect(problemsOf('').map((p) => p.message)).toEqual(['the configuration is empty']);
    expect(problemsOf('# only a comment\n').map((p) => p.message)).toEqual(['the configuration is empty']);
  });
  it('a wrong type', () => {
    expect(
      problems((c) => {
        (c.customers[0]!.settings as Record<string, unknown>).preventDuplicateNumbers = 'yes';
      }),
    ).toEqual([expect.stringMatching(/^customers\[0\]\.settings\.preventDuplicateNumbers: expected boolean/)]);
  });
  it('an unknown key (typo protection)', () => {
    expect(
      problems((c) => {
        c.customers[0]!.sites[0]!.moveCritera = {};
      }),
    ).toEqual(['customers[0].sites[0].moveCritera: unknown key "moveCritera"']);
  });
  it('an unknown operator', () => {
    expect(
      problems((c) => {
        c.customers[0]!.criteria[0]!.when = { attribute: 'city', op: 'equal', value: 'Chicago' };
      }),
    ).toEqual([expect.stringMatching(/^customers\[0\]\.criteria\[0\]\.when\.op: unknown operator "equal" \(one of equals, /)]);
  });
  it('an unknown attribute', () => {
    expect(
      problems((c) => {
        c.customers[0]!.criteria[0]!.when = { attribute: 'cty', op: 'equals', value: 'Chicago' };
      })[0],
    ).toMatch(/^customers\[0\]\.criteria\[0\]\.when\.attribute: unknown attribute "cty"/);
  });
  it('a regex that does not compile', () => {
    expect(
      problems((c) => {
        c.customers[0]!.criteria[2]!.when = { any: [{ attribute: 'title', op: 'regex', value: '(eng' }] };
      }),
    ).toEqual([expect.stringMatching(/^customers\[0\]\.criteria\[2\]\.when\.any\[0\]\.value: regular expression does not compile/)]);
  });
  it.each(['^(a+)+$', '(x|x)*y', '^(\\w+\\s?)*$'])('a regex prone to catastrophic backtracking: %s', (pattern) => {
    expect(
      problems((c) => {
        c.customers[0]!.criteria[2]!.when = { attribute: 'title', op: 'regex', value: pattern };
      }),
    ).toEqual([expect.stringMatching(/^customers\[0\]\.criteria\[2\]\.when\.value: regular expression is prone to catastrophic backtracking/)]);
  });
  it('a number range whose end is before its start', () => {
    expect(
      problems((c) => {
        c.customers[0]!.sites[0]!.numberRanges = [{ from: '+13125550199', to: '+13125550100' }];
      }),
    ).toEqual(['customers[0].sites[0].numberRanges[0]: range ends ("+13125550100") before it starts ("+13125550199")']);
  });
  it('overlapping ranges', () => {
    expect(
      problems((c) => {
        c.customers[0]!.sites[1]!.numberRanges = [{ from: '+13125550150', to: '+13125550250' }];
      }),
    ).toEqual([
      'customers[0].sites[1].numberRanges[0]: number range +13125550150-+13125550250 (site dallas) overlaps +13125550100-+13125550199 (site chicago)',
    ]);
  });
  it('sites may share extensions only when duplicates are allowed; the customer pool never overlaps', () => {
    const shared = (c: ReturnType<typeof base>) => {
      c.customers[0]!.sites[0]!.numberRanges = [{ from: '1000', to: '1099' }];
      c.customers[0]!.sites[1]!.numberRanges = [{ from: '1000', to: '1099' }];
    };
    expect(problems(shared)).toHaveLength(1);
    const config = base();
    shared(config);
    (config.customers[0]!.settings as Record<string, unknown>).preventDuplicateNumbers = false;
    expect(validateConfigText(stringify(config)).ok).toBe(true);
    (config.customers[0] as Record<string, unknown>).numberRanges = [{ from: '1050', to: '1060' }];
    expect(problemsOf(stringify(config))).toHaveLength(2);
  });
  it('criteria referenced with the wrong usage', () => {
    expect(
      problems((c) => {
        c.customers[0]!.sites[0]!.moveCriteria = { csv: 'engineering' };
      }),
    ).toEqual(['customers[0].sites[0].moveCriteria.csv: criteria "engineering" has usage "ftp" but is used here as "move" criteria']);
  });
  it('unknown criteria, profile and FTP criteria names', () => {
    expect(
      problems((c) => {
        c.customers[0]!.sites[1]!.moveCriteria = { csv: 'city-chicgo' };
        c.customers[0]!.ftpCriteria[0]!.rules[0]!.profile = 'enginering';
        c.customers[0]!.settings.flowThrough.criteria = 'acme';
      }),
    ).toEqual([
      'customers[0].sites[1].moveCriteria.csv: unknown criteria "city-chicgo"',
      'customers[0].ftpCriteria[0].rules[0].profile: unknown profile "enginering"',
      'customers[0].settings.flowThrough.criteria: unknown FTP criteria "acme"',
    ]);
  });
  it('two sites with the same name', () => {
    expect(
      problems((c) => {
        c.customers[0]!.sites[1]!.name = 'Chicago';
        c.customers[0]!.sites[1]!.numberRanges = [];
      }),
    ).toEqual(['customers[0].sites[1].name: duplicate site name "Chicago" (also at index 0)']);
  });
  it('a literal secret', () => {
    expect(
      problems((c) => {
        (c.customers[0]!.settings as Record<string, unknown>).smtp = { host: 'mail', password: 'hunter2' };
      }),
    ).toEqual([expect.stringMatching(/^customers\[0\]\.settings\.smtp\.password: literal secret: .*passwordEnv/)]);
    expect(
      problems((c) => {
        c.customers[0]!.sources.push({ name: 'dir', type: 'ldap', userType: 'ldap', url: 'ldap://x', bindDn: 'cn=a', bindPassword: 'x', passwordEnv: 'P', baseDn: 'dc=x' });
      }),
    ).toEqual([expect.stringMatching(/sources\[1\]\.bindPassword: literal secret/)]);
  });
  it('an environment variable name that is not one', () => {
    expect(
      problems((c) => {
        c.customers[0]!.sources.push({ name: 'dir', type: 'ldap', userType: 'ldap', url: 'ldap://x', bindDn: 'cn=a', passwordEnv: 'hunter2', baseDn: 'dc=x' });
      }),
    ).toEqual([expect.stringMatching(/sources\[1\]\.passwordEnv: expected the name of an environment variable/)]);
  });
});

describe('every problem at once', () => {
  it('reports schema and reference problems of one file together, each with line and column', () => {
    const config = base();
    const customer = config.customers[0]!;
    customer.sites[0]!.colour = 'red';
    customer.criteria[0]!.when = { attribute: 'city', op: 'equal', value: 'Chicago' };
    customer.sites[1]!.moveCriteria = { csv: 'city-chicgo' };
    customer.sites[1]!.numberRanges = [{ from: '9', to: '1' }];
    const found = problemsOf(stringify(config));
    expect(found.map((p) => formatPath(p.path)).sort()).toEqual([
      'customers[0].criteria[0].when.op',
      'customers[0].sites[0].colour',
      'customers[0].sites[1].moveCriteria.csv',
      'customers[0].sites[1].numberRanges[0]',
    ].sort());
    // sites[1]'s malformed range does not hide its misspelt reference: the site is checked on without it.
    for (const problem of found) {
      expect(problem.line).toBeGreaterThan(0);
      expect(problem.column).toBeGreaterThan(0);
    }
  });
  it('a reference to a broken item is not reported as unknown', () => {
    expect(
      problems((c) => {
        c.customers[0]!.criteria[0]!.when = { attribute: 'city', op: 'nope', value: 'x' };
      }),
    ).toHaveLength(1);
  });
  it('points line and column at the key at fault', () => {
    const text = 'version: 1\ncustomers:\n  - name: acme\n    sitez: []\n';
    expect(problemsOf(text)[0]).toMatchObject({ line: 4, column: 5, message: 'unknown key "sitez"' });
  });
});

describe('a problem at one level hides nothing below it (issue 9)', () => {
  it('an invalid customer name: the rest of the customer is still checked', () => {
    expect(
      problems((c) => {
        c.customers[0]!.name = 'Acme Corp';
        c.customers[0]!.criteria[0]!.when = { attribute: 'city', op: 'equal', value: 'Chicago' };
        (c.customers[0]!.settings as Record<string, unknown>).smtp = { host: 'mail', port: 70000 };
        c.customers[0]!.sites[1]!.name = 'New York';
      }),
    ).toEqual([
      expect.stringMatching(/^customers\[0\]\.name: a name is 1-63 letters/),
      expect.stringMatching(/^customers\[0\]\.settings\.smtp\.port: /),
      expect.stringMatching(/^customers\[0\]\.criteria\[0\]\.when\.op: unknown operator "equal"/),
      expect.stringMatching(/^customers\[0\]\.sites\[1\]\.name: a name is 1-63 letters/),
    ]);
  });
  it('an unknown customer key', () => {
    expect(
      problems((c) => {
        (c.customers[0] as Customer).sitez = [];
        c.customers[0]!.criteria[0]!.when = { attribute: 'city', op: 'equal', value: 'Chicago' };
      }),
    ).toEqual(['customers[0].sitez: unknown key "sitez"', expect.stringMatching(/^customers\[0\]\.criteria\[0\]\.when\.op: unknown operator/)]);
  });
  it('an unknown top-level key, a wrong version', () => {
    expect(
      problems((c) => {
        Object.assign(c, { version: 2, provder: { name: 'x' } });
        c.customers[0]!.sites[1]!.moveCriteria = { csv: 'city-chicgo' };
      }),
    ).toEqual(['version: version must be 1', 'provder: unknown key "provder"', 'customers[0].sites[1].moveCriteria.csv: unknown criteria "city-chicgo"']);
  });
  it('a customer that is not a mapping does not stop the next one', () => {
    const config = base();
    (config.customers as unknown[]).unshift('acme');
    config.customers[1]!.sites[1]!.moveCriteria = { csv: 'city-chicgo' };
    expect(problemsOf(stringify(config)).map((p) => `${formatPath(p.path)}: ${p.message}`)).toEqual([
      expect.stringMatching(/^customers\[0\]: expected a customer/),
      'customers[1].sites[1].moveCriteria.csv: unknown criteria "city-chicgo"',
    ]);
  });
  it('duplicate customer names are found at their place in the file, even after a broken customer', () => {
    const config = base();
    (config.customers as unknown[]).unshift(42, structuredClone(config.customers[0]));
    expect(problemsOf(stringify(config)).map((p) => `${formatPath(p.path)}: ${p.message}`)).toEqual([
      expect.stringMatching(/^customers\[0\]: expected a customer/),
      'customers[2].name: duplicate customer name "acme" (also at index 1)',
    ]);
  });
});

describe('what would fail at run time (issue 9)', () => {
  it('a welcome email without an SMTP server', () => {
    expect(
      findings((c) => {
        Object.assign(c.customers[0]!.settings, { welcomeEmail: { enabled: true, from: 'it@example.com' } });
      }),
    ).toEqual([expect.stringMatching(/^error customers\[0\]\.settings\.welcomeEmail\.enabled: a welcome email needs "smtp" settings/)]);
  });
  it('an SMTP password variable without a username is a warning', () => {
    expect(
      findings((c) => {
        Object.assign(c.customers[0]!.settings, { smtp: { host: 'mail', passwordEnv: 'SMTP_PASSWORD' } });
      }),
    ).toEqual([expect.stringMatching(/^warning customers\[0\]\.settings\.smtp\.passwordEnv: passwordEnv is used only with "username"/)]);
  });
  it('a line from the customer pool, and the customer has none', () => {
    expect(
      findings((c) => {
        c.customers[0]!.profiles[0]!.line = { numberFrom: 'customer' };
      }),
    ).toEqual(['error customers[0].profiles[0].line.numberFrom: profile "engineering" takes a number from the customer pool, but the customer has no numberRanges']);
  });
  it('a line from the site: a site without ranges is a warning; no site with ranges an error', () => {
    expect(
      findings((c) => {
        c.customers[0]!.sites[1]!.numberRanges = [];
        c.customers[0]!.sites.push({ name: 'archive' });
      }),
    ).toEqual([
      'warning customers[0].sites[1].numberRanges: site "dallas" has no numberRanges: users placed there with profile "engineering" (line.numberFrom: site) would be blocked',
    ]);
    expect(
      findings((c) => {
        for (const site of c.customers[0]!.sites) site.numberRanges = [];
      }),
    ).toEqual(['error customers[0].profiles[0].line.numberFrom: profile "engineering" takes a number from the user\'s site, but no site has numberRanges']);
  });
  it('a site that failed to parse is not counted as one without ranges', () => {
    expect(
      findings((c) => {
        c.customers[0]!.sites[0]!.numberRanges = [];
        c.customers[0]!.sites[1]!.defaultRole = 5;
      }),
    ).toEqual([expect.stringMatching(/^error customers\[0\]\.sites\[1\]\.defaultRole: /)]);
  });
  it('a site whose only fault is an unknown key is still checked in full: the key hides nothing', () => {
    expect(
      findings((c) => {
        c.customers[0]!.sites[0]!.numberRanges = [];
        c.customers[0]!.sites[1]!.colour = 'red';
      }),
    ).toEqual([
      'error customers[0].sites[1].colour: unknown key "colour"',
      expect.stringMatching(/^warning customers\[0\]\.sites\[0\]\.numberRanges: site "chicago" has no numberRanges/),
    ]);
  });
  it('a valid configuration with a warning is still valid', () => {
    const config = base();
    config.customers[0]!.sites[1]!.numberRanges = [];
    const result = validateConfigText(stringify(config));
    expect(result.ok).toBe(true);
    expect(result.warnings).toEqual([expect.objectContaining({ severity: 'warning', line: expect.any(Number), column: expect.any(Number) })]);
  });
  it.each([
    ['150%', false],
    ['100.5%', false],
    ['100%', true],
    ['10%', true],
    [50, true],
  ])('deleteThreshold %s', (threshold, valid) => {
    const found = findings((c) => {
      Object.assign(c.customers[0]!.settings, { deleteThreshold: threshold });
    });
    expect(found).toEqual(valid ? [] : ['error customers[0].settings.deleteThreshold: deleteThreshold is a share of the source\'s users: at most "100%"']);
  });
});

describe('YAML aliases (issue 9)', () => {
  const laughs = (levels: number) =>
    ['version: 1', 'a: &a [x, x, x, x, x, x, x, x, x]']
      .concat(Array.from({ length: levels }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`))
      .concat('customers: []')
      .join('\n');
  it('a "billion laughs" document is a located problem, not a crash', () => {
    const [problem, ...rest] = problemsOf(laughs(6));
    expect(rest).toEqual([]);
    expect(problem).toMatchObject({ path: [], line: 5, column: 8, message: expect.stringMatching(/^YAML aliases expand too far at \*c/) });
  });
  it('a few aliases are fine', () => {
    const text = 'version: 1\nx: &criteria { name: all, usage: move, when: { all: [] } }\ncustomers:\n  - name: acme\n    criteria: [*criteria]\n';
    expect(problemsOf(text).map((p) => p.message)).toEqual(['unknown key "x"']);
  });
  it('an alias to no anchor, at the alias', () => {
    expect(problemsOf('version: 1\ncustomers:\n  - *acme\n')).toEqual([
      { path: [], line: 3, column: 5, message: expect.stringMatching(/^YAML error: Unresolved alias .*acme/) },
    ]);
  });
});

describe('template problems (issue 9)', () => {
  it('a parse error is one line, whole, with its line', () => {
    expect(templateProblem('<p>\n{{#if number}\n</p>')).toEqual({
      message: expect.stringMatching(/^Parse error on line 2: expecting .*'ID'.*, got 'INVALID' near "<p>\{\{#if number\}<\/p>"$/),
      line: 2,
    });
  });
  it('an unknown variable names the known ones, with line and column', () => {
    expect(templateProblem('Hi {{frstName}}', false)).toEqual({
      message: expect.stringMatching(/^"frstName" is not a template variable \(one of customer, firstName, /),
      line: 1,
      column: 6,
    });
  });
  it("a block helper's argument is a variable too: a misspelt one would leave its block out of every email", () => {
    expect(templateProblem('<p>Hi</p>\n{{#if numbr}}<p>{{number}}</p>{{/if}}')).toEqual({
      message: expect.stringMatching(/^"numbr" is not a template variable \(one of customer, /),
      line: 2,
      column: 7,
    });
    expect(templateProblem('{{#unless email}}x{{else}}{{#with site}}{{this}}{{/with}}{{/unless}}{{#each emial}}{{/each}}')).toMatchObject({ message: expect.stringMatching(/^"emial" is not/) });
    // A field of a plain value, inside {{#with site}} or as a dotted path: said so, with its place
    // (the read inside the block, not a variable of the same name outside it).
    expect(templateProblem('<p>{{firstName}}\n{{#with site}}{{firstName}}{{/with}}</p>')).toEqual({
      message: expect.stringMatching(/^"firstName" inside \{\{#with site\}\} reads a field of site, a plain value with no fields: name the variables directly \(one of customer, /),
      line: 2,
      column: 17,
    });
    expect(templateProblem('Hi {{firstName}}, at {{site.city}}', false)).toEqual({
      message: expect.stringMatching(/^"site\.city" reads a field of site, a plain value with no fields/),
      line: 1,
      column: 24,
    });
    // Known variables anywhere, helpers' names, `this` and data are fine.
    expect(templateProblem('{{#if number}}{{number}}{{else}}none{{/if}}{{#unless site}}-{{/unless}}{{#each profile}}{{@index}}{{this}}{{/each}}')).toBeNull();
  });
});

describe('formatProblem', () => {
  it('marks warnings and places a problem in its own file', () => {
    expect(formatProblem({ path: ['customers', 0, 'sites', 1], message: 'no ranges', severity: 'warning', line: 3, column: 7 }, 'acme.yaml')).toBe(
      'acme.yaml:3:7: customers[0].sites[1]: warning: no ranges',
    );
    expect(formatProblem({ path: ['customers', 0, 'settings', 'welcomeEmail', 'template'], message: 'bad', file: 'welcome.html', line: 4 }, 'acme.yaml')).toBe(
      'welcome.html:4: customers[0].settings.welcomeEmail.template: bad',
    );
  });
});

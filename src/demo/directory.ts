/** A deterministic sample HR export for the demo and the benchmark: same seed, same people. */

const FIRST = ['Joe', 'Jane', 'Ana', 'Bo', 'Chen', 'Dara', 'Eli', 'Fatima', 'Gus', 'Hana', 'Ivan', 'Jo', 'Kofi', 'Lena', 'Mateo', 'Noor', 'Olu', 'Priya', 'Quinn', 'René', 'Søren', 'Tomás', 'Uma', 'Vik', 'Wen', 'Yusuf', 'Zoë'];
const LAST = ['Adams', 'Murphy', 'García', 'Nguyen', 'Okafor', 'Schmidt', 'Rossi', 'Kowalski', 'Tanaka', 'Johansson', 'Dubois', 'Ali', 'Smith', 'Haddad', 'Novak'];
const CITIES: readonly [string, number][] = [['Chicago', 40], ['Dallas', 35], ['Boston', 15], ['Austin', 10]];
const DEPARTMENTS: readonly [string, number][] = [['Engineering', 45], ['Sales', 15], ['Marketing', 15], ['Support', 15], ['Business Development', 10]];

function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function weighted(random: () => number, choices: readonly [string, number][]): string {
  const total = choices.reduce((sum, [, w]) => sum + w, 0);
  let pick = random() * total;
  for (const [value, weight] of choices) {
    pick -= weight;
    if (pick < 0) return value;
  }
  return choices[choices.length - 1]![0];
}

export const DIRECTORY_COLUMNS = ['employee_id', 'login', 'mail', 'given_name', 'surname', 'department', 'city', 'title', 'mobile'] as const;

/** Yields CSV lines (header first) for `count` people. */
export function* sampleDirectory(count: number, seed = 42): Generator<string> {
  const random = prng(seed);
  yield DIRECTORY_COLUMNS.join(',');
  for (let i = 1; i <= count; i++) {
    const first = FIRST[Math.floor(random() * FIRST.length)]!;
    const last = LAST[Math.floor(random() * LAST.length)]!;
    const department = weighted(random, DEPARTMENTS);
    const title = department === 'Engineering' && random() < 0.1 ? 'Engineering Intern' : random() < 0.3 ? 'Senior Associate' : 'Associate';
    const login = `${first}.${last}.${i}`.normalize('NFD').replace(/[^A-Za-z0-9.]/g, '').toLowerCase();
    // Every twentieth person has no email address: provisioned, but not welcomed.
    const mail = i % 20 === 0 ? '' : `${login}@acme.example`;
    // One in ten has no mobile: a Sales profile (single number reach to the mobile) fails for them.
    const mobile = random() < 0.9 ? `+1555${String(1_000_000 + i).slice(-7)}` : '';
    const fields = [`A${String(i).padStart(6, '0')}`, login, mail, first, last, department, weighted(random, CITIES), title, mobile];
    yield fields.map((f) => (/[",\n]/.test(f) ? `"${f.replaceAll('"', '""')}"` : f)).join(',');
  }
}

/** The demo's LDAP directory: contractors kept in OpenLDAP rather than in the HR export. */
export function sampleLdapPeople(count: number, seed = 7): { uid: string; attributes: Record<string, string> }[] {
  const random = prng(seed);
  const people: { uid: string; attributes: Record<string, string> }[] = [];
  for (let i = 1; i <= count; i++) {
    const givenName = FIRST[Math.floor(random() * FIRST.length)]!;
    const sn = LAST[Math.floor(random() * LAST.length)]!;
    const uid = `${givenName}.${sn}.c${i}`.normalize('NFD').replace(/[^A-Za-z0-9.]/g, '').toLowerCase();
    people.push({
      uid,
      attributes: {
        cn: `${givenName} ${sn}`,
        givenName,
        sn,
        mail: `${uid}@acme.example`,
        l: weighted(random, CITIES),
        departmentNumber: weighted(random, DEPARTMENTS),
        title: 'Contractor',
        employeeNumber: `C${String(i).padStart(6, '0')}`,
      },
    });
  }
  return people;
}

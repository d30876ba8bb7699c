/*
 * Writes the byte-exact CSV files of this corpus (NUL bytes, invalid UTF-8, CRLF, a BOM are hard
 * to keep intact in an editor). The files are committed; run this only to change one:
 *
 *   npx tsx test/data/csv/generate.ts
 *
 * Each `<name>.csv` has a hand-written `<name>.expect.json` next to it (see test/unit/csv-corpus.test.ts).
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const CITIES = ['Chicago', 'Dallas', 'Boston', 'Austin'];
const row = (i: number) => `A${i},Person ${i},person${i}@example.com,${CITIES[i % CITIES.length]}`;
const HEADER = 'id,name,email,city';
/** Rows A1.. as lines 2..; `lines(25)` is a 26-line file with the header. */
const lines = (n: number) => Array.from({ length: n }, (_, i) => row(i + 1));

const files: Record<string, Buffer | string> = {
  // A NUL byte inside a field: PostgreSQL refuses it in text and jsonb.
  'nul-byte': [HEADER, ...lines(3), 'A4,Nul\u0000Byte,a4@example.com,Chicago', ...lines(6).slice(4)].join('\n') + '\n',

  // Latin-1 bytes in a UTF-8 file (0xE9 alone, "é" in ISO-8859-1), and a CESU-8 surrogate (ED A0 80).
  'invalid-utf8': Buffer.concat([
    Buffer.from(`${HEADER}\n${row(1)}\nA2,Ren`),
    Buffer.from([0xe9]),
    Buffer.from(`e,a2@example.com,Dallas\nA3,Person 3,a3@example.com,`),
    Buffer.from([0xed, 0xa0, 0x80]),
    Buffer.from(`\n${row(4)}\n`),
  ]),

  // An opening quote never closed on line 21 of 26: the 5 rows after it must still be read.
  'unterminated-quote': [HEADER, ...lines(19), 'A20,"Broken Quote,a20@example.com,Chicago', ...lines(25).slice(20)].join('\n') + '\n',

  // The same on the last line: nothing after it to recover.
  'unterminated-quote-last-line': [HEADER, ...lines(4), 'A5,"Broken,a5@example.com,Dallas'].join('\n') + '\n',

  // Two unterminated quotes in CRLF, the second right after the first; blank lines between rows.
  'unterminated-quotes-crlf': [HEADER, row(1), 'A2,"Broken one,a2@example.com,Chicago', 'A3,"Broken two,a3@example.com,Dallas', '', row(4), '', row(5)].join('\r\n') + '\r\n',

  // The same external id on lines 14 and 16: line 16 wins, line 14 is reported.
  'duplicate-ids': [HEADER, ...lines(12), 'A17,First Seventeen,first17@example.com,Chicago', ...lines(14).slice(13), 'A17,Second Seventeen,second17@example.com,Dallas', ...lines(20).slice(17)].join('\n') + '\n',

  // CRLF, quoted fields with CRLF inside, doubled quotes, a blank line, a short row, no final line break.
  'crlf-quoted-newlines': [
    HEADER,
    row(1),
    'A2,"Bob\r\nJones",a2@example.com,Dallas',
    'A3,"Multi\r\nline\r\nname",a3@example.com,Austin',
    'A4,Short Row',
    row(5),
    '',
    'A6,"Fay ""F"" Smith",a6@example.com,Chicago',
    'A7,Gus,a7@example.com,"Dal\r\nlas"',
  ].join('\r\n'),

  // An HR export with a status column: inactive rows are skipped by the source's disabledWhen.
  'disabled-rows': [
    'employee_id,name,status,city',
    'E1,Ann Active,active,Chicago',
    'E2,Bob Gone,inactive,Dallas',
    'E3,Cy Leave,on leave,Boston',
    'E4,Di Gone,INACTIVE,Austin',
    'E5,Ed Active,Active,Chicago',
  ].join('\n') + '\n',

  // A BOM, blank lines before the header and between rows, a row with too many columns, a missing id.
  'bom-blank-lines': '\uFEFF\n' + [HEADER, '', row(1), '', '', row(2), 'A3,Too,many,columns,here', ',No Id,noid@example.com,Dallas', row(4)].join('\n'),

  // Stray quotes inside unquoted fields are text (relax_quotes), not the start of a quoted field.
  'stray-quotes': [HEADER, 'A1,Bob "The Builder" Jones,a1@example.com,Chicago', 'A2,"Quoted" Then Text,a2@example.com,Dallas', 'A3,O\'Brien 5",a3@example.com,Boston'].join('\n') + '\n',

  // The header itself opens a quote that never closes: the file cannot be read at all.
  'header-unterminated': ['id,"name,email,city', ...lines(3)].join('\n') + '\n',
};

for (const [name, content] of Object.entries(files)) writeFileSync(join(here, `${name}.csv`), content);

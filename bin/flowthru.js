#!/usr/bin/env node
// The CLI runs from the compiled output; `./dev.sh` (or `npm run build`) produces it.
import { main } from '../dist/client/cli.js';

// A reader that stops early (`flowthru users | head`) closes the pipe: stop quietly, as Unix tools
// do, instead of failing on the next line written.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(0);
    process.stderr.write(`flowthru: cannot write the output: ${error.message}\n`);
    process.exit(2);
  });
}

main(process.argv).then((code) => {
  process.exitCode = code;
});

#!/usr/bin/env node
// The CLI runs from the compiled output; `./dev.sh` (or `npm run build`) produces it.
import { main } from '../dist/client/cli.js';

main(process.argv).then((code) => {
  process.exitCode = code;
});

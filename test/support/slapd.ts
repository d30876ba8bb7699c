// The slapd harness lives with the demo, which starts one too.
export * from '../../src/demo/slapd.js';

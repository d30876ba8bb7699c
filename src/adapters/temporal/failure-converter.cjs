// Temporal loads a failure converter by path, with require(), in the worker, the client and the
// workflow sandbox's bundle: plain CommonJS so it loads the same in each (and from dist/).
// encodeCommonAttributes moves every failure's message and stack trace into a payload, which the
// payload codec then encrypts: an error message can quote a record (SPEC §6).
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });

// The SDK loads a failure converter by path: require()d by the worker and every client, and bundled into
// the workflow sandbox. Plain CommonJS, because neither place can load TypeScript through require().
// Encoding the common attributes moves error messages and stack traces into a payload, where the codec
// encrypts them like everything else.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });

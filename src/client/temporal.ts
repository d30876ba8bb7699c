import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { SEARCH_ATTRIBUTE_NAMES } from '../workflows/config.js';
import { dataConverterFromEnv } from '../adapters/temporal/data-converter.js';
import type { Settings } from '../settings.js';

/** A client with flowthru's data converter: the payload keys are checked before Temporal is dialled. */
export async function connectClient(settings: Settings, env: NodeJS.ProcessEnv = process.env): Promise<Client> {
  const dataConverter = dataConverterFromEnv(env);
  const connection = await Connection.connect({ address: settings.temporalAddress });
  return new Client({ connection, namespace: settings.temporalNamespace, dataConverter });
}

/** Runs `fn` with a client, and closes its connection afterwards, whatever happens. */
export async function withClient<T>(settings: Settings, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = await connectClient(settings);
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}

/**
 * Registers flowthru's search attributes in the namespace if they are missing, so runs can be
 * filtered in Temporal UI. Idempotent; the worker runs it at start.
 */
export async function ensureSearchAttributes(client: Client): Promise<string[]> {
  const operator = client.connection.operatorService;
  const { customAttributes } = await operator.listSearchAttributes({ namespace: client.options.namespace });
  const missing = SEARCH_ATTRIBUTE_NAMES.filter((name) => !customAttributes || !(name in customAttributes));
  if (missing.length === 0) return [];
  await operator.addSearchAttributes({
    namespace: client.options.namespace,
    searchAttributes: Object.fromEntries(missing.map((name) => [name, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
  });
  return missing;
}

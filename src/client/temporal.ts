import { Client, Connection } from '@temporalio/client';
import { connect } from 'node:net';
import proto from '@temporalio/proto';
import { SEARCH_ATTRIBUTE_NAMES } from '../workflows/config.js';
import { dataConverterFromEnv } from '../adapters/temporal/data-converter.js';
import type { Settings } from '../settings.js';

/** Nothing answers at TEMPORAL_ADDRESS (refused, or an unknown host): said at once, not after the SDK's 10 s deadline. */
export class TemporalUnreachableError extends Error {
  override readonly name = 'TemporalUnreachableError';
  /** TEMPORAL_ADDRESS itself is wrong (not host:port): no wait makes it reachable. */
  readonly malformed: boolean;
  constructor(message: string, options: { malformed?: boolean } = {}) {
    super(message);
    this.malformed = options.malformed ?? false;
  }
}

/**
 * Dials TEMPORAL_ADDRESS over plain TCP first. A refused connection or an unknown host is known in
 * a moment, while the gRPC channel retries it until its 10 s deadline. Anything else (connected,
 * slow, a proxy in the way) is left to the SDK's own connect.
 */
export async function probeTemporal(address: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (env.grpc_proxy || env.https_proxy || env.HTTPS_PROXY || env.http_proxy || env.HTTP_PROXY) return;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) {
    throw new TemporalUnreachableError(`TEMPORAL_ADDRESS "${address}" is host:port, without a scheme (e.g. 127.0.0.1:7233)`, { malformed: true });
  }
  let host: string;
  let port: number;
  try {
    const url = new URL(`tcp://${address}`);
    host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    port = Number(url.port || '7233');
  } catch {
    throw new TemporalUnreachableError(`TEMPORAL_ADDRESS "${address}" is not host:port (e.g. 127.0.0.1:7233)`, { malformed: true });
  }
  const code = await new Promise<string | null>((resolve) => {
    const socket = connect({ host, port });
    const done = (result: string | null) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(3_000, () => done(null));
    socket.once('connect', () => done(null));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? null));
  });
  if (code === 'ECONNREFUSED') throw new TemporalUnreachableError(`cannot reach Temporal at ${address} (ECONNREFUSED): is it running? check TEMPORAL_ADDRESS`);
  if (code === 'ENOTFOUND') throw new TemporalUnreachableError(`cannot reach Temporal at ${address}: the host "${host}" is not known (ENOTFOUND); check TEMPORAL_ADDRESS`);
  if (code === 'EAI_AGAIN') throw new TemporalUnreachableError(`cannot reach Temporal at ${address}: the host "${host}" cannot be looked up now (EAI_AGAIN: DNS); try again, or check TEMPORAL_ADDRESS`);
}

/**
 * A client with flowthru's data converter: the payload keys are checked before Temporal is dialled,
 * and a Temporal that refuses the connection is said at once (probeTemporal).
 */
export async function connectClient(settings: Settings, env: NodeJS.ProcessEnv = process.env): Promise<Client> {
  const dataConverter = dataConverterFromEnv(env);
  await probeTemporal(settings.temporalAddress, env);
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

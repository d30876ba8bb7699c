import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';

/*
 * Temporal's remote codec protocol, so Temporal UI and the Temporal CLI show flowthru's encrypted
 * payloads decoded (https://docs.temporal.io/production-deployment/data-encryption):
 *   POST /decode and POST /encode, body {"payloads": [{"metadata": {k: base64}, "data": base64}]},
 *   the namespace in X-Namespace.
 * The browser calls it from the UI's page: CORS answers the UI's origin only, and a request from
 * any other origin is refused. With FLOWTHRU_CODEC_TOKEN set, every request must carry it as a
 * bearer token (the Temporal CLI's --codec-auth, or a UI behind an identity provider).
 * It never logs a payload.
 */

export interface CodecServerOptions {
  readonly codec: PayloadCodec;
  readonly host: string;
  readonly port: number;
  /** The origins allowed to call it from a browser (Temporal UI's address, e.g. http://127.0.0.1:8233). */
  readonly origins: readonly string[];
  /** When set, every request must say `Authorization: Bearer <token>`. */
  readonly token?: string | undefined;
  /** The namespace it serves; a request naming another is refused. */
  readonly namespace: string;
  /** Told one line per request: method, path, status; never a payload. */
  readonly log?: (entry: { method: string; path: string; status: number; origin?: string }) => void;
}

export interface CodecServer {
  readonly url: string;
  close(): Promise<void>;
}

const MAX_BODY = 8 * 1024 * 1024;

class Refused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface JsonPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}

function fromJson(payload: JsonPayload, index: number): Payload {
  if (typeof payload !== 'object' || payload === null) throw new Refused(400, `payload ${index} is not an object`);
  const metadata: Record<string, Uint8Array> = {};
  for (const [key, value] of Object.entries(payload.metadata ?? {})) {
    if (typeof value !== 'string') throw new Refused(400, `payload ${index}: metadata "${key}" is not base64 text`);
    metadata[key] = Buffer.from(value, 'base64');
  }
  if (payload.data != null && typeof payload.data !== 'string') throw new Refused(400, `payload ${index}: data is not base64 text`);
  return { metadata, data: Buffer.from(payload.data ?? '', 'base64') };
}

function toJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value ?? new Uint8Array()).toString('base64')])),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Refused(413, `the request is larger than ${MAX_BODY / 1024 / 1024} MB`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Starts the codec server; resolves once it listens. */
export async function startCodecServer(options: CodecServerOptions): Promise<CodecServer> {
  const origins = new Set(options.origins.map((o) => o.replace(/\/+$/, '')));

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<number> => {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      // A browser: only Temporal UI's page may read the answers.
      if (!origins.has(origin)) throw new Refused(403, `origin ${origin} is not allowed (allowed: ${[...origins].join(', ') || 'none'})`);
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
      res.setHeader('Access-Control-Max-Age', '600');
      res.writeHead(204).end();
      return 204;
    }
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '');
    const operation = path.endsWith('/decode') ? 'decode' : path.endsWith('/encode') ? 'encode' : null;
    if (req.method !== 'POST' || operation === null) throw new Refused(404, 'POST /decode or POST /encode');
    if (options.token !== undefined) {
      const auth = req.headers.authorization ?? '';
      const given = auth.startsWith('Bearer ') ? auth.slice('Bearer '.length).trim() : '';
      if (!sameToken(given, options.token)) throw new Refused(401, 'a bearer token is required (FLOWTHRU_CODEC_TOKEN)');
    }
    const namespace = req.headers['x-namespace'];
    if (typeof namespace === 'string' && namespace !== '' && namespace !== options.namespace) {
      throw new Refused(403, `this codec server serves namespace ${options.namespace}, not ${namespace}`);
    }
    let body: { payloads?: unknown };
    try {
      body = JSON.parse(await readBody(req)) as { payloads?: unknown };
    } catch (error) {
      if (error instanceof Refused) throw error;
      throw new Refused(400, 'the body is not JSON');
    }
    if (!body || !Array.isArray(body.payloads)) throw new Refused(400, 'the body has no "payloads" array');
    const payloads = (body.payloads as JsonPayload[]).map(fromJson);
    let result: Payload[];
    try {
      result = operation === 'decode' ? await options.codec.decode(payloads) : await options.codec.encode(payloads);
    } catch (error) {
      throw new Refused(400, error instanceof Error ? error.message : String(error));
    }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ payloads: result.map(toJson) }));
    return 200;
  };

  const server = createServer((req, res) => {
    handle(req, res)
      .then((status) => options.log?.({ method: req.method ?? '?', path: req.url ?? '/', status, ...(req.headers.origin ? { origin: req.headers.origin } : {}) }))
      .catch((error: unknown) => {
        const status = error instanceof Refused ? error.status : 500;
        const message = error instanceof Refused ? error.message : 'internal error';
        if (!res.headersSent) res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: message }));
        options.log?.({ method: req.method ?? '?', path: req.url ?? '/', status, ...(req.headers.origin ? { origin: req.headers.origin } : {}) });
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

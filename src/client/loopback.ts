import { isIP } from 'node:net';

/** A loopback host name or address: what the codec server and the console trust without a token. */
export const isLoopback = (host: string) => host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

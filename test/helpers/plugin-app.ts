// Builds the plugin's Fastify app over a given store and dataplane, with logs in a sink.
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApp, AppDeps } from '../../src/server/app';
import { Ipam } from '../../src/ipam/ipam';
import { NetworkDriver } from '../../src/network/network-driver';
import type { RecordCache } from '../../src/network/record-cache';
import { AddressClaims } from '../../src/network/address-claims';
import { Keys } from '../../src/store/json';
import type { Store } from '../../src/store/types';
import type { Dataplane } from '../../src/network/dataplane-port';
import { createLogger, Logger } from '../../src/log';

export interface PluginApp {
  app: FastifyInstance;
  ipam: Ipam;
  driver: NetworkDriver;
  logs: Array<Record<string, unknown>>;
  /** POSTs like dockerd does: no Content-Type, body = JSON + newline (or nothing). */
  call(path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
}

export interface DomainOptions {
  host?: string;
  failAt?: (step: string) => void;
  teardownDelayMs?: number;
  log?: Logger;
  /** As the daemon sets it with a shared store (etcd) in local scope. */
  requireVxnetIpam?: boolean;
  /** As the daemon sets it in global (swarm) scope. */
  deferNetworkDelete?: boolean;
  /** The in-memory record cache the daemon gives the driver (started by the caller). */
  records?: RecordCache;
}

/** The optional hooks the daemon passes to buildApp (admin routes, metrics). */
export type AppExtras = Pick<AppDeps, 'reconcile' | 'status' | 'observeCall'>;

/** IPAM and network driver of one host over a store, as the daemon wires them (single host). */
export function testDomain(store: Store, dataplane: Dataplane, opts: DomainOptions = {}): { ipam: Ipam; driver: NetworkDriver } {
  const log = opts.log ?? createLogger('silent');
  const host = opts.host ?? 'h1';
  const claims = new AddressClaims({ store, keys: TEST_KEYS, host, records: opts.records });
  const ipam = new Ipam({ store, keys: TEST_KEYS, host, defaultPools: [{ base: '10.128.0.0/9', size: 24 }], hostRoutes: async () => [], releases: claims });
  const driver = new NetworkDriver({
    claims,
    store, keys: TEST_KEYS, dataplane, ipam, host, defaultMtu: 1450, vniRange: { min: 256, max: 4095 },
    vtep: null, vxlanPort: 4789, peers: null, teardownDelayMs: opts.teardownDelayMs ?? 0, log, failAt: opts.failAt,
    requireVxnetIpam: opts.requireVxnetIpam, deferNetworkDelete: opts.deferNetworkDelete, records: opts.records,
  });
  return { ipam, driver };
}

export const TEST_KEYS = new Keys('/vxnet/v1/');

export function pluginApp(store: Store, dataplane: Dataplane, opts: DomainOptions & { extras?: AppExtras } = {}): PluginApp {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = createLogger('debug', sink);
  const { ipam, driver } = testDomain(store, dataplane, { ...opts, log });
  const app = buildApp({ driver, ipam, log, scope: 'local', ...opts.extras });
  return {
    app,
    ipam,
    driver,
    logs,
    async call(path, body) {
      const payload = body === undefined ? '' : typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
      const res = await app.inject({
        method: 'POST',
        url: path,
        payload,
        headers: { accept: 'application/vnd.docker.plugins.v1.2+json', 'content-length': String(Buffer.byteLength(payload)) },
      });
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(res.body) as Record<string, unknown>;
      } catch {
        parsed = { raw: res.body };
      }
      return { status: res.statusCode, body: parsed };
    },
  };
}

export const NET_ID = '0412723f'.padEnd(64, 'a');
export const NET_ID2 = '0512723f'.padEnd(64, 'b');
export const EP_ID = '8ef52212'.padEnd(64, 'c');
export const EP_ID2 = '9ef52212'.padEnd(64, 'd');

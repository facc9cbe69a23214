// The composition root: builds store, IPAM, network driver and the HTTP server from a Config.
import type { FastifyInstance } from 'fastify';
import type { Config } from './config';
import type { Logger } from './log';
import { vxError } from './errors';
import { EmbeddedStore } from './store/embedded';
import type { Store } from './store/types';
import { Keys } from './store/json';
import { Ipam } from './ipam/ipam';
import { Cidr, overlaps } from './ipam/cidr';
import { NetworkDriver } from './network/network-driver';
import { buildApp } from './server/app';
import { listenOnSocket } from './server/listen';
import * as dataplane from './dataplane';
import { defaultRouteInterface, readRoutes4 } from './dataplane/routes';

/** Bytes VXLAN adds around each frame: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/** Inner MTU when no default route tells the underlay's. */
export const FALLBACK_MTU = 1450;

export interface Daemon {
  app: FastifyInstance;
  store: Store;
  close(): Promise<void>;
}

export async function resolveDefaultMtu(config: Config): Promise<number> {
  if (config.mtu !== null) return config.mtu;
  const iface = defaultRouteInterface();
  if (!iface) return FALLBACK_MTU;
  const link = await dataplane.getLinkByName(iface);
  return link ? link.mtu - VXLAN_OVERHEAD : FALLBACK_MTU;
}

async function openStore(config: Config): Promise<Store> {
  if (config.store === 'embedded') return EmbeddedStore.open({ dataDir: config.dataDir });
  throw vxError('VXNET_ERR_BAD_CONFIG', 'store "etcd" is not available in this build yet');
}

/** Auto-chosen subnets must not shadow a route this host has (the default route aside). */
async function overlapsHostRoute(c: Cidr): Promise<boolean> {
  if (c.family !== 4) return false;
  return readRoutes4()
    .filter((r) => r.prefix > 0)
    .some((r) => overlaps(c, { family: 4, base: BigInt(r.dest), prefix: r.prefix, bits: 32 }));
}

export async function startDaemon(config: Config, log: Logger): Promise<Daemon> {
  const defaultMtu = await resolveDefaultMtu(config);
  const store = await openStore(config);
  const keys = new Keys(config.etcdPrefix);
  const ipam = new Ipam({ store, keys, host: config.hostId, defaultPools: config.defaultPools, overlapsHostRoute });
  const driver = new NetworkDriver({
    store,
    keys,
    dataplane,
    ipam,
    host: config.hostId,
    defaultMtu,
    vniRange: { min: config.vniMin, max: config.vniMax },
    log: log.child({ mod: 'network' }),
  });
  const app = buildApp({ driver, ipam, log: log.child({ mod: 'server' }), scope: 'local' });
  try {
    await listenOnSocket(app, config.socket);
  } catch (err) {
    await store.close();
    throw err;
  }
  log.info({ socket: config.socket, store: config.store, host: config.hostId, mtu: defaultMtu }, 'vxnet listening');
  return {
    app,
    store,
    async close() {
      await app.close();
      await store.close();
      dataplane.closeRtnl();
    },
  };
}

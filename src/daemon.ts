// The composition root: builds store, IPAM, network driver and the HTTP server from a Config.
import type { FastifyInstance } from 'fastify';
import type { Config } from './config';
import type { Logger } from './log';
import { vxError } from './errors';
import { EmbeddedStore } from './store/embedded';
import { EtcdStore } from './store/etcd';
import type { Store } from './store/types';
import { timedStore } from './store/timed';
import { Keys } from './store/json';
import { Ipam } from './ipam/ipam';
import { Cidr, overlaps } from './ipam/cidr';
import { NetworkDriver, Vtep } from './network/network-driver';
import { PeerSync } from './network/peers';
import { registerHost } from './network/host-registry';
import { reconcile } from './network/reconcile';
import { ReconcileHistory } from './network/reconcile-history';
import { gatherStatus } from './network/status';
import { startDeadHostSweeper } from './network/dead-hosts';
import { dockerClient } from './docker/docker-view';
import { buildApp } from './server/app';
import { listenOnSocket } from './server/listen';
import { Metrics, serveMetrics, MetricsServer } from './metrics';
import * as dataplane from './dataplane';
import { defaultRouteInterface, readRoutes4 } from './dataplane/routes';

export const VERSION = '0.1.0';

/** Bytes VXLAN adds around each frame: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/** Inner MTU when no default route tells the underlay's. */
export const FALLBACK_MTU = 1450;

export interface Daemon {
  app: FastifyInstance;
  store: Store;
  metrics: Metrics;
  /** null unless VXNET_METRICS_ADDR is set. */
  metricsServer: MetricsServer | null;
  close(): Promise<void>;
}

/** Inner MTU: the setting, or the underlay's MTU minus what VXLAN adds. */
export async function resolveDefaultMtu(config: Config, vtep: Vtep | null): Promise<number> {
  if (config.mtu !== null) return config.mtu;
  const iface = vtep?.iface ?? defaultRouteInterface();
  if (!iface) return FALLBACK_MTU;
  const link = await dataplane.getLinkByName(iface);
  return link ? link.mtu - VXLAN_OVERHEAD : FALLBACK_MTU;
}

/**
 * This host's tunnel endpoint. A single host with the embedded store needs none unless one is
 * configured; across hosts it is required: the setting, else the address of the named
 * interface, else of the default-route interface.
 */
export async function resolveVtep(config: Config): Promise<Vtep | null> {
  if (config.store === 'embedded' && !config.vtepIp && !config.vtepInterface) return null;
  const links = await dataplane.listLinks('');
  const addrsOf = async (name: string): Promise<string[]> => {
    const link = links.find((l) => l.name === name);
    return link ? (await dataplane.listAddrs(link)).filter((a) => a.family === 4).map((a) => a.cidr.split('/')[0]) : [];
  };
  if (config.vtepIp) {
    for (const l of links) {
      if ((await addrsOf(l.name)).includes(config.vtepIp)) return { ip: config.vtepIp, iface: config.vtepInterface ?? l.name };
    }
    throw vxError('VXNET_ERR_BAD_CONFIG', `invalid setting --vtep-ip/VXNET_VTEP_IP: no interface of this host has ${config.vtepIp}`);
  }
  const iface = config.vtepInterface ?? defaultRouteInterface();
  if (!iface) {
    throw vxError('VXNET_ERR_BAD_CONFIG', 'no VTEP address: set --vtep-ip/VXNET_VTEP_IP or --vtep-interface/VXNET_VTEP_INTERFACE (this host has no default route)');
  }
  const [ip] = await addrsOf(iface);
  if (!ip) throw vxError('VXNET_ERR_BAD_CONFIG', `invalid setting --vtep-interface/VXNET_VTEP_INTERFACE: ${iface} has no IPv4 address`);
  return { ip, iface };
}

async function openStore(config: Config, log: Logger): Promise<Store> {
  if (config.store === 'embedded') return EmbeddedStore.open({ dataDir: config.dataDir });
  const storeLog = log.child({ mod: 'store' });
  return EtcdStore.open({
    endpoints: config.etcdEndpoints,
    prefix: config.etcdPrefix,
    ca: config.etcdCa ?? undefined,
    cert: config.etcdCert ?? undefined,
    key: config.etcdKey ?? undefined,
    onError: (err) => storeLog.warn({ err }, 'store trouble handled'),
  });
}

/** Auto-chosen subnets must not shadow a route this host has (the default route aside). */
async function overlapsHostRoute(c: Cidr): Promise<boolean> {
  if (c.family !== 4) return false;
  return readRoutes4()
    .filter((r) => r.prefix > 0)
    .some((r) => overlaps(c, { family: 4, base: BigInt(r.dest), prefix: r.prefix, bits: 32 }));
}

/** How often a host looks for dead hosts: a quarter of the grace, within these bounds. */
const MIN_SWEEP_EVERY_MS = 1000;
const MAX_SWEEP_EVERY_MS = 60_000;

/** How often the start-up reconcile retries while dockerd does not answer, and for how long. */
const RECONCILE_RETRY_MS = 10_000;
const RECONCILE_RETRY_FOR_MS = 10 * 60_000;

/**
 * Reconcile runs after the socket is up: at boot dockerd may be waiting on this plugin, and a
 * reconcile that waited for dockerd first would wait on itself. Until dockerd answers, only the
 * kernel is repaired; the pass is repeated until it does (or the retry window closes).
 */
function startupReconcile(run: (dryRun: boolean) => Promise<{ dockerdAnswered: boolean }>, log: Logger): { stop(): void } {
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const started = Date.now();
  const attempt = async (): Promise<void> => {
    try {
      const plan = await run(false);
      if (plan.dockerdAnswered || stopped || Date.now() - started > RECONCILE_RETRY_FOR_MS) return;
    } catch (err) {
      log.warn({ err }, 'reconcile failed');
    }
    if (stopped) return;
    timer = setTimeout(() => void attempt(), RECONCILE_RETRY_MS);
    timer.unref();
  };
  void attempt();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

export async function startDaemon(config: Config, log: Logger): Promise<Daemon> {
  const vtep = await resolveVtep(config);
  const defaultMtu = await resolveDefaultMtu(config, vtep);
  // Metrics are always counted (a few microseconds per call); only serving them is optional.
  const metricsLog = log.child({ mod: 'metrics' });
  const metrics = new Metrics(metricsLog);
  const store = timedStore(await openStore(config, log), metrics.observeStore);
  const keys = new Keys(config.etcdPrefix);
  const ipam = new Ipam({ store, keys, host: config.hostId, defaultPools: config.defaultPools, overlapsHostRoute });
  let peers: PeerSync | null = null;
  try {
    if (vtep) {
      await registerHost(store, keys, config.hostId, { vtep: vtep.ip, version: VERSION }, config.leaseTtl);
      peers = new PeerSync({ store, keys, dataplane, host: config.hostId, log: log.child({ mod: 'peers' }) });
      await peers.start();
    }
  } catch (err) {
    await store.close();
    throw err;
  }
  const driver = new NetworkDriver({
    store,
    keys,
    dataplane,
    ipam,
    host: config.hostId,
    defaultMtu,
    vniRange: { min: config.vniMin, max: config.vniMax },
    vtep,
    vxlanPort: config.vxlanPort,
    peers,
    teardownDelayMs: config.teardownDelayMs,
    log: log.child({ mod: 'network' }),
  });
  const docker = dockerClient(config.dockerHost);
  const reconcileLog = log.child({ mod: 'reconcile' });
  const reconciles = new ReconcileHistory(
    (dryRun) => reconcile({ driver, ipam, dataplane, docker, host: config.hostId, log: reconcileLog, graceMs: config.reconcileGraceMs }, { dryRun }),
    metrics.observeReconcile,
  );
  metrics.setSources({ addressUsage: () => ipam.addressUsage(), programmedPeers: () => peers?.programmed() ?? [] });
  const status = () =>
    gatherStatus({
      store,
      keys,
      self: { host: config.hostId, vtep: vtep?.ip ?? null, store: config.store, version: VERSION },
      registered: peers !== null,
      peers,
      lastReconcile: () => reconciles.last(),
    });
  const app = buildApp({
    driver,
    ipam,
    log: log.child({ mod: 'server' }),
    scope: 'local',
    reconcile: reconciles.runner('on-demand'),
    status,
    observeCall: metrics.observeCall,
  });
  let metricsServer: MetricsServer | null = null;
  try {
    if (config.metricsAddr) metricsServer = await serveMetrics(metrics, config.metricsAddr, metricsLog);
    await listenOnSocket(app, config.socket);
  } catch (err) {
    await metricsServer?.close();
    await peers?.close();
    await store.close();
    throw err;
  }
  log.info({ socket: config.socket, store: config.store, host: config.hostId, mtu: defaultMtu, vtep: vtep?.ip ?? null }, 'vxnet listening');
  const startup = startupReconcile(reconciles.runner('startup'), reconcileLog);
  // Only hosts that register under a lease can tell a dead host from a live one.
  const sweeper = peers
    ? startDeadHostSweeper(
        { store, keys, host: config.hostId, graceMs: config.deadHostGraceMs, driver, ipam, log: log.child({ mod: 'dead-hosts' }) },
        Math.min(MAX_SWEEP_EVERY_MS, Math.max(MIN_SWEEP_EVERY_MS, config.deadHostGraceMs / 4)),
      )
    : null;
  return {
    app,
    store,
    metrics,
    metricsServer,
    async close() {
      startup.stop();
      sweeper?.stop();
      await metricsServer?.close();
      await app.close();
      driver.close();
      await peers?.close();
      await store.close();
      dataplane.closeRtnl();
    },
  };
}

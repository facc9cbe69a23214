// The composition root: builds store, IPAM, network driver and the HTTP server from a Config.
import type { FastifyInstance } from 'fastify';
import type { Config } from './config';
import type { Logger } from './log';
import { EmbeddedStore } from './store/embedded';
import { EtcdStore } from './store/etcd';
import { etcdOptions, etcdUnreachable } from './etcd-settings';
import type { Store } from './store/types';
import { timedStore } from './store/timed';
import { Keys } from './store/json';
import { Ipam } from './ipam/ipam';
import { hostRouteCidrs } from './ipam/host-routes';
import { NetworkDriver } from './network/network-driver';
import { PeerSync } from './network/peers';
import { AddressClaims } from './network/address-claims';
import { RecordCache } from './network/record-cache';
import { PortPublisher } from './ports';
import { registerHost } from './network/host-registry';
import { reconcile } from './network/reconcile';
import { reconcileUntilDockerd } from './network/reconcile-until-dockerd';
import { ReconcileHistory } from './network/reconcile-history';
import { gatherStatus } from './network/status';
import { startDeadHostSweeper } from './network/dead-hosts';
import { dockerClient, dockerdPresent, dockerSocketPath, endpointLookup } from './docker/docker-view';
import { NameService } from './names';
import { PolicyEngine } from './policy';
import { RedirectPaths, policedAddresses } from './redirect';
import { FirewallGate, RedirectStatus } from './redirect/firewall-gate';
import { buildApp } from './server/app';
import { listenOnSocket } from './server/listen';
import { Metrics, serveMetrics, MetricsServer } from './metrics';
import * as dataplane from './dataplane';
import type { PolicySets } from './dataplane';
import { resolveMtuBounds, resolveVtep } from './underlay';
import { ensureSocketDir } from './server/socket-dir';

export const VERSION = '0.1.0';

export interface Daemon {
  app: FastifyInstance;
  store: Store;
  metrics: Metrics;
  /** null unless VXNET_METRICS_ADDR is set. */
  metricsServer: MetricsServer | null;
  close(): Promise<void>;
}

async function openStore(config: Config, log: Logger): Promise<Store> {
  if (config.store === 'embedded') return EmbeddedStore.open({ dataDir: config.dataDir });
  const storeLog = log.child({ mod: 'store' });
  try {
    return await EtcdStore.open({ ...etcdOptions(config), onError: (err) => storeLog.warn({ err }, 'store trouble handled') });
  } catch (err) {
    throw etcdUnreachable(config, err);
  }
}

/** How often a host looks for dead hosts: a quarter of the grace, within these bounds. */
const MIN_SWEEP_EVERY_MS = 1000;
const MAX_SWEEP_EVERY_MS = 60_000;

export async function startDaemon(config: Config, log: Logger): Promise<Daemon> {
  // Before the store: a start that cannot listen must not register this host first.
  ensureSocketDir(config.socket);
  const vtep = await resolveVtep(config);
  const mtu = await resolveMtuBounds(config, vtep);
  const defaultMtu = mtu.default;
  // Metrics are always counted (a few microseconds per call); only serving them is optional.
  const metricsLog = log.child({ mod: 'metrics' });
  const metrics = new Metrics(metricsLog);
  const store = timedStore(await openStore(config, log), metrics.observeStore);
  const keys = new Keys(config.etcdPrefix);
  // What plugin calls read (networks, this host's Docker networks and endpoints), in memory.
  const records = new RecordCache({ store, keys, host: config.hostId, log: log.child({ mod: 'records' }) });
  // One lock per address for CreateEndpoint and every release (network/address-claims.ts).
  const claims = new AddressClaims({ store, keys, host: config.hostId, records });
  const ipam = new Ipam({ store, keys, host: config.hostId, defaultPools: config.defaultPools, hostRoutes: async () => hostRouteCidrs(), releases: claims });
  let peers: PeerSync | null = null;
  // `--fast-path redirect` across hosts (src/redirect); bound once the policy engine exists.
  let redirect: RedirectPaths | null = null;
  try {
    if (vtep) {
      await registerHost(store, keys, config.hostId, { vtep: vtep.ip, version: VERSION }, config.leaseTtl);
      peers = new PeerSync({ store, keys, dataplane, host: config.hostId, log: log.child({ mod: 'peers' }), onPass: (lnet) => void redirect?.sync(lnet) });
      await peers.start();
    }
    await records.start();
  } catch (err) {
    records.close();
    await peers?.close();
    await store.close();
    throw err;
  }
  // Network policy (src/policy): labels are read by the names publisher, so without it (or
  // without a dockerd socket) no endpoint waits for labels. Answering names across hosts needs
  // the store every host shares (peers); on a single host only the publisher runs (no DNS part,
  // Docker's resolver has every name there), for the names and labels policy rules name.
  const namesDns = config.names && peers !== null;
  const namesOn = namesDns || (config.names && dockerdPresent(config.dockerHost));
  const tables = { fastPath: config.fastPath };
  // The redirect fast path lets no frame of a newly policed address by before the table polices
  // it (src/redirect). Without it a policy change costs nothing more.
  const guarded = async <T>(to: PolicySets, apply: () => Promise<T>): Promise<T> => {
    if (!redirect) return apply();
    const policed = policedAddresses(to);
    await redirect.policyApplying(policed);
    const result = await apply();
    redirect.policyApplied(policed);
    return result;
  };
  const policy = new PolicyEngine({
    store,
    keys,
    host: config.hostId,
    records,
    kernel: {
      list: () => dataplane.listPolicyElements(tables),
      replace: (sets) => guarded(sets, () => dataplane.replacePolicySets(sets, tables)),
      update: (from, to, structure) => guarded(to, () => dataplane.updatePolicySets(from, to, structure, tables)),
      drops: dataplane.policyDrops,
    },
    lookup: namesOn && dockerdPresent(config.dockerHost) ? endpointLookup(config.dockerHost) : null,
    log: log.child({ mod: 'policy' }),
  });
  // Before the socket listens: blocks an earlier run left are taken away before this run changes
  // any policy (without the option they must not outlive it; with it, this run rebuilds what it
  // wants from empty, so it never has to guess what a block holds). Before the redirect exists, so
  // no pass of it runs meanwhile.
  await dataplane
    .detachRedirects()
    .then((devs) => devs.length > 0 && log.info({ devices: devs.length }, 'redirect blocks of an earlier run removed'))
    .catch((err: unknown) => log.warn({ err }, 'could not look for redirect blocks of an earlier run'));
  const livePeers = peers;
  const redirectLog = log.child({ mod: 'redirect' });
  // auto needs to see a rule of someone else's the moment it is added: nf_tables notifications
  // do when iptables writes through nftables; with iptables-legacy nothing would tell, so nothing
  // is redirected.
  const watchable = config.redirect === 'auto' && livePeers !== null && (await dataplane.iptablesOnNftables().catch(() => false));
  let gate: FirewallGate | null = null;
  if (livePeers && (config.redirect === 'always' || watchable)) {
    const paths = new RedirectPaths(
      {
        decided: () => policy.endpoints(),
        records,
        peers: livePeers,
        kernel: { apply: dataplane.applyRedirects, ifindex: async (name) => (await dataplane.getLinkByName(name))?.index ?? null },
        log: redirectLog,
      },
      { paused: config.redirect === 'auto' },
    );
    redirect = paths;
    if (config.redirect === 'auto') gate = new FirewallGate({ rules: dataplane.forwardPathRules, redirect: paths, log: redirectLog });
  } else if (config.redirect === 'auto' && livePeers) {
    redirectLog.info('--fast-path auto: iptables does not write through nftables here, so a rule added to it could not be seen at once; nothing is redirected (the fast path is on)');
  } else if (config.redirect === 'always') {
    redirectLog.info('--fast-path redirect: nothing to redirect on a single host (no VXLAN device); the fast path is on');
  }
  const driver = new NetworkDriver({
    store,
    keys,
    dataplane,
    ipam,
    host: config.hostId,
    defaultMtu,
    maxMtu: mtu.max,
    vniRange: { min: config.vniMin, max: config.vniMax },
    vtep,
    // A shared store joins each host's network into one L2 network: addresses must come from
    // vxnet's cluster-wide IPAM. Swarm (global scope) allocates them centrally itself.
    requireVxnetIpam: config.store === 'etcd' && config.scope === 'local',
    vxlanPort: config.vxlanPort,
    peers,
    records,
    claims,
    policy,
    redirect: redirect ?? undefined,
    teardownDelayMs: config.teardownDelayMs,
    // Swarm builds and removes an attachable network on a worker around every container there.
    deferNetworkDelete: config.scope === 'global',
    log: log.child({ mod: 'network' }),
  });
  dataplane.onReapFailure((link, err) => log.warn({ err, link }, 'background veth delete failed; reconcile removes the link'));
  // Before the socket listens: a Join that builds a bridge writes set entries the chains refer to.
  // A failure is not fatal (reconcile retries; Join retries the sets itself), only loud.
  await dataplane
    .ensureFirewall({ dryRun: false })
    .then((changes) => log.info({ changes }, 'firewall in place'))
    .catch((err: unknown) => log.error({ err }, 'firewall setup failed: traffic across vxnet bridges may be dropped'));
  // Before the socket listens too: Join adds entries to its sets. Its elements are re-synced
  // with the store by the start-up reconcile (entries of containers stopped while vxnet was away).
  await dataplane
    .ensureAntispoof({ dryRun: false })
    .then((changes) => log.info({ changes }, 'anti-spoofing table in place'))
    .catch((err: unknown) => log.error({ err }, 'anti-spoofing table setup failed: Join will fail until it can be written'));
  // Before the socket listens too: a Join waits for its endpoint to be in the policy sets.
  await policy.start().catch((err: unknown) => log.error({ err }, 'policy table setup failed: containers with rules or on isolated networks cannot join until it works'));
  // After the firewall is in place (the first check looks for vxnet's jump): the monitor's start
  // runs the first check, and every change outside vxnet's tables another.
  let monitor: { close(): void } | null = null;
  if (gate) {
    const liveGate = gate;
    try {
      monitor = dataplane.monitorRuleset(() => void liveGate.check());
    } catch (err) {
      // Not watched, a rule added later could go unseen: the redirect never starts.
      redirectLog.warn({ err }, '--fast-path auto: cannot watch the ruleset (nf_tables notifications); nothing is redirected');
    }
  }
  const ports = new PortPublisher({ store, keys, host: config.hostId, dataplane, places: driver, log: log.child({ mod: 'ports' }) });
  const docker = dockerClient(config.dockerHost);
  const names = namesOn
    ? new NameService({
        store,
        keys,
        host: config.hostId,
        dockerSocket: dockerSocketPath(config.dockerHost),
        registry: metrics.registry,
        log: log.child({ mod: 'names' }),
        upstreams: config.dnsUpstreams,
        portBase: config.dnsPort,
        dns: namesDns,
      })
    : null;
  const reconcileLog = log.child({ mod: 'reconcile' });
  const reconciles = new ReconcileHistory(
    async (dryRun) => {
      const result = await reconcile({ driver, ports, ipam, dataplane, docker, policy, host: config.hostId, log: reconcileLog, graceMs: config.reconcileGraceMs }, { dryRun });
      // A VXLAN device reconcile re-created is another device than its block redirects to: every
      // block is checked against its device (and only a replaced one rebuilt).
      if (!dryRun) void redirect?.sync();
      // Only while watched: a change the monitor lost is seen here at the latest.
      if (!dryRun && monitor) void gate?.check();
      return result;
    },
    metrics.observeReconcile,
  );
  metrics.setSources({ addressUsage: () => ipam.addressUsage(), programmedPeers: () => peers?.programmed() ?? [], publishedPorts: () => ports.counts(), antispoofDropped: () => dataplane.antispoofDropped(), policyDrops: () => policy.drops(), redirectEntries: () => redirect?.entries() ?? [], redirectActive: () => redirectStatus()?.state === 'redirecting' });
  // `redirect` always redirects; auto says what its gate decided; null: no redirect at all.
  const redirectStatus = (): RedirectStatus | null => (gate ? gate.status() : redirect ? { state: 'redirecting', rules: [] } : null);
  const status = async () => ({
    ...(await gatherStatus({
      store,
      keys,
      self: { host: config.hostId, vtep: vtep?.ip ?? null, store: config.store, version: VERSION },
      registered: peers !== null,
      peers,
      lastReconcile: () => reconciles.last(),
      ports: () => ports.published(),
    })),
    names: names?.status() ?? null,
    policy: policy.endpoints(),
    redirect: redirectStatus(),
  });
  const app = buildApp({
    driver,
    ipam,
    ports,
    log: log.child({ mod: 'server' }),
    scope: config.scope,
    reconcile: reconciles.runner('on-demand'),
    status,
    explainPolicy: (from, to, port, proto, family) => policy.explain(from, to, port, proto, family),
    observeCall: metrics.observeCall,
    // Activate can arrive as soon as the socket listens, before the first pass is set up.
    onActivate: () => onActivate(),
  });
  let onActivate = (): void => undefined;
  let metricsServer: MetricsServer | null = null;
  try {
    if (config.metricsAddr) metricsServer = await serveMetrics(metrics, config.metricsAddr, metricsLog);
    await listenOnSocket(app, config.socket, config.socketGroup);
  } catch (err) {
    await metricsServer?.close();
    records.close();
    await peers?.close();
    await store.close();
    throw err;
  }
  try {
    await names?.start();
  } catch (err) {
    log.warn({ err }, 'name service did not start; names across hosts are off');
  }
  log.info({ socket: config.socket, store: config.store, host: config.hostId, mtu: defaultMtu, maxMtu: mtu.max, vtep: vtep?.ip ?? null }, 'vxnet listening');
  const dockerdAnswers = async (): Promise<boolean> => (await docker.view([])) !== null;
  let pass = reconcileUntilDockerd(reconciles.runner('startup'), dockerdAnswers, reconcileLog);
  onActivate = () => {
    pass.stop();
    pass = reconcileUntilDockerd(reconciles.runner('dockerd-start'), dockerdAnswers, reconcileLog);
  };
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
      pass.stop();
      sweeper?.stop();
      await metricsServer?.close();
      await app.close();
      await names?.close();
      policy.close();
      monitor?.close();
      gate?.close();
      redirect?.close();
      driver.close();
      ipam.close();
      await ports.close();
      records.close();
      await peers?.close();
      await store.close();
      // Network removals drained it already; what is left goes at the next start's reconcile.
      await dataplane.closeReaper(2000);
      dataplane.closeRtnl();
      dataplane.closeNftElements();
      dataplane.closeConntrack();
    },
  };
}

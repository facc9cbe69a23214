// vxnet's names across hosts: container names, aliases and NAME.NETWORK of a vxnet network
// answer on every host of that network.
//
// Design (why this shape):
// - No plugin call carries names, so each host publishes its own containers' names from
//   dockerd's API and event stream (publisher.ts) as store records names/<lnet>/<EndpointID>;
//   every host watches names/ and endpoints/ into an in-memory NameTable (table.ts).
// - Docker's embedded resolver answers a name held by a local container with the local
//   addresses only and never forwards it: an alias shared across hosts, asked on a host holding
//   one of them, would get a partial answer. So vxnet goes first: right after a container starts
//   (publisher: dockerd's event stream, never inside Join), rules in the container's namespace
//   (container-redirect.ts, dataplane/netns-dns.ts) send its queries for 127.0.0.11:53 to
//   vxnet's "front" listener on the network's gateway (the anycast gateway is on every host's
//   bridge; port VXNET_DNS_PORT). vxnet answers the asking container's network's names (every
//   address, rotating) and sends everything else back into the container's namespace, to
//   Docker's resolver at the port Docker's own rule uses: Docker then resolves it exactly as
//   without vxnet (its local records, --dns, its choice of upstream, loopback resolvers too).
//   This also makes names across hosts work on hosts whose resolver is on loopback.
// - Before the namespace rules are in (a few ms after start; or when placing them failed),
//   Docker answers first and forwards names it does not know to the container's external
//   servers through vxnet's bridge: vxnet intercepts exactly those on the host (nat REDIRECT,
//   dataplane/dns-intercept.ts, one local port per upstream: server.ts), answers the network's
//   names and forwards the rest byte for byte to the upstream the container was talking to.
// - Survives a driver restart: the rules point at fixed ports, the names are in the store, the
//   publisher's resync re-checks every running container. A clean stop removes both kinds of
//   rules (a stopped vxnet must not take the containers' resolution with it); after SIGKILL
//   queries fail until vxnet is back.
// - Limits: IPv4 only (gateway, upstreams). A container on several vxnet networks is redirected
//   on its first one (names of the others come from Docker: local containers only). Swarm
//   (VXNET_SCOPE=global) keeps its own names: the service is off there.
import type { Registry } from 'prom-client';
import type { Logger } from '../log';
import type { Store, WatchEvent, Watcher } from '../store/types';
import type { Keys } from '../store/json';
import { decodeEndpoint, mayBeHosts } from '../network/records';
import { removeDnsIntercept, syncDnsIntercept } from '../dataplane/dns-intercept';
import { nameMetrics, NameMetrics } from './metrics';
import { namesPrefix, NameRecord, splitKey } from './records';
import { NamePublisher } from './publisher';
import { ServerDeps, UpstreamListener } from './server';
import { SpareSockets } from './forwarder';
import { ContainerRedirects } from './container-redirect';
import { NameTable, ServedName } from './table';
import { AnswerCache } from './answer-cache';
import { configuredUpstreams, discoverUpstreams, interceptable } from './upstreams';

export type { ServedName } from './table';

export interface NameServiceDeps {
  store: Store;
  keys: Keys;
  host: string;
  dockerSocket: string;
  registry: Registry;
  log: Logger;
  /** VXNET_DNS_UPSTREAMS: servers to intercept besides the ones found on the host. */
  upstreams: string[];
  /** VXNET_DNS_PORT: the front port (on the gateways); the upstream ports follow it. */
  portBase: number;
  /**
   * Answer names (front listener, redirects, interception). false on a single host: Docker's own
   * resolver has every name there, and only the records are wanted — the names, aliases and
   * labels that policy rules name (src/policy).
   */
  dns?: boolean;
}

export interface NamesStatus {
  upstreams: Array<{ upstream: string; port: number }>;
  served: ServedName[];
}

export class NameService {
  readonly table: NameTable;
  /** Shared by the front and the upstream listeners: one set of encoded answers per table. */
  private readonly answers: AnswerCache;
  private readonly metrics: NameMetrics;
  private readonly listeners = new Map<string, UpstreamListener>();
  private readonly publisher: NamePublisher;
  private readonly redirects: ContainerRedirects;
  private front: UpstreamListener | null = null;
  private readonly spares = new SpareSockets();
  /** What Docker's resolver uses here for containers without --dns (read at start). */
  private hostUpstreams: string[] = [];
  private watchers: Watcher[] = [];
  private syncing: Promise<void> = Promise.resolve();
  private closed = false;

  private get dnsOn(): boolean {
    return this.deps.dns !== false;
  }

  constructor(private readonly deps: NameServiceDeps) {
    this.table = new NameTable(deps.host);
    this.answers = new AnswerCache(this.table);
    this.metrics = nameMetrics(deps.registry);
    this.redirects = new ContainerRedirects(deps.portBase, deps.log, () => this.hostUpstreams);
    this.publisher = new NamePublisher({
      store: deps.store,
      keys: deps.keys,
      host: deps.host,
      table: this.table,
      socketPath: deps.dockerSocket,
      log: deps.log,
      onContainerDns: (servers) => {
        if (this.dnsOn) void this.addUpstreams(servers);
      },
      onContainer: (c) => {
        if (this.front) void this.redirects.ensure(c);
      },
      onContainerGone: (id) => this.redirects.forget(id),
    });
  }

  async start(): Promise<void> {
    const rev = await this.load();
    const { store, keys } = this.deps;
    for (const prefix of [namesPrefix(keys), keys.endpoints()]) {
      this.watchers.push(store.watch(prefix, rev, { onEvents: (evs) => this.onEvents(evs), onResync: () => void this.load().catch((err: unknown) => this.deps.log.warn({ err }, 'name table reload failed')) }));
    }
    if (this.dnsOn) {
      try {
        this.front = await UpstreamListener.openFront(this.deps.portBase, this.listenerDeps());
      } catch (err) {
        this.deps.log.warn({ err, port: this.deps.portBase }, 'could not listen for the containers\' queries; names left to Docker and its forwarded queries');
      }
      this.hostUpstreams = configuredUpstreams();
      await this.addUpstreams(discoverUpstreams({ configured: this.deps.upstreams }));
    }
    this.publisher.start();
  }

  private listenerDeps(): ServerDeps {
    return { table: this.table, metrics: this.metrics, log: this.deps.log, spares: this.spares, direct: (ip) => this.redirects.directFor(ip), answers: this.answers };
  }

  status(): NamesStatus {
    const all = this.front ? [this.front, ...this.listeners.values()] : [...this.listeners.values()];
    return {
      upstreams: all.map((l) => ({ upstream: l.upstream, port: l.port })),
      served: this.table.servedBy(this.deps.host),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.publisher.close();
    for (const w of this.watchers) w.close();
    await this.syncing;
    await this.redirects.close();
    if (this.dnsOn) {
      try {
        await removeDnsIntercept();
      } catch (err) {
        this.deps.log.warn({ err }, 'could not remove the DNS redirect');
      }
    }
    await Promise.all([...this.listeners.values(), ...(this.front ? [this.front] : [])].map((l) => l.close()));
    this.spares.close();
  }

  private async load(): Promise<number> {
    const { store, keys } = this.deps;
    const rev = await store.revision();
    const names = await store.list(namesPrefix(keys));
    const endpoints = await store.list(keys.endpoints());
    this.table.clear();
    this.onEvents([...names, ...endpoints].map((kv) => ({ type: 'put', kv }) as WatchEvent));
    return rev;
  }

  private onEvents(events: WatchEvent[]): void {
    const { keys, log } = this.deps;
    const np = namesPrefix(keys);
    const ep = keys.endpoints();
    const mine = mayBeHosts(this.deps.host);
    for (const ev of events) {
      const key = ev.type === 'put' ? ev.kv.key : ev.key;
      try {
        const names = splitKey(key, np);
        const endpoint = names ? null : splitKey(key, ep);
        if (names) {
          if (ev.type === 'put') this.table.putName(names[0], names[1], JSON.parse(ev.kv.value) as NameRecord);
          else this.table.deleteName(names[0], names[1]);
        } else if (endpoint) {
          // Of another host's endpoint only its existence matters here.
          if (ev.type === 'delete') this.table.deleteEndpoint(endpoint[0], endpoint[1]);
          else if (!mine(ev.kv.value)) this.table.putRemoteEndpoint(endpoint[0], endpoint[1]);
          else this.table.putEndpoint(endpoint[0], endpoint[1], decodeEndpoint(ev.kv));
        }
      } catch (err) {
        log.warn({ err, key }, 'bad name event skipped');
      }
    }
  }

  /** Opens a listener per new upstream and rewrites the redirect rules (one change at a time). */
  private addUpstreams(servers: string[]): Promise<void> {
    const fresh = servers.filter((s) => interceptable(s) && !this.listeners.has(s));
    if (fresh.length === 0) return this.syncing;
    this.syncing = this.syncing.then(async () => {
      if (this.closed) return;
      let changed = false;
      for (const upstream of fresh) {
        if (this.listeners.has(upstream)) continue;
        const used = new Set([...this.listeners.values()].map((l) => l.port));
        let port = this.deps.portBase + 1;
        while (used.has(port)) port++;
        try {
          this.listeners.set(upstream, await UpstreamListener.open(upstream, port, this.listenerDeps()));
          changed = true;
        } catch (err) {
          this.deps.log.warn({ err, upstream, port }, 'could not listen for DNS queries to this upstream');
        }
      }
      if (!changed) return;
      try {
        await syncDnsIntercept([...this.listeners.values()].map((l) => ({ upstream: l.upstream, port: l.port })));
        this.deps.log.info({ upstreams: [...this.listeners.keys()] }, 'dns interception set');
      } catch (err) {
        this.deps.log.warn({ err }, 'could not set the DNS redirect');
      }
    });
    return this.syncing;
  }
}

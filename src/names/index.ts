// vxnet's names across hosts: container names, aliases and NAME.NETWORK of a vxnet network
// answer on every host of that network.
//
// Design (why this shape):
// - No plugin call carries names, so each host publishes its own containers' names from
//   dockerd's API and event stream (publisher.ts) as store records names/<lnet>/<EndpointID>;
//   every host watches names/ and endpoints/ into an in-memory NameTable (table.ts).
// - Docker's embedded resolver answers local names itself and forwards the rest to the
//   container's external servers from the container's namespace, i.e. through vxnet's bridge.
//   vxnet intercepts exactly those queries on the host (nat REDIRECT, dataplane/dns-intercept.ts),
//   answers the asking container's network's names, and forwards everything else byte for byte
//   to the upstream the container was talking to (one local port per upstream: server.ts).
//   This needs no change inside containers and nothing at Join (which must not wait on
//   dockerd), survives a driver restart (the rules point at fixed ports; the names are in the
//   store), and leaves Docker's own answers first, so local names behave exactly as before.
// - Limits: an alias shared across hosts, asked on a host that holds one of its containers, is
//   answered by Docker with the local addresses only (Docker never forwards it). A host whose
//   only resolver is on loopback (127.0.0.53) gets no interception: Docker queries it from the
//   host's namespace (`vxnet doctor` says so and what to set). IPv4 upstreams only. Swarm
//   (VXNET_SCOPE=global) keeps its own names: the service is off there.
import type { Registry } from 'prom-client';
import type { Logger } from '../log';
import type { Store, WatchEvent, Watcher } from '../store/types';
import type { Keys } from '../store/json';
import type { EndpointRecord } from '../network/records';
import { removeDnsIntercept, syncDnsIntercept } from '../dataplane/dns-intercept';
import { nameMetrics, NameMetrics } from './metrics';
import { namesPrefix, NameRecord, splitKey } from './records';
import { NamePublisher } from './publisher';
import { UpstreamListener } from './server';
import { NameTable, ServedName } from './table';
import { discoverUpstreams, interceptable } from './upstreams';

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
  /** VXNET_DNS_PORT: the first of the local ports, one per upstream. */
  portBase: number;
}

export interface NamesStatus {
  upstreams: Array<{ upstream: string; port: number }>;
  served: ServedName[];
}

export class NameService {
  readonly table = new NameTable();
  private readonly metrics: NameMetrics;
  private readonly listeners = new Map<string, UpstreamListener>();
  private readonly publisher: NamePublisher;
  private watchers: Watcher[] = [];
  private syncing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly deps: NameServiceDeps) {
    this.metrics = nameMetrics(deps.registry);
    this.publisher = new NamePublisher({
      store: deps.store,
      keys: deps.keys,
      host: deps.host,
      table: this.table,
      socketPath: deps.dockerSocket,
      log: deps.log,
      onContainerDns: (servers) => void this.addUpstreams(servers),
    });
  }

  async start(): Promise<void> {
    const rev = await this.load();
    const { store, keys } = this.deps;
    for (const prefix of [namesPrefix(keys), keys.endpoints()]) {
      this.watchers.push(store.watch(prefix, rev, { onEvents: (evs) => this.onEvents(evs), onResync: () => void this.load().catch((err: unknown) => this.deps.log.warn({ err }, 'name table reload failed')) }));
    }
    await this.addUpstreams(discoverUpstreams({ configured: this.deps.upstreams }));
    this.publisher.start();
  }

  status(): NamesStatus {
    return {
      upstreams: [...this.listeners.values()].map((l) => ({ upstream: l.upstream, port: l.port })),
      served: this.table.servedBy(this.deps.host),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.publisher.close();
    for (const w of this.watchers) w.close();
    await this.syncing;
    try {
      await removeDnsIntercept();
    } catch (err) {
      this.deps.log.warn({ err }, 'could not remove the DNS redirect');
    }
    await Promise.all([...this.listeners.values()].map((l) => l.close()));
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
    for (const ev of events) {
      const key = ev.type === 'put' ? ev.kv.key : ev.key;
      try {
        const names = splitKey(key, np);
        const endpoint = names ? null : splitKey(key, ep);
        if (names) {
          if (ev.type === 'put') this.table.putName(names[0], names[1], JSON.parse(ev.kv.value) as NameRecord);
          else this.table.deleteName(names[0], names[1]);
        } else if (endpoint) {
          if (ev.type === 'put') this.table.putEndpoint(endpoint[0], endpoint[1], JSON.parse(ev.kv.value) as EndpointRecord);
          else this.table.deleteEndpoint(endpoint[0], endpoint[1]);
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
        let port = this.deps.portBase;
        while (used.has(port)) port++;
        try {
          this.listeners.set(upstream, await UpstreamListener.open(upstream, port, { table: this.table, host: this.deps.host, metrics: this.metrics, log: this.deps.log }));
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

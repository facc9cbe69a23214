// Publishes the names of this host's containers on vxnet networks into the store, from
// dockerd's API: no plugin call carries a name. Driven by Docker's event stream (container
// start/die/destroy/rename, network connect/disconnect), never from inside a plugin handler
// (a Join waits on dockerd, which may hold the container's lock an inspect needs).
//
// A `die` deletes the container's records at once, without asking dockerd anything: that is
// what makes a stopped container vanish on every host within a store round trip. Everything
// else re-reads the container and rewrites its records. Work is serialised per container, so a
// slow inspect after `start` cannot overwrite the deletion of a `die` that followed it.
//
// The records carry the container's labels too: network policy (src/policy) reads its rules
// (vxnet.allow, vxnet.egress) and label:K=V sources from them, so one inspect serves both.
//
// After (re)connecting to the event stream, a resync publishes every running container and
// deletes this host's records of containers that are no longer running (events missed while
// vxnet or dockerd was down).
import { existsSync } from 'node:fs';
import type Docker from 'dockerode';
import type { Logger } from '../log';
import type { Store } from '../store/types';
import { getJson, Keys, updateJson } from '../store/json';
import type { DockerNetworkRecord, NetworkRecord } from '../network/records';
import { KeyedLock } from '../network/keyed-lock';
import { nameKey, NameRecord, namesPrefix, normalName } from './records';
import type { NameTable } from './table';
import type { RunningContainer } from './container-redirect';
import { newDocker } from '../docker/docker-view';

/** Wait before reconnecting to dockerd's event stream (dockerd restarting, not up yet). */
const RECONNECT_MS = 1000;
const INSPECT_TIMEOUT_MS = 5000;

export interface PublisherDeps {
  store: Store;
  keys: Keys;
  host: string;
  table: NameTable;
  socketPath: string;
  log: Logger;
  /** A container's own `--dns` servers, seen at start: more upstreams to intercept. */
  onContainerDns(servers: string[]): void;
  /** A running container with vxnet networks (after its records are written), or gone. */
  onContainer(c: RunningContainer): void;
  onContainerGone(id: string): void;
}

interface DockerEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

interface InspectNetwork {
  NetworkID?: string;
  EndpointID?: string;
  IPAddress?: string;
  Gateway?: string;
  GlobalIPv6Address?: string;
  Aliases?: string[] | null;
  DNSNames?: string[] | null;
}

interface Inspect {
  Id: string;
  Name: string;
  State?: { Running?: boolean };
  Config?: { Labels?: Record<string, string> | null };
  HostConfig?: { Dns?: string[] | null; Links?: string[] | null };
  NetworkSettings?: { SandboxKey?: string; Networks?: Record<string, InspectNetwork> };
}

export class NamePublisher {
  /** Made at the first connect to a socket that exists (docker-view.ts newDocker: why). */
  private clients: { docker: Docker; events: Docker } | null = null;
  private readonly lock = new KeyedLock();
  /** Keys this process wrote per container: the watch may not have fed them to the table yet. */
  private readonly written = new Map<string, Set<string>>();
  private stream: NodeJS.ReadableStream | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly deps: PublisherDeps) {}

  private get docker(): Docker {
    return this.dockerClients().docker;
  }

  private dockerClients(): { docker: Docker; events: Docker } {
    this.clients ??= {
      docker: newDocker({ socketPath: this.deps.socketPath, timeout: INSPECT_TIMEOUT_MS }),
      // No timeout on the event stream: it is idle for as long as nothing happens.
      events: newDocker({ socketPath: this.deps.socketPath }),
    };
    return this.clients;
  }

  start(): void {
    void this.connect();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    (this.stream as unknown as { destroy?: () => void } | null)?.destroy?.();
  }

  private retry(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, RECONNECT_MS);
    this.timer.unref();
  }

  private async connect(): Promise<void> {
    const { log } = this.deps;
    // No socket (yet): the attempt could only fail; try again later, as after a failure.
    if (!this.clients && !existsSync(this.deps.socketPath)) return this.retry();
    try {
      const stream = (await this.dockerClients().events.getEvents({
        filters: { type: ['container', 'network'], event: ['start', 'die', 'destroy', 'rename', 'connect', 'disconnect'] },
      })) as NodeJS.ReadableStream;
      if (this.closed) return void (stream as unknown as { destroy(): void }).destroy();
      this.stream = stream;
      let buf = '';
      stream.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) this.onEvent(line);
        }
      });
      const ended = (): void => {
        if (this.stream !== stream) return;
        this.stream = null;
        log.info('docker event stream ended; reconnecting');
        this.retry();
      };
      stream.on('end', ended);
      stream.on('error', ended);
      stream.on('close', ended);
      await this.resync();
    } catch (err) {
      log.debug({ err }, 'docker event stream or resync failed; retrying');
      // Start over with a fresh stream and a fresh resync.
      const stale = this.stream as unknown as { destroy?: () => void } | null;
      this.stream = null;
      stale?.destroy?.();
      this.retry();
    }
  }

  private onEvent(line: string): void {
    let ev: DockerEvent;
    try {
      ev = JSON.parse(line) as DockerEvent;
    } catch {
      return;
    }
    const cid = ev.Type === 'network' ? ev.Actor?.Attributes?.container : ev.Actor?.ID;
    if (!cid) return;
    const work = ev.Type === 'container' && (ev.Action === 'die' || ev.Action === 'destroy') ? this.unpublish(cid) : this.publish(cid);
    // A store outage must not take the driver down: the next event or resync writes again.
    work.catch((err: unknown) => this.deps.log.warn({ err, container: cid, action: ev.Action }, 'could not update name records'));
  }

  /**
   * Every running container published, then stale records deleted: this host's records of
   * containers not running, and anyone's record whose endpoint record is gone (a host that died
   * and never came back; its endpoints were released by the dead-host sweep). A name record is
   * written only after its endpoint record exists (CreateEndpoint precedes the start event).
   */
  async resync(): Promise<void> {
    const { store, keys, host, log } = this.deps;
    for (const id of await this.runningIds()) await this.publish(id);
    const prefix = namesPrefix(keys);
    const names = await store.list(prefix);
    const endpoints = new Set((await store.list(keys.endpoints())).map((kv) => kv.key.slice(keys.endpoints().length)));
    // Which containers run, asked again after the names were listed. The list taken before the
    // publishing above misses a container that started since: its start event published it,
    // and judging its record by that older list deleted it (its endpoint then stayed "pending"
    // for the policy engine, closed to inbound, for as long as it ran: seen in the crash-churn
    // test). A record in `names` was written after its container started, so before this list.
    const alive = new Set(await this.runningIds());
    for (const kv of names) {
      let rec: NameRecord;
      try {
        rec = JSON.parse(kv.value) as NameRecord;
      } catch {
        continue;
      }
      const mineStopped = rec.host === host && !alive.has(rec.containerId);
      const orphan = !endpoints.has(kv.key.slice(prefix.length));
      if (!mineStopped && !orphan) continue;
      await store.delete(kv.key, kv.modRevision);
      log.info({ key: kv.key, orphan }, 'stale name record removed');
    }
  }

  private async runningIds(): Promise<string[]> {
    return (await this.docker.listContainers({ filters: { status: ['running'] } })).map((c) => c.Id);
  }

  private keysOf(cid: string): Set<string> {
    const { keys, host, table } = this.deps;
    const out = new Set(this.written.get(cid) ?? []);
    for (const [lnet, ep] of table.recordsOf(host, cid)) out.add(nameKey(keys, lnet, ep));
    return out;
  }

  private unpublish(cid: string): Promise<void> {
    return this.lock.run(cid, async () => {
      const { store, log } = this.deps;
      for (const key of this.keysOf(cid)) {
        try {
          await store.delete(key);
        } catch (err) {
          log.warn({ err, key }, 'could not delete name record');
        }
      }
      this.written.delete(cid);
      this.deps.onContainerGone(cid);
    });
  }

  private publish(cid: string): Promise<void> {
    return this.lock.run(cid, async () => {
      const { store, keys, host, log } = this.deps;
      let info: Inspect;
      try {
        info = (await this.docker.getContainer(cid).inspect()) as unknown as Inspect;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 404) log.warn({ err, container: cid }, 'could not inspect container');
        info = { Id: cid, Name: '' };
      }
      const want = new Map<string, NameRecord>();
      const running: RunningContainer = { id: info.Id, sandboxKey: info.NetworkSettings?.SandboxKey ?? '', networks: [], dns: [], dockerOnly: true };
      if (info.State?.Running) {
        const dns = info.HostConfig?.Dns ?? [];
        running.dns = dns;
        if (dns.length) this.deps.onContainerDns(dns);
        // Docker's resolver knows names vxnet does not only through another network of the
        // container or a --link; without those (and with egress), vxnet may pass outside names
        // straight to the upstream (container-redirect.ts says when).
        const attached = Object.keys(info.NetworkSettings?.Networks ?? {}).length;
        let internal = false;
        const name = normalName(info.Name.replace(/^\//, ''));
        for (const [network, n] of Object.entries(info.NetworkSettings?.Networks ?? {})) {
          if (!n.NetworkID || !n.EndpointID) continue;
          const dnet = await getJson<DockerNetworkRecord>(store, keys.dockerNetwork(host, n.NetworkID));
          if (!dnet) continue; // not a vxnet network
          if (n.Gateway && n.IPAddress) running.networks.push({ gateway: n.Gateway, ip: n.IPAddress });
          internal ||= (await getJson<NetworkRecord>(store, keys.network(dnet.value.lnet)))?.value.internal ?? true;
          const names = [...new Set([name, ...(n.DNSNames ?? n.Aliases ?? []).map(normalName)])].filter(Boolean);
          want.set(nameKey(keys, dnet.value.lnet, n.EndpointID), {
            host,
            containerId: info.Id,
            network: network,
            names,
            ipv4: n.IPAddress || null,
            ipv6: n.GlobalIPv6Address || null,
            // Policy reads them (src/policy): rules as labels, and label:K=V sources.
            labels: info.Config?.Labels ?? {},
          });
        }
        running.dockerOnly = attached !== 1 || internal || (info.HostConfig?.Links ?? []).length > 0;
      }
      for (const key of this.keysOf(cid)) if (!want.has(key)) await store.delete(key);
      this.written.set(cid, new Set(want.keys()));
      for (const [key, rec] of want) {
        await updateJson<NameRecord>(store, key, (cur) => (cur && JSON.stringify(cur) === JSON.stringify(rec) ? undefined : rec));
      }
      if (want.size === 0) this.written.delete(cid);
      if (running.networks.length) this.deps.onContainer(running);
    });
  }
}

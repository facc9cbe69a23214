// Published ports (`docker run -p/-P`) of vxnet endpoints on this host: ProgramExternalConnectivity
// chooses and reserves host ports, records them and adds their NAT rules; Revoke, Leave and
// DeleteEndpoint undo that. All port work on a host is serialised in-process: choosing a free port
// and reserving it must not interleave with another container doing the same.
//
// Order of a Program, and why: reserve sockets (the kernel says whether a port is free) → record
// in the store → NAT rules. A crash before the record leaves nothing (sockets die with the
// process); after it, reconcile finds the record and re-creates rules and reservations, or
// removes them when the endpoint is gone. A failure at any step undoes the earlier ones, so a
// refused `docker run` leaves no rule, reservation or record.
import { vxError } from '../errors';
import type { Logger } from '../log';
import type { Store } from '../store/types';
import { getJson, listJson, Keys } from '../store/json';
import { KeyedLock } from '../network/keyed-lock';
import type { PortsPlan } from '../network/reconcile';
import type { PortRules } from '../dataplane/portmap';
import type { Reservation, ReserveProto } from '../dataplane/port-socket';
import { hostPortText, PortBinding, PortProto, portRequests, PortRequest, requestText } from './bindings';
import { candidatePorts, parsePortRange } from './allocate';
import type { PortRecord } from './records';

/** What ports need from the kernel (src/dataplane implements it; unit tests fake it). */
export interface PortDataplane {
  ensurePortChains(): Promise<void>;
  addPortRules(r: PortRules): Promise<void>;
  removePortRules(r: PortRules): Promise<void>;
  removePortRulesOf(endpointIds: string[]): Promise<void>;
  listPortRuleOwners(): Promise<Map<string, number>>;
  enableRouteLocalnet(bridge: string): Promise<void>;
  enableHairpin(veth: string): Promise<void>;
  reservePort(proto: ReserveProto, ip: string, port: number): Promise<Reservation | null>;
  readEphemeralRange(): string;
}

/** Where an endpoint lives, from the network domain. Rejects for an endpoint unknown here. */
export interface EndpointPlaces {
  endpointPlace(networkId: string, endpointId: string): Promise<EndpointPlace>;
}

export interface EndpointPlace {
  lnet: string;
  containerIp: string | null;
  bridge: string;
  subnet: string | null;
  /** The host end of the container's veth (its bridge port). */
  veth: string;
}

export interface PortPublisherDeps {
  store: Store;
  keys: Keys;
  host: string;
  dataplane: PortDataplane;
  places: EndpointPlaces;
  log: Logger;
}

/** One published port as `vxnet status` shows it. */
export interface PublishedPort extends PortBinding {
  endpointId: string;
  networkId: string;
  network: string;
  containerIp: string;
  /** false: the driver does not hold the host port's socket (another process took it meanwhile). */
  reserved: boolean;
}


interface Held {
  rec: PortRecord;
  /** One per binding, null where the port could not be reserved again after a restart. */
  reservations: Array<Reservation | null>;
}

const ALL = 'ports';

export class PortPublisher {
  private readonly lock = new KeyedLock();
  private readonly held = new Map<string, Held>();
  /** Where the next search for a free ephemeral port starts, per protocol. */
  private readonly cursor: Record<PortProto, number> = { tcp: 0, udp: 0 };
  private chainsReady = false;
  /**
   * Endpoints of this host that have a ports record, or null until first listed. Only this
   * host's publisher writes ports/<host>/, so after one list the set answers "is there a
   * record?" without a store read: most endpoints publish nothing, and Revoke, Leave and
   * DeleteEndpoint each asked the store that for every container. Read and changed under the lock.
   */
  private recorded: Set<string> | null = null;

  constructor(private readonly deps: PortPublisherDeps) {}

  /** ProgramExternalConnectivity: publish what Options asks (nothing: unpublish what there was). */
  async program(networkId: string, endpointId: string, options: Record<string, unknown> | null | undefined): Promise<PortBinding[]> {
    const requests = portRequests(options); // bad input is refused before anything changes
    const place = await this.deps.places.endpointPlace(networkId, endpointId);
    return this.lock.run(ALL, async () => {
      const key = this.deps.keys.port(this.deps.host, endpointId);
      const existing = (await this.hasRecord(endpointId)) ? await getJson<PortRecord>(this.deps.store, key) : null;
      if (existing && existing.value.networkId === networkId && JSON.stringify(existing.value.requests) === JSON.stringify(requests)) {
        await this.ensureLive(endpointId, existing.value);
        return existing.value.bindings;
      }
      if (existing) await this.unpublish(endpointId, existing.value);
      if (requests.length === 0) return [];
      if (!place.containerIp || !place.subnet) {
        throw vxError('VXNET_ERR_BAD_REQUEST', `endpoint ${endpointId.slice(0, 12)} has no IPv4 address: vxnet publishes ports on IPv4 only`);
      }
      const reservations: Reservation[] = [];
      let recorded = false;
      try {
        const bindings: PortBinding[] = [];
        for (const req of requests) {
          const { binding, reservation } = await this.allocate(req, bindings);
          bindings.push(binding);
          reservations.push(reservation);
        }
        const rec: PortRecord = { networkId, lnet: place.lnet, containerIp: place.containerIp, bridge: place.bridge, subnet: place.subnet, veth: place.veth, requests, bindings, at: Date.now() };
        if (!(await this.deps.store.compareAndSwap(key, JSON.stringify(rec), 0))) {
          throw vxError('VXNET_ERR_STORE_CONFLICT', `ports of endpoint ${endpointId.slice(0, 12)} were recorded concurrently`);
        }
        recorded = true;
        this.recorded?.add(endpointId);
        await this.ensureChains();
        await this.prepareLinks(rec);
        await this.deps.dataplane.addPortRules(rules(endpointId, rec));
        this.held.set(endpointId, { rec, reservations });
        this.deps.log.info({ endpoint: endpointId.slice(0, 12), ports: bindings.map((b) => `${hostPortText(b)}->${rec.containerIp}:${b.containerPort}`) }, 'ports published');
        return bindings;
      } catch (err) {
        await Promise.all(reservations.map((r) => r.close()));
        if (recorded) {
          await this.deps.store.delete(key);
          this.recorded?.delete(endpointId);
        }
        throw err;
      }
    });
  }

  /** Revoke, Leave, DeleteEndpoint: the endpoint's ports go (idempotent, cheap when it has none). */
  async revoke(endpointId: string): Promise<void> {
    await this.lock.run(ALL, async () => {
      const cur =
        this.held.get(endpointId)?.rec ??
        ((await this.hasRecord(endpointId)) ? (await getJson<PortRecord>(this.deps.store, this.deps.keys.port(this.deps.host, endpointId)))?.value : undefined);
      if (cur) await this.unpublish(endpointId, cur);
    });
  }

  /** Every published port of this host, from the store, and whether its socket is held. */
  async published(): Promise<PublishedPort[]> {
    const out: PublishedPort[] = [];
    for (const { key, value: rec } of await listJson<PortRecord>(this.deps.store, this.deps.keys.ports(this.deps.host))) {
      const endpointId = key.slice(this.deps.keys.ports(this.deps.host).length);
      const held = this.held.get(endpointId);
      rec.bindings.forEach((b, i) => {
        out.push({ ...b, endpointId, networkId: rec.networkId, network: rec.lnet, containerIp: rec.containerIp, reserved: held?.reservations[i] != null });
      });
    }
    return out;
  }

  /**
   * Reconcile: records of endpoints that are gone lose their rules and records; live ones get
   * their rules and reservations back (after a restart or a flushed nat table); rules that no
   * record names are removed. `readLive`: the endpoints this host's store still has, read after
   * the records: an endpoint created and published since the caller's pass began (a docker run
   * dockerd retried through a restart) has its port record only if its endpoint record came first.
   */
  async reconcile(readLive: () => Promise<Set<string>>, dryRun: boolean): Promise<PortsPlan> {
    return this.lock.run(ALL, async () => {
      const plan: PortsPlan = { stalePorts: [], repairPorts: [], orphanPortRules: [] };
      const prefix = this.deps.keys.ports(this.deps.host);
      const records = new Map((await listJson<PortRecord>(this.deps.store, prefix)).map((r) => [r.key.slice(prefix.length), r.value] as [string, PortRecord]));
      this.recorded = new Set(records.keys());
      const liveEndpoints = await readLive();
      if (records.size > 0 && !dryRun) await this.ensureChains(true);
      const owners = await this.deps.dataplane.listPortRuleOwners();
      for (const [endpointId, rec] of records) {
        const label = `${endpointId.slice(0, 12)} (${rec.bindings.map(hostPortText).join(' ')})`;
        if (!liveEndpoints.has(endpointId)) {
          plan.stalePorts.push(label);
          if (!dryRun) await this.unpublish(endpointId, rec);
          continue;
        }
        // A bridge or veth rebuilt since (reconcile's own repair, a re-attached port) lost its flags.
        if (!dryRun) await this.prepareLinks(rec).catch((err: unknown) => this.deps.log.warn({ err, endpoint: endpointId.slice(0, 12) }, 'links of a published endpoint not prepared'));
        const rulesOk = owners.get(endpointId) === rec.bindings.length + 1;
        const held = this.held.get(endpointId);
        const socketsOk = held !== undefined && held.reservations.every((r) => r !== null);
        if (rulesOk && socketsOk) continue;
        plan.repairPorts.push(label);
        if (!dryRun) await this.repair(endpointId, rec, rulesOk);
      }
      const orphans = [...owners.keys()].filter((id) => !records.has(id));
      for (const id of orphans) plan.orphanPortRules.push(id.slice(0, 12));
      if (!dryRun && orphans.length > 0) await this.deps.dataplane.removePortRulesOf(orphans);
      return plan;
    });
  }

  /** Number of published ports per protocol held in memory (metrics; read at scrape). */
  counts(): Record<PortProto, number> {
    const n: Record<PortProto, number> = { tcp: 0, udp: 0 };
    for (const h of this.held.values()) for (const b of h.rec.bindings) n[b.proto]++;
    return n;
  }

  /** Closes the reservation sockets (the rules stay: the kernel keeps serving until reconcile). */
  async close(): Promise<void> {
    for (const h of this.held.values()) await Promise.all(h.reservations.map((r) => r?.close()));
    this.held.clear();
  }

  private async ensureLive(endpointId: string, rec: PortRecord): Promise<void> {
    await this.prepareLinks(rec);
    const owners = await this.deps.dataplane.listPortRuleOwners();
    const rulesOk = owners.get(endpointId) === rec.bindings.length + 1;
    const held = this.held.get(endpointId);
    if (!rulesOk || !held || held.reservations.some((r) => r === null)) await this.repair(endpointId, rec, rulesOk);
  }

  private async repair(endpointId: string, rec: PortRecord, rulesOk: boolean): Promise<void> {
    const held = this.held.get(endpointId) ?? { rec, reservations: rec.bindings.map(() => null) };
    for (const [i, b] of rec.bindings.entries()) {
      if (held.reservations[i]) continue;
      held.reservations[i] = await this.deps.dataplane.reservePort(b.proto, b.hostIp, b.hostPort).catch(() => null);
      if (!held.reservations[i]) this.deps.log.warn({ endpoint: endpointId.slice(0, 12), port: hostPortText(b) }, 'host port of a published binding is held by another process');
    }
    this.held.set(endpointId, held);
    if (rulesOk) return;
    await this.ensureChains();
    await this.deps.dataplane.removePortRulesOf([endpointId]);
    await this.deps.dataplane.addPortRules(rules(endpointId, rec));
  }

  private async unpublish(endpointId: string, rec: PortRecord): Promise<void> {
    await this.deps.dataplane.removePortRules(rules(endpointId, rec));
    const held = this.held.get(endpointId);
    this.held.delete(endpointId);
    if (held) await Promise.all(held.reservations.map((r) => r?.close()));
    await this.deps.store.delete(this.deps.keys.port(this.deps.host, endpointId));
    this.recorded?.delete(endpointId);
    this.deps.log.info({ endpoint: endpointId.slice(0, 12), ports: rec.bindings.map(hostPortText) }, 'ports unpublished');
  }

  /** Whether the store has a ports record of this endpoint (lists them once; under the lock). */
  private async hasRecord(endpointId: string): Promise<boolean> {
    if (this.recorded === null) {
      const prefix = this.deps.keys.ports(this.deps.host);
      this.recorded = new Set((await this.deps.store.list(prefix)).map((kv) => kv.key.slice(prefix.length)));
    }
    return this.recorded.has(endpointId);
  }

  /** 127.0.0.1 out of the bridge (route_localnet) and back to the container itself (hairpin). */
  private async prepareLinks(rec: PortRecord): Promise<void> {
    await this.deps.dataplane.enableRouteLocalnet(rec.bridge);
    await this.deps.dataplane.enableHairpin(rec.veth);
  }

  private async ensureChains(force = false): Promise<void> {
    if (this.chainsReady && !force) return;
    await this.deps.dataplane.ensurePortChains();
    this.chainsReady = true;
  }

  /** The first candidate port the kernel lets vxnet bind. */
  private async allocate(req: PortRequest, pending: PortBinding[]): Promise<{ binding: PortBinding; reservation: Reservation }> {
    const held = [...pending];
    for (const h of this.held.values()) held.push(...h.rec.bindings);
    const ephemeral = parsePortRange(this.deps.dataplane.readEphemeralRange());
    for (const port of candidatePorts(req, ephemeral, this.cursor[req.proto], held)) {
      const reservation = await this.deps.dataplane.reservePort(req.proto, req.hostIp, port);
      if (!reservation) continue;
      if (req.hostPort === 0) this.cursor[req.proto] = port + 1;
      return { binding: { proto: req.proto, hostIp: req.hostIp, hostPort: port, containerPort: req.containerPort }, reservation };
    }
    if (req.hostPort === 0) {
      throw vxError('VXNET_ERR_PORTS_EXHAUSTED', `no free host port left for ${requestText(req)} in the ephemeral range ${ephemeral.min}-${ephemeral.max}`);
    }
    if (req.hostPort === req.hostPortEnd) {
      throw vxError('VXNET_ERR_PORT_IN_USE', `host port ${req.hostPort}/${req.proto} on ${req.hostIp} is already in use (asked: ${requestText(req)})`);
    }
    throw vxError('VXNET_ERR_PORT_IN_USE', `every host port of ${req.hostPort}-${req.hostPortEnd}/${req.proto} on ${req.hostIp} is already in use (asked: ${requestText(req)})`);
  }
}

function rules(endpointId: string, rec: PortRecord): PortRules {
  return { endpointId, containerIp: rec.containerIp, bridge: rec.bridge, subnet: rec.subnet, bindings: rec.bindings };
}

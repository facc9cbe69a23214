// The network side of vxnet: what CreateNetwork, CreateEndpoint, Join and the deletes do to the
// store and the kernel. Every operation is idempotent (dockerd re-sends, vxnet restarts), and
// work on one logical network is serialised in-process (KeyedLock).
//
// Kernel objects are derived from the store: the bridge (and VXLAN device) of a network exist on
// a host while that host has an endpoint on it; a veth exists while its endpoint does.
import { vxError, LinkNotFoundError } from '../errors';
import type { Logger } from '../log';
import type { Store } from '../store/types';
import { getJson, listJson, Keys } from '../store/json';
import { parseCidr, parseIp, containsIp, cidrToString } from '../ipam/cidr';
import type { Dataplane } from './dataplane-port';
import { bridgeEntries } from '../dataplane/firewall-sets';
import type { BridgeRuleOptions, FirewallEntry } from '../dataplane/firewall-sets';
import type { DockerNetworkRecord, EndpointRecord, NetworkRecord, SubnetInfo } from './records';
import { KeyedLock } from './keyed-lock';
import { AddressClaims, canonicalIp } from './address-claims';
import { FlowCleanup } from './flow-cleanup';
import { bridgeMac, bridgeName, endpointMac, vethNames, vxlanName, VETH_HOST_PREFIX } from './names';
import { resolveNetworkOptions, NetworkOptions } from './options';
import { Undo } from './undo';
import type { RecordCache } from './record-cache';
import { portElements } from './antispoof';
import { isolated as isolatedNet } from '../policy/resolve';
import { endpointPolicyOptions } from '../policy/options';

export interface IpamData {
  AddressSpace: string;
  Pool: string;
  Gateway?: string;
  AuxAddresses?: Record<string, string>;
}

export interface CreateNetworkRequest {
  NetworkID: string;
  Options: Record<string, unknown>;
  IPv4Data: IpamData[];
  IPv6Data: IpamData[];
}

export interface CreateEndpointRequest {
  NetworkID: string;
  EndpointID: string;
  Interface: { Address: string; AddressIPv6: string; MacAddress: string } | null;
  Options: Record<string, unknown>;
}

export interface JoinReply {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  DisableGatewayService: boolean;
}

export interface PoolBinder {
  /** Marks a vxnet IPAM pool as used by a network on this host (see ipam.ts for why). */
  bindPool(poolId: string, bound: boolean): Promise<void>;
  poolIdFor(space: string, pool: string): string;
  addressSpaces(): { local: string; global: string };
  /** null when released; the ID of the live endpoint that holds it when refused (AddressClaims). */
  releaseAddress(poolId: string, address: string): Promise<string | null>;
  releaseHostFromPool(poolId: string): Promise<void>;
  /** Takes ip back in the store if its record went missing (ipam.ts); absent in unit fakes. */
  holdAddress?(poolIds: string[], ip: string): Promise<'held' | 'retaken' | 'not-ours'>;
}

/** What this host has, according to the store (for reconcile). */
export interface LocalState {
  dockerNetworks: Array<{ networkId: string } & DockerNetworkRecord>;
  endpoints: Array<{ lnet: string; endpointId: string; rec: EndpointRecord }>;
  networks: Map<string, NetworkRecord>;
}

/** This host's tunnel endpoint: its underlay address and the device that holds it. */
export interface Vtep {
  ip: string;
  iface: string;
}

/** What Join tells the policy engine (src/policy). */
export interface PolicyPort {
  endpointJoined(key: string, rec: EndpointRecord, net: NetworkRecord): Promise<void>;
}

/** What Join and teardown tell the peer programmer (network/peers.ts). */
export interface PeerPort {
  activate(lnet: string, net: NetworkRecord): Promise<void>;
  deactivate(lnet: string): void;
}

/** What Leave and DeleteEndpoint tell the redirect fast path (src/redirect): the port's entries go first. */
export interface RedirectPort {
  forget(endpointId: string): Promise<void>;
}

export interface NetworkDriverDeps {
  store: Store;
  keys: Keys;
  dataplane: Dataplane;
  ipam: PoolBinder;
  host: string;
  defaultMtu: number;
  /** Highest MTU a network may ask for (underlay.ts mtuLimits); default: defaultMtu. */
  maxMtu?: number;
  vniRange: { min: number; max: number };
  /** null on a single host (embedded store): no VXLAN device, no peers. */
  vtep: Vtep | null;
  /**
   * Refuse networks whose addresses come from another IPAM than vxnet's (see
   * refuseForeignIpam). True where the store is shared and the scope local.
   */
  requireVxnetIpam?: boolean;
  vxlanPort: number;
  peers: PeerPort | null;
  /** Network policy (src/policy): told of each Join so a new endpoint is policed from its first packet. */
  policy?: PolicyPort;
  /** `--fast-path redirect` (src/redirect): absent when off. */
  redirect?: RedirectPort;
  /**
   * Networks, this host's Docker networks and endpoints in memory (fed by a watch): plugin calls
   * read them there instead of asking the store. Absent: every read goes to the store.
   */
  records?: RecordCache;
  /** The address locks the IPAM's releases take too; absent: the driver's own. */
  claims?: AddressClaims;
  /**
   * How long a network's bridge and VXLAN device stay on this host after its last endpoint
   * left. Deleting a bridge costs the kernel ~40 ms and `docker run --rm` in a loop would pay
   * it (and the re-creation) every time; DeleteNetwork removes them at once regardless.
   */
  teardownDelayMs: number;
  /**
   * Swarm (global scope): dockerd creates an attachable network on a worker for its first
   * container there and deletes it with the last, so `docker run --rm` in a loop made and
   * unmade it every time. DeleteNetwork then waits teardownDelayMs before doing its work, and a
   * CreateNetwork of the same network meanwhile finds records and devices still in place.
   */
  deferNetworkDelete?: boolean;
  log: Logger;
  /** Test hook: throws at the named step to prove rollback (STYLE.md §5). */
  failAt?: (step: string) => void;
}

/** Where Docker's CreateEndpoint leaves a field empty and vxnet fills it in. */
export interface CreateEndpointReply {
  Interface?: { MacAddress: string };
}

export class NetworkDriver {
  private readonly lock = new KeyedLock();
  private readonly teardownTimers = new Map<string, NodeJS.Timeout>();
  /** Docker networks whose DeleteNetwork waits (deferNetworkDelete), by NetworkID. */
  private readonly pendingDeletes = new Map<string, { timer: NodeJS.Timeout; lnet: string }>();
  /**
   * Bumped by every CreateNetwork, by NetworkID: a deferred delete whose timer already fired
   * must not undo a CreateNetwork that arrived while it waited for the network's lock.
   */
  private readonly createSeq = new Map<string, number>();
  private seq = 0;

  /** Address locks and holders, shared with the IPAM's releases (daemon.ts) so both see one lock. */
  private readonly claims: AddressClaims;
  private readonly flows: FlowCleanup;

  constructor(private readonly deps: NetworkDriverDeps) {
    this.claims = deps.claims ?? new AddressClaims(deps);
    this.flows = new FlowCleanup(deps);
  }

  async createNetwork(req: CreateNetworkRequest): Promise<void> {
    const opts = resolveNetworkOptions(req.Options, { default: this.deps.defaultMtu, max: this.deps.maxMtu ?? this.deps.defaultMtu });
    if (req.IPv4Data.length > 1 || req.IPv6Data.length > 1) {
      throw badRequest('vxnet networks take at most one IPv4 and one IPv6 subnet');
    }
    const ipv4 = this.subnetInfo(req.IPv4Data[0], 4);
    const ipv6 = this.subnetInfo(req.IPv6Data[0], 6);
    if (!ipv4 && !ipv6) throw badRequest(`network ${req.NetworkID} has no subnet`);
    if (this.deps.requireVxnetIpam) refuseForeignIpam(req, this.deps.ipam.addressSpaces());
    const lnet = opts.name ?? subnetLnet((ipv4 ?? ipv6) as SubnetInfo);
    this.cancelPendingDelete(req.NetworkID);
    this.createSeq.set(req.NetworkID, ++this.seq);
    await this.lock.run(lnet, async () => {
      const { store, keys, host } = this.deps;
      const dnetKey = keys.dockerNetwork(host, req.NetworkID);
      const existing = await this.dockerNetworkRecord(req.NetworkID);
      if (existing && existing.lnet !== lnet) {
        throw vxError('VXNET_ERR_NETWORK_CONFLICT', `network ${req.NetworkID} already exists as logical network ${existing.lnet}, not ${lnet}`);
      }
      // icc is recorded only when off: records of networks without the option stay as they were.
      const want: Omit<NetworkRecord, 'vni'> = { lnet, ipv4, ipv6, mtu: opts.mtu, internal: opts.internal, masquerade: opts.masquerade, ...(opts.icc ? {} : { icc: false }) };
      const undo = new Undo(this.deps.log);
      try {
        const { rec, created } = await this.ensureLogicalNetwork(want, opts);
        if (created) {
          undo.push(`remove network ${lnet}`, async () => {
            await this.deleteRecord(keys.network(lnet));
            await this.releaseVni(rec.vni, lnet);
          });
        }
        const poolIds = [ipv4?.poolId, ipv6?.poolId].filter((p): p is string => typeof p === 'string');
        for (const poolId of poolIds) {
          await this.deps.ipam.bindPool(poolId, true);
          undo.push(`unbind pool ${poolId}`, () => this.deps.ipam.bindPool(poolId, false));
        }
        this.deps.failAt?.('create-network:before-record');
        if (!existing) {
          const raw = JSON.stringify({ lnet, poolIds } satisfies DockerNetworkRecord);
          if (await store.createIfAbsent(dnetKey, raw)) this.deps.records?.wrote(dnetKey, raw);
        }
      } catch (err) {
        await undo.run();
        throw err;
      }
    });
  }

  private subnetInfo(data: IpamData | undefined, family: 4 | 6): SubnetInfo | null {
    if (!data) return null;
    const pool = parseCidr(data.Pool);
    if (!pool || pool.family !== family) throw badRequest(`invalid IPv${family} pool "${data.Pool}"`);
    let gateway: string | null = null;
    if (data.Gateway) {
      const gw = parseCidr(data.Gateway);
      const ip = parseIp(data.Gateway.split('/')[0]);
      if (!gw || !ip || !containsIp(pool, ip)) throw badRequest(`gateway "${data.Gateway}" is not an address of subnet ${data.Pool}`);
      gateway = data.Gateway.split('/')[0];
    }
    const spaces = this.deps.ipam.addressSpaces();
    const ours = data.AddressSpace === spaces.local || data.AddressSpace === spaces.global;
    return {
      subnet: cidrToString(pool),
      gateway,
      poolId: ours ? this.deps.ipam.poolIdFor(data.AddressSpace, cidrToString(pool)) : null,
    };
  }

  /**
   * The logical network is shared by every host that creates it: the first creates the record
   * (with a VNI taken cluster-wide), later ones must ask for the same thing.
   */
  private async ensureLogicalNetwork(want: Omit<NetworkRecord, 'vni'>, opts: NetworkOptions): Promise<{ rec: NetworkRecord; created: boolean }> {
    const { store, keys } = this.deps;
    const key = keys.network(want.lnet);
    for (let attempt = 0; attempt < 3; attempt++) {
      // From the store, not the cache: another host may have dropped and re-created the network
      // (another VNI) a moment ago, and devices built on a stale VNI would be cut off.
      const cur = await getJson<NetworkRecord>(store, key);
      if (cur) {
        const diff = networkMismatch(want, opts.vni, cur.value);
        if (diff) throw vxError('VXNET_ERR_NETWORK_CONFLICT', `network ${want.lnet} already exists with ${diff}`);
        return { rec: cur.value, created: false };
      }
      const vni = await this.takeVni(want.lnet, opts.vni);
      const rec: NetworkRecord = { ...want, vni };
      const raw = JSON.stringify(rec);
      if (await store.createIfAbsent(key, raw)) {
        this.deps.records?.wrote(key, raw);
        return { rec, created: true };
      }
      // Another host created it first; give our VNI back and compare with theirs.
      await this.releaseVni(vni, want.lnet);
    }
    throw vxError('VXNET_ERR_STORE_CONFLICT', `could not create network ${want.lnet}: still contended`);
  }

  private async takeVni(lnet: string, wanted: number | null): Promise<number> {
    const { store, keys, vniRange } = this.deps;
    const held = await store.list(keys.vnis());
    // A crash between taking the VNI and writing the network leaves the VNI ours: reuse it.
    const mine = held.find((kv) => kv.value === lnet);
    if (mine) {
      const vni = Number(mine.key.slice(keys.vnis().length));
      if (wanted === null || wanted === vni) return vni;
      await store.delete(mine.key, mine.modRevision);
    }
    if (wanted !== null) {
      if (await store.createIfAbsent(keys.vni(wanted), lnet)) return wanted;
      const owner = await store.get(keys.vni(wanted));
      throw vxError('VXNET_ERR_VNI_TAKEN', `VNI ${wanted} is already used by network ${owner?.value ?? '(unknown)'}`);
    }
    const used = new Set(held.map((kv) => Number(kv.key.slice(keys.vnis().length))));
    for (let vni = vniRange.min; vni <= vniRange.max; vni++) {
      if (used.has(vni)) continue;
      if (await store.createIfAbsent(keys.vni(vni), lnet)) return vni;
    }
    throw vxError('VXNET_ERR_VNIS_EXHAUSTED', `no free VNI left in ${vniRange.min}-${vniRange.max}`);
  }

  private async releaseVni(vni: number, lnet: string): Promise<void> {
    const kv = await this.deps.store.get(this.deps.keys.vni(vni));
    if (kv && kv.value === lnet) await this.deps.store.delete(kv.key, kv.modRevision);
  }

  async deleteNetwork(networkId: string): Promise<void> {
    const dnet = this.deps.deferNetworkDelete && this.deps.teardownDelayMs > 0 ? await this.dockerNetworkRecord(networkId) : null;
    if (dnet) {
      this.cancelPendingDelete(networkId);
      const seq = this.createSeq.get(networkId);
      const timer = setTimeout(() => {
        this.pendingDeletes.delete(networkId);
        this.deleteNetworkNow(networkId, { seq }).catch((err: unknown) => this.deps.log.warn({ err, network: networkId }, 'deferred network delete failed; reconcile will finish it'));
      }, this.deps.teardownDelayMs);
      timer.unref();
      this.pendingDeletes.set(networkId, { timer, lnet: dnet.lnet });
      return;
    }
    await this.deleteNetworkNow(networkId);
  }

  private cancelPendingDelete(networkId: string): void {
    const pending = this.pendingDeletes.get(networkId);
    if (pending) clearTimeout(pending.timer);
    this.pendingDeletes.delete(networkId);
  }

  /**
   * What DeleteNetwork does, at once (also for reconcile, whatever deferNetworkDelete says).
   * `deferred`: a delete that waited, dropped if a CreateNetwork came since it was scheduled
   * (createSeq then differs from `deferred.seq`).
   */
  async deleteNetworkNow(networkId: string, deferred: { seq: number | undefined } | null = null): Promise<void> {
    if (!deferred) this.cancelPendingDelete(networkId);
    const stale = (): boolean => deferred !== null && this.createSeq.get(networkId) !== deferred.seq;
    const { store, keys, host } = this.deps;
    const dnetKey = keys.dockerNetwork(host, networkId);
    const dnet = await getJson<DockerNetworkRecord>(store, dnetKey);
    if (!dnet) return; // already gone: DeleteNetwork is idempotent
    const lnet = dnet.value.lnet;
    await this.lock.run(lnet, async () => {
      if (stale()) return;
      this.cancelTeardown(lnet);
      const net = await getJson<NetworkRecord>(store, keys.network(lnet));
      // Docker deletes endpoints first; any left of this docker network are leftovers of calls lost.
      for (const ep of await listJson<EndpointRecord>(store, keys.endpoints(lnet))) {
        if (ep.value.host === host && ep.value.networkId === networkId) await this.removeEndpoint(lnet, ep.key, ep.value);
      }
      if (net) await this.teardownIfUnused(net.value);
      for (const poolId of dnet.value.poolIds) {
        await this.deps.ipam.bindPool(poolId, false);
      }
      await this.deleteRecord(dnetKey);
      this.createSeq.delete(networkId);
      if (net) await this.dropLogicalNetworkIfUnused(net.value);
    });
  }

  /** The last Docker network of a logical network is gone on every host: its records and VNI go. */
  private async dropLogicalNetworkIfUnused(net: NetworkRecord): Promise<void> {
    const { store, keys } = this.deps;
    const stillUsed = (await listJson<DockerNetworkRecord>(store, keys.dockerNetworks())).some((d) => d.value.lnet === net.lnet);
    if (stillUsed) return;
    for (const ep of await store.list(keys.endpoints(net.lnet))) this.deps.records?.removed(ep.key, await store.delete(ep.key, ep.modRevision));
    await this.deleteRecord(keys.network(net.lnet));
    await this.releaseVni(net.vni, net.lnet);
  }

  /**
   * Another host is dead for good (dead-hosts.ts decided, exactly once): its Docker networks and
   * endpoints go from the store. Only records: its kernel objects died with it or are its own
   * reconcile's business if it ever comes back.
   */
  async forgetHost(deadHost: string): Promise<string[]> {
    const { store, keys } = this.deps;
    const forgotten: string[] = [];
    for (const ep of await listJson<EndpointRecord>(store, keys.endpoints())) {
      if (ep.value.host !== deadHost) continue;
      await this.deleteRecord(ep.key, ep.modRevision);
      forgotten.push(ep.key.slice(keys.endpoints().length));
    }
    const lnets = new Set<string>();
    for (const d of await listJson<DockerNetworkRecord>(store, keys.hostDockerNetworks(deadHost))) {
      await this.deleteRecord(d.key, d.modRevision);
      lnets.add(d.value.lnet);
    }
    for (const lnet of lnets) {
      await this.lock.run(lnet, async () => {
        const net = await getJson<NetworkRecord>(store, keys.network(lnet));
        if (net) await this.dropLogicalNetworkIfUnused(net.value);
      });
    }
    return forgotten;
  }

  async createEndpoint(req: CreateEndpointRequest): Promise<CreateEndpointReply> {
    const { lnet, net, poolIds } = await this.networkOf(req.NetworkID);
    const iface = req.Interface ?? { Address: '', AddressIPv6: '', MacAddress: '' };
    const ipv4 = checkAddress(iface.Address, net.ipv4, 4, lnet);
    const ipv6 = checkAddress(iface.AddressIPv6, net.ipv6, 6, lnet);
    if (!ipv4 && !ipv6) throw badRequest(`endpoint ${req.EndpointID} has no address`);
    const mac = iface.MacAddress === '' ? endpointMac(ipv4, req.EndpointID) : normaliseMac(iface.MacAddress);
    // Policy rules (vxnet.allow, vxnet.egress): a bad entry fails here, before anything is written.
    const policy = endpointPolicyOptions(req.Options);
    const rec: EndpointRecord = { networkId: req.NetworkID, host: this.deps.host, vtep: this.deps.vtep?.ip ?? null, mac, ipv4, ipv6, at: Date.now(), ...policy };
    const key = this.deps.keys.endpoint(lnet, req.EndpointID);
    const raw = JSON.stringify(rec);
    const ips = [canonicalIp(ipv4), canonicalIp(ipv6)];
    // Under the addresses' locks: a release deciding whether they are held waits for the record.
    const same = (e: EndpointRecord | null | undefined): boolean => !!e && JSON.stringify({ ...e, at: undefined }) === JSON.stringify({ ...rec, at: undefined });
    const conflict = (): Error => vxError('VXNET_ERR_ENDPOINT_CONFLICT', `endpoint ${req.EndpointID} already exists with other settings`);
    // A gone endpoint's conntrack cleanup of these addresses must not meet this one's flows.
    await this.flows.settled(ips);
    await this.claims.claiming(ips, async () => {
      // A repeated CreateEndpoint is answered from its record, before any address is touched.
      const existing = await this.endpointRecord(lnet, req.EndpointID);
      if (existing) {
        if (same(existing)) return;
        throw conflict();
      }
      await this.holdAddresses(req.NetworkID, poolIds, req.EndpointID, ips);
      if (await this.deps.store.createIfAbsent(key, raw)) {
        this.deps.records?.wrote(key, raw);
        return;
      }
      if (!same((await getJson<EndpointRecord>(this.deps.store, key))?.value)) throw conflict();
    });
    return iface.MacAddress === '' ? { Interface: { MacAddress: mac } } : {};
  }

  /**
   * An address another endpoint here holds is refused (a CreateEndpoint dockerd retried past a
   * restart, for an address reconcile released and a new container got); one whose IPAM record
   * a release removed in between is taken back (network/address-claims.ts).
   */
  private async holdAddresses(networkId: string, poolIds: string[], endpointId: string, ips: Array<string | null>): Promise<void> {
    for (const ip of ips) {
      if (!ip) continue;
      const other = await this.claims.holder(ip, { networkId }, endpointId);
      if (other) throw vxError('VXNET_ERR_ADDRESS_IN_USE', `address ${ip} is held by endpoint ${other} on this network`);
      if ((await this.deps.ipam.holdAddress?.(poolIds, ip)) === 'retaken') {
        this.deps.log.warn({ endpoint: endpointId, address: ip }, 'address record was missing at CreateEndpoint: taken again');
      }
    }
  }

  async join(networkId: string, endpointId: string): Promise<JoinReply> {
    const { lnet, net } = await this.networkOf(networkId);
    return this.lock.run(lnet, async () => {
      const ep = await this.localEndpoint(lnet, networkId, endpointId);
      this.cancelTeardown(lnet);
      const undo = new Undo(this.deps.log);
      try {
        const bridge = await this.ensureNetworkDevices(net, undo, 'if-new');
        const names = vethNames(endpointId);
        // Before the veth exists: the port checks every frame from its first one (fail closed).
        const guard = portElements(endpointId, ep);
        await this.deps.dataplane.addSpoofElements(guard);
        undo.push(`remove anti-spoofing entries of ${names.host}`, () => this.deps.dataplane.removeSpoofElements(guard));
        this.deps.failAt?.('join:after-antispoof');
        await this.deps.dataplane.ensureVeth({ hostName: names.host, peerName: names.peer, mtu: net.mtu, peerMac: ep.mac, bridge });
        undo.push(`remove veth ${names.host}`, () => this.deps.dataplane.removeVeth(names.host));
        this.deps.failAt?.('join:after-veth');
        // Pin the container's MAC on its own port: a stale learned entry elsewhere must never
        // win over the port the address lives on now (DESIGN.md, moves between hosts).
        await this.deps.dataplane.ensureFdb({ dev: names.host, mac: ep.mac, master: true });
        this.deps.failAt?.('join:after-fdb');
        await this.deps.policy?.endpointJoined(this.deps.keys.endpoint(lnet, endpointId), ep, net);
        undo.clear();
        const reply: JoinReply = { InterfaceName: { SrcName: names.peer, DstPrefix: 'eth' }, DisableGatewayService: net.internal };
        if (!net.internal && net.ipv4?.gateway) reply.Gateway = net.ipv4.gateway;
        if (!net.internal && net.ipv6?.gateway) reply.GatewayIPv6 = net.ipv6.gateway;
        return reply;
      } catch (err) {
        await undo.run();
        throw err;
      }
    });
  }

  /**
   * The bridge, its firewall entries and (across hosts) its VXLAN device: created on the
   * network's first Join on this host, checked and repaired on every later one. The firewall
   * entries are written only with a new bridge ('if-new', Join: no iptables/ipset process on a
   * Join to a network that is already here) or always ('always', reconcile's repair).
   */
  private async ensureNetworkDevices(net: NetworkRecord, undo: Undo, firewall: 'if-new' | 'always'): Promise<string> {
    const { dataplane, vtep, log } = this.deps;
    const bridge = bridgeName(net.vni);
    const vxlan = vxlanName(net.vni);
    // One lookup by name each, not a dump of every link: with 1,000 networks a dump (2,000+ links,
    // parsed in JS) made every Join pay for every other network.
    const existed = (await dataplane.getLinkByName(bridge)) !== null;
    const addresses = net.internal ? [] : gatewayAddresses(net);
    await dataplane.ensureBridge({ name: bridge, mtu: net.mtu, mac: bridgeMac(net.vni), addresses });
    if (!existed) undo.push(`remove bridge ${bridge}`, () => dataplane.removeBridge(bridge));
    if (!existed || firewall === 'always') await dataplane.ensureBridgeRules(bridge, firewallOptions(net));
    if (!existed) undo.push(`remove firewall entries of ${bridge}`, () => dataplane.removeBridgeRules(bridge, net.ipv4?.subnet ?? null));
    this.deps.failAt?.('join:after-bridge');
    if (vtep) {
      // A new or rebuilt VXLAN device starts with no peer entries: have them programmed again.
      let fresh = (await dataplane.getLinkByName(vxlan)) === null;
      await dataplane.ensureVxlan(
        { name: vxlan, vni: net.vni, port: this.deps.vxlanPort, local: vtep.ip, underlay: vtep.iface, mtu: net.mtu, bridge },
        {
          onRebuild: (reason) => {
            fresh = true;
            log.warn({ dev: vxlan, reason }, 'vxlan device rebuilt');
          },
        },
      );
      if (!existed) undo.push(`remove vxlan ${vxlan}`, () => dataplane.removeVxlan(vxlan));
      if (fresh) this.deps.peers?.deactivate(net.lnet);
      await this.deps.peers?.activate(net.lnet, net);
    }
    return bridge;
  }

  /**
   * Leave takes the port's anti-spoofing entries away (the port then drops everything); dockerd
   * moves the interface back to the host and DeleteEndpoint removes it.
   */
  async leave(networkId: string, endpointId: string): Promise<void> {
    const { lnet } = await this.networkOf(networkId);
    const ep = await this.localEndpoint(lnet, networkId, endpointId);
    // The port drops everything from here on: no frame of it may skip the bridge either.
    await this.deps.redirect?.forget(endpointId);
    await this.deps.dataplane.removeSpoofElements(portElements(endpointId, ep));
  }

  async requireEndpoint(networkId: string, endpointId: string): Promise<void> {
    const { lnet } = await this.networkOf(networkId);
    await this.localEndpoint(lnet, networkId, endpointId);
  }

  async deleteEndpoint(networkId: string, endpointId: string): Promise<void> {
    const dnet = await this.dockerNetworkRecord(networkId);
    if (!dnet) return; // network already gone, and its endpoints with it
    const lnet = dnet.lnet;
    await this.lock.run(lnet, async () => {
      const key = this.deps.keys.endpoint(lnet, endpointId);
      const ep = await this.endpointRecord(lnet, endpointId);
      if (!ep || ep.host !== this.deps.host || ep.networkId !== networkId) return;
      await this.removeEndpoint(lnet, key, ep);
      if (this.deps.teardownDelayMs > 0) this.scheduleTeardown(lnet);
      else await this.teardownNow(lnet);
    });
  }

  private async teardownNow(lnet: string): Promise<void> {
    const net = await getJson<NetworkRecord>(this.deps.store, this.deps.keys.network(lnet));
    if (net) await this.teardownIfUnused(net.value);
  }

  private scheduleTeardown(lnet: string): void {
    this.cancelTeardown(lnet);
    const timer = setTimeout(() => {
      this.teardownTimers.delete(lnet);
      // A deferred DeleteNetwork of this network tears down itself, with its records.
      if ([...this.pendingDeletes.values()].some((p) => p.lnet === lnet)) return;
      this.lock.run(lnet, () => this.teardownNow(lnet)).catch((err: unknown) => this.deps.log.warn({ err, lnet }, 'teardown failed'));
    }, this.deps.teardownDelayMs);
    timer.unref();
    this.teardownTimers.set(lnet, timer);
  }

  private cancelTeardown(lnet: string): void {
    const timer = this.teardownTimers.get(lnet);
    if (timer) clearTimeout(timer);
    this.teardownTimers.delete(lnet);
  }

  async localState(): Promise<LocalState> {
    const { store, keys, host } = this.deps;
    const dockerNetworks = (await listJson<DockerNetworkRecord>(store, keys.hostDockerNetworks(host))).map((d) => ({
      networkId: d.key.slice(keys.hostDockerNetworks(host).length),
      ...d.value,
    }));
    const endpoints: LocalState['endpoints'] = [];
    for (const e of await listJson<EndpointRecord>(store, keys.endpoints())) {
      if (e.value.host !== host) continue;
      const [lnet, endpointId] = e.key.slice(keys.endpoints().length).split('/');
      endpoints.push({ lnet, endpointId, rec: e.value });
    }
    const networks = new Map((await listJson<NetworkRecord>(store, keys.networks())).map((n) => [n.value.lnet, n.value] as [string, NetworkRecord]));
    return { dockerNetworks, endpoints, networks };
  }

  /** A network dockerd no longer has: what its lost DeleteNetwork and IPAM releases would have done. */
  async dropStaleNetwork(networkId: string, poolIds: string[]): Promise<void> {
    await this.deleteNetworkNow(networkId);
    for (const poolId of poolIds) await this.deps.ipam.releaseHostFromPool(poolId);
  }

  /** An endpoint whose container is gone: its veth, its record and its addresses. */
  async dropStaleEndpoint(lnet: string, endpointId: string, rec: EndpointRecord, poolIds: string[]): Promise<void> {
    await this.lock.run(lnet, async () => {
      await this.removeEndpoint(lnet, this.deps.keys.endpoint(lnet, endpointId), rec);
      await this.teardownNow(lnet);
    });
    for (const addr of [rec.ipv4, rec.ipv6]) {
      if (!addr) continue;
      for (const poolId of poolIds) await this.deps.ipam.releaseAddress(poolId, addr.split('/')[0]).catch(() => undefined);
    }
  }

  /**
   * Recreates the devices of a network that has endpoints on this host and puts the surviving
   * host-side veths back on its bridge (deleting a bridge detaches its ports and forgets their
   * pinned MACs). A veth whose host end is gone is not recreated: its container end went with
   * it, and dockerd will not move a new one into the container.
   */
  async repairNetwork(net: NetworkRecord, endpoints: Array<{ endpointId: string; rec: EndpointRecord }>): Promise<void> {
    await this.lock.run(net.lnet, async () => {
      const bridge = await this.ensureNetworkDevices(net, new Undo(this.deps.log), 'always');
      const present = new Set((await this.deps.dataplane.listLinks(VETH_HOST_PREFIX)).map((l) => l.name));
      // One line per network and pass: a line per endpoint was thousands of lines per pass on a
      // busy host (20,000 per driver in one bench:memory run, when the pass still repeated every
      // 10 s without dockerd).
      const gone: string[] = [];
      for (const { endpointId, rec } of endpoints) {
        const names = vethNames(endpointId);
        if (!present.has(names.host)) {
          gone.push(names.host);
          continue;
        }
        await this.deps.dataplane.ensureVeth({ hostName: names.host, peerName: names.peer, mtu: net.mtu, peerMac: rec.mac, bridge });
        await this.deps.dataplane.ensureFdb({ dev: names.host, mac: rec.mac, master: true });
      }
      if (gone.length > 0) this.deps.log.warn({ lnet: net.lnet, count: gone.length, veths: gone.slice(0, 10) }, 'veths of live endpoints are gone');
    });
  }

  /** Link names that belong to live state: anything else vxnet-named is an orphan. */
  expectedLinks(state: LocalState): Set<string> {
    const names = new Set<string>();
    for (const ep of state.endpoints) {
      const net = state.networks.get(ep.lnet);
      if (net) {
        names.add(bridgeName(net.vni));
        names.add(vxlanName(net.vni));
      }
      names.add(vethNames(ep.endpointId).host);
    }
    for (const lnet of this.teardownTimers.keys()) {
      const net = state.networks.get(lnet);
      if (net) {
        names.add(bridgeName(net.vni));
        names.add(vxlanName(net.vni));
      }
    }
    return names;
  }

  /** Firewall entries that belong to live state (the networks whose bridges expectedLinks keeps). */
  expectedFirewall(state: LocalState): FirewallEntry[] {
    const lnets = new Set([...state.endpoints.map((e) => e.lnet), ...this.teardownTimers.keys()]);
    const out: FirewallEntry[] = [];
    for (const lnet of lnets) {
      const net = state.networks.get(lnet);
      if (net) out.push(...bridgeEntries(bridgeName(net.vni), firewallOptions(net)));
    }
    return out;
  }

  /** Stops pending teardowns; devices left behind are reused or reconciled at the next start. */
  close(): void {
    for (const t of this.teardownTimers.values()) clearTimeout(t);
    this.teardownTimers.clear();
    // A network whose delete was waiting keeps its records: reconcile drops them at the next
    // start, since dockerd no longer has it.
    for (const p of this.pendingDeletes.values()) clearTimeout(p.timer);
    this.pendingDeletes.clear();
  }

  /** Where a local endpoint lives, for publishing its ports (ports/publisher.ts). */
  async endpointPlace(networkId: string, endpointId: string): Promise<{ lnet: string; containerIp: string | null; bridge: string; subnet: string | null; veth: string }> {
    const { lnet, net } = await this.networkOf(networkId);
    const ep = await this.localEndpoint(lnet, networkId, endpointId);
    return { lnet, containerIp: ep.ipv4?.split('/')[0] ?? null, bridge: bridgeName(net.vni), subnet: net.ipv4?.subnet ?? null, veth: vethNames(endpointId).host };
  }

  async endpointInfo(networkId: string, endpointId: string): Promise<Record<string, unknown>> {
    const { lnet, net } = await this.networkOf(networkId);
    const ep = await this.localEndpoint(lnet, networkId, endpointId);
    return { 'vxnet.network': lnet, 'vxnet.vni': net.vni, 'vxnet.host': ep.host, 'vxnet.mac': ep.mac, 'vxnet.interface': vethNames(endpointId).host };
  }

  private async removeEndpoint(lnet: string, key: string, ep: EndpointRecord): Promise<void> {
    const endpointId = key.slice(this.deps.keys.endpoints(lnet).length);
    // The flows first, then the veth, both handed to the kernel thread: in this order the walk of
    // the conntrack hash starts at once instead of queued behind the veth's ~20 ms deletion, where
    // it met the next container's Join (bench:calls --kernel, back to back: Join p50 8.3 ms
    // instead of 3.9). That the veth may still be there during the walk loses nothing that
    // matters: Docker calls DeleteEndpoint once the sandbox is gone (nothing left to send from
    // this address) and after RevokeExternalConnectivity (no published port leads here).
    this.flows.start(endpointId, [ep.ipv4, ep.ipv6]);
    // Before the port goes: an entry redirecting to a deleted device drops what it gets.
    await this.deps.redirect?.forget(endpointId);
    await this.deps.dataplane.releaseVeth(vethNames(endpointId).host);
    await this.deps.dataplane.removeSpoofElements(portElements(endpointId, ep));
    await this.deleteRecord(key);
    this.deps.log.debug({ lnet, endpoint: endpointId, ipv4: ep.ipv4 }, 'endpoint removed');
  }

  /** Removes the network's devices from this host when no local endpoint is left on it. */
  private async teardownIfUnused(net: NetworkRecord): Promise<void> {
    const { store, keys, host, dataplane } = this.deps;
    const local = (await listJson<EndpointRecord>(store, keys.endpoints(net.lnet))).some((e) => e.value.host === host);
    if (local) return;
    this.deps.peers?.deactivate(net.lnet);
    const bridge = bridgeName(net.vni);
    // Its ports' veths may still be on their way out (released in DeleteEndpoint): the network
    // is gone only when they are.
    await dataplane.drainReleasedVeths();
    await ignoreMissing(dataplane.removeVxlan(vxlanName(net.vni)));
    await dataplane.removeBridgeRules(bridge, net.ipv4?.subnet ?? null);
    await ignoreMissing(dataplane.removeBridge(bridge));
  }

  private async networkOf(networkId: string): Promise<{ lnet: string; net: NetworkRecord; poolIds: string[] }> {
    const dnet = await this.dockerNetworkRecord(networkId);
    if (!dnet) throw vxError('VXNET_ERR_UNKNOWN_NETWORK', `unknown network ${networkId}`);
    const net = this.deps.records?.network(dnet.lnet) ?? (await getJson<NetworkRecord>(this.deps.store, this.deps.keys.network(dnet.lnet)))?.value;
    if (!net) throw vxError('VXNET_ERR_UNKNOWN_NETWORK', `network ${networkId} points at logical network ${dnet.lnet}, which no longer exists`);
    return { lnet: dnet.lnet, net, poolIds: dnet.poolIds };
  }

  private async localEndpoint(lnet: string, networkId: string, endpointId: string): Promise<EndpointRecord> {
    const ep = await this.endpointRecord(lnet, endpointId);
    if (!ep || ep.host !== this.deps.host || ep.networkId !== networkId) {
      throw vxError('VXNET_ERR_UNKNOWN_ENDPOINT', `unknown endpoint ${endpointId} in network ${networkId}`);
    }
    return ep;
  }

  // Reads of the plugin calls: from the record cache when it holds the record, else the store.

  private async dockerNetworkRecord(networkId: string): Promise<DockerNetworkRecord | null> {
    const { store, keys, host, records } = this.deps;
    return records?.dockerNetwork(networkId) ?? (await getJson<DockerNetworkRecord>(store, keys.dockerNetwork(host, networkId)))?.value ?? null;
  }

  private async endpointRecord(lnet: string, endpointId: string): Promise<EndpointRecord | null> {
    const { store, keys, records } = this.deps;
    return records?.endpoint(lnet, endpointId) ?? (await getJson<EndpointRecord>(store, keys.endpoint(lnet, endpointId)))?.value ?? null;
  }

  /** Deletes a record from the store and tells the cache. */
  private async deleteRecord(key: string, modRevision?: number): Promise<boolean> {
    const deleted = await this.deps.store.delete(key, modRevision);
    this.deps.records?.removed(key, deleted);
    return deleted;
  }
}

function networkMismatch(want: Omit<NetworkRecord, 'vni'>, wantVni: number | null, have: NetworkRecord): string | null {
  const diffs: string[] = [];
  const sub = (s: SubnetInfo | null): string => (s ? `${s.subnet} gateway ${s.gateway ?? 'none'}` : 'none');
  if (sub(want.ipv4) !== sub(have.ipv4)) diffs.push(`IPv4 ${sub(have.ipv4)} (asked: ${sub(want.ipv4)})`);
  if (sub(want.ipv6) !== sub(have.ipv6)) diffs.push(`IPv6 ${sub(have.ipv6)} (asked: ${sub(want.ipv6)})`);
  if (want.mtu !== have.mtu) diffs.push(`MTU ${have.mtu} (asked: ${want.mtu})`);
  if (want.internal !== have.internal) diffs.push(`internal ${have.internal} (asked: ${want.internal})`);
  if (masquerades(want) !== masquerades(have)) diffs.push(`enable_ip_masquerade ${masquerades(have)} (asked: ${masquerades(want)})`);
  if (isolatedNet(want) !== isolatedNet(have)) diffs.push(`enable_icc ${!isolatedNet(have)} (asked: ${!isolatedNet(want)})`);
  if (wantVni !== null && wantVni !== have.vni) diffs.push(`VNI ${have.vni} (asked: ${wantVni})`);
  return diffs.length === 0 ? null : diffs.join(', ');
}

/**
 * Docker's default IPAM (or any IPAM but vxnet's) hands out addresses from books each dockerd
 * keeps for itself: with a shared store the same subnet on two hosts is one L2 network, and both
 * hosts would give 10.x.x.2 to their first container. Making that safe afterwards is not
 * possible: claiming each address cluster-wide at CreateEndpoint could only refuse the clash,
 * and Docker's IPAM would offer the same lowest free address again on every retry, so the
 * second host could never start a container without --ip. So the network is refused at create,
 * before anything exists, with the fix in the message.
 * Not refused: one host with the embedded store (one dockerd, one set of books), and swarm
 * networks (global scope), whose addresses swarm's manager allocates centrally for every node
 * (moby cnmallocator: only node-local drivers skip that) — workers then CreateNetwork with
 * Docker's local address space and the manager's addresses.
 */
function refuseForeignIpam(req: CreateNetworkRequest, spaces: { local: string; global: string }): void {
  const foreign = [...req.IPv4Data, ...req.IPv6Data].find((d) => d.AddressSpace !== spaces.local && d.AddressSpace !== spaces.global);
  if (!foreign) return;
  throw vxError(
    'VXNET_ERR_IPAM_REQUIRED',
    `network ${req.NetworkID} (subnet ${foreign.Pool}) takes its addresses from another IPAM driver (address space "${foreign.AddressSpace}"): ` +
      'with a shared store every host would hand out the same addresses on one network; add --ipam-driver vxnet ' +
      '(Compose: ipam: driver: vxnet) so addresses are unique across hosts',
  );
}

/** Records of earlier versions have no masquerade field: they masqueraded (the default). */
export function masquerades(net: Pick<NetworkRecord, 'masquerade'>): boolean {
  return net.masquerade !== false;
}

/** What the firewall needs to know about a network (IPv4 only: see firewall-sets.ts). */
export function firewallOptions(net: NetworkRecord): BridgeRuleOptions {
  return { subnet: net.ipv4?.subnet ?? null, internal: net.internal, masquerade: masquerades(net) };
}

function subnetLnet(s: SubnetInfo): string {
  return `subnet-${s.subnet.replace('/', '-').replace(/:/g, '.')}`;
}

function gatewayAddresses(net: NetworkRecord): string[] {
  const out: string[] = [];
  for (const s of [net.ipv4, net.ipv6]) {
    if (s?.gateway) out.push(`${s.gateway}/${s.subnet.split('/')[1]}`);
  }
  return out;
}

function checkAddress(address: string, subnet: SubnetInfo | null, family: 4 | 6, lnet: string): string | null {
  if (address === '') return null;
  const c = parseCidr(address);
  const ip = parseIp(address.split('/')[0]);
  if (!c || !ip || ip.family !== family) throw badRequest(`invalid IPv${family} address "${address}": want ip/len`);
  const net = subnet ? parseCidr(subnet.subnet) : null;
  if (!net || !containsIp(net, ip)) throw badRequest(`address ${address} is not in a subnet of network ${lnet}`);
  return address;
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function normaliseMac(mac: string): string {
  if (!MAC_RE.test(mac)) throw badRequest(`invalid MAC address "${mac}"`);
  const lower = mac.toLowerCase();
  if (parseInt(lower.slice(0, 2), 16) & 1) throw badRequest(`MAC address ${mac} is a multicast address`);
  return lower;
}

async function ignoreMissing(p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof LinkNotFoundError)) throw err;
  }
}

function badRequest(msg: string): Error {
  return vxError('VXNET_ERR_BAD_REQUEST', msg);
}

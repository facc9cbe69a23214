// vxnet's IPAM: pools and addresses as records in the Store, each taken with one
// createIfAbsent (exclusive) or one compare-and-swap (shared, counted per host).
//
// Shared vs exclusive: without swarm every host's dockerd asks again for the same pool, its
// gateway and its aux addresses, so those are counted per host and never refused as "in use";
// a container address belongs to exactly one endpoint cluster-wide.
//
// dockerd 20.10 sends aux-address and container requests with identical bodies (Options null);
// only the gateway request is marked (TESTING.md). Aux requests come before this host's
// CreateNetwork, container requests after it, so the network layer marks the pool "bound" on
// this host at CreateNetwork and that decides the kind.
import { createHash } from 'node:crypto';
import { vxError } from '../errors';
import type { Store } from '../store/types';
import { getJson, listJson, updateJson, decodeCidr, Keys } from '../store/json';
import type { DefaultPool } from '../config';
import {
  Cidr,
  parseCidr,
  parseIp,
  cidrToString,
  bigIntToIp,
  containsIp,
  containsCidr,
  overlaps,
  usableRange,
  isCanonicalCidr,
  lastAddress,
  size,
} from './cidr';
import { parsePoolAsk } from './pool-ask';
import { PoolIndex } from './pool-index';
import { GroupCreate } from './group-create';

export const LOCAL_ADDRESS_SPACE = 'vxnet-local';
export const GLOBAL_ADDRESS_SPACE = 'vxnet-global';
export const GATEWAY_REQUEST = 'com.docker.network.gateway';
const ADDRESS_SPACES = [LOCAL_ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE];

/** Tries before giving up on a pool whose free addresses keep being taken by other hosts. */
const ALLOC_ATTEMPTS = 256;

export type AddressKind = 'gateway' | 'aux' | 'container';

export interface PoolHostState {
  refs: number;
  /** A network on this host uses the pool (its CreateNetwork arrived). */
  bound: boolean;
}

export interface PoolRecord {
  space: string;
  pool: string;
  subPool: string | null;
  v6: boolean;
  gateway: string | null;
  hosts: Record<string, PoolHostState>;
}

export interface AddressRecord {
  kind: AddressKind;
  /** container: the host that took it. */
  host?: string;
  /** container: when it was taken (ms since the epoch); reconcile leaves young ones alone. */
  at?: number;
  /** gateway and aux: how many times each host asked for it. */
  hosts?: Record<string, number>;
}

/** How many addresses of one kind a pool has given out (cluster-wide). */
export interface AddressUsage {
  poolId: string;
  kind: AddressKind;
  count: number;
}

export interface PoolRequest {
  addressSpace: string;
  pool: string;
  subPool: string;
  options: Record<string, string>;
  v6: boolean;
}

export interface PoolReply {
  poolId: string;
  pool: string;
  data: Record<string, string>;
}

export interface AddressRequest {
  poolId: string;
  address: string;
  options: Record<string, string> | null;
}

export interface IpamDeps {
  store: Store;
  keys: Keys;
  host: string;
  defaultPools: DefaultPool[];
  /** This host's routes but the default one: auto-chosen local pools must not overlap them. */
  hostRoutes: () => Promise<Cidr[]>;
  /** Refuses releases of addresses a live endpoint holds (network/address-claims.ts); absent: none refused. */
  releases?: ReleaseGuard;
}

export interface ReleaseGuard {
  /** Runs release unless an endpoint of this host holds ip in a network using poolId; that endpoint's ID, or null. */
  releaseUnlessHeld(poolId: string, ip: string, release: () => Promise<void>): Promise<string | null>;
}

interface PoolRef {
  space: string;
  pool: string;
}

/** Where "any free address" of a pool is looked for, parsed once per pool (see Ipam.rangeOf). */
interface FreeRange {
  pool: string;
  subPool: string | null;
  cidr: Cidr;
  first: bigint;
  last: bigint;
  span: bigint;
}

export class Ipam {
  /** Where the next free-address scan starts per pool: a hint, so a freed address is not reused at once. */
  private readonly cursors = new Map<string, bigint>();
  /** Addresses this process knows to be taken, per pool: a hint; the store's create-if-absent decides. */
  private readonly taken = new Map<string, Set<string>>();
  /** Each pool's free-address range, for as long as its record names the same subnet and ip-range. */
  private readonly ranges = new Map<string, FreeRange>();

  /** Every pool's subnet, from a watch: overlap checks do not grow with the number of pools. */
  private readonly index: PoolIndex;

  /** Address creates of concurrent requests, sent together (one etcd transaction per batch). */
  private readonly creates: GroupCreate;

  constructor(private readonly deps: IpamDeps) {
    this.index = new PoolIndex(deps.store, deps.keys);
    this.creates = new GroupCreate(deps.store);
  }

  /** Stops the pool watch (the store's close() stops it too). */
  close(): void {
    this.index.close();
  }

  addressSpaces(): { local: string; global: string } {
    return { local: LOCAL_ADDRESS_SPACE, global: GLOBAL_ADDRESS_SPACE };
  }

  poolIdFor(space: string, pool: string): string {
    return `${space}/${pool}`;
  }

  async requestPool(req: PoolRequest): Promise<PoolReply> {
    if (!ADDRESS_SPACES.includes(req.addressSpace)) {
      throw badRequest(`unknown address space "${req.addressSpace}" (vxnet has ${ADDRESS_SPACES.join(', ')})`);
    }
    const ask = parsePoolAsk(req, this.deps.defaultPools);
    if (ask.kind === 'auto') return this.autoPool(req, ask.size);
    const pool = ask.pool;
    if ((pool.family === 6) !== req.v6) throw badRequest(`subnet ${req.pool} is not an IPv${req.v6 ? 6 : 4} subnet`);
    if (pool.bits - pool.prefix < 2 && pool.family === 4) throw badRequest(`subnet ${req.pool} is too small: it has no room for a gateway and a container`);
    let subPool: string | null = null;
    if (req.subPool !== '') {
      const sub = parseCidr(req.subPool);
      if (!sub || !isCanonicalCidr(req.subPool)) throw badRequest(`invalid ip-range "${req.subPool}": want a CIDR, e.g. 10.1.0.128/25`);
      if (!containsCidr(pool, sub)) throw badRequest(`ip-range ${req.subPool} is not inside subnet ${req.pool}`);
      subPool = cidrToString(sub);
    }
    const canonical = cidrToString(pool);
    await this.checkNoOverlap(req.addressSpace, pool);
    const key = this.deps.keys.pool(req.addressSpace, canonical);
    let created = false;
    await updateJson<PoolRecord>(this.deps.store, key, (cur) => {
      if (cur && cur.subPool !== subPool) {
        throw vxError('VXNET_ERR_POOL_OVERLAP', `subnet ${canonical} is already in use with ip-range ${cur.subPool ?? '(none)'}, not ${subPool ?? '(none)'}`);
      }
      created = cur === null;
      const rec: PoolRecord = cur ?? { space: req.addressSpace, pool: canonical, subPool, v6: req.v6, gateway: null, hosts: {} };
      return addHostRef(rec, this.deps.host);
    });
    const poolId = this.poolIdFor(req.addressSpace, canonical);
    // The overlap check above and the write are two steps: a subnet of another size written in
    // between (an automatic one, another host's) is seen now, and this claim is given back.
    if (created && (await this.overlapsAnother(req.addressSpace, pool))) {
      await this.releasePool(poolId);
      throw vxError('VXNET_ERR_POOL_OVERLAP', `subnet ${canonical} overlaps a subnet taken at the same moment; ask again`);
    }
    return { poolId, pool: canonical, data: {} };
  }

  private async checkNoOverlap(space: string, pool: Cidr): Promise<void> {
    const clash = await this.index.overlapping(space, pool, cidrToString(pool));
    if (clash.length > 0) {
      throw vxError('VXNET_ERR_POOL_OVERLAP', `subnet ${cidrToString(pool)} overlaps subnet ${clash[0].pool} already in use`);
    }
  }

  /**
   * A free subnet from the default pools: of the asked size, else each pool's own. Subnets in
   * use and host routes are jumped over, not stepped through, so a /28 in a /9 costs as much
   * as a /24. Candidates of one size collide on one key (create-if-absent decides); candidates
   * of different sizes (a /24 and a /28 at the same base, asked at once, maybe by two hosts)
   * do not, so every claim is checked afterwards and given back if it overlaps another one.
   */
  private async autoPool(req: PoolRequest, wanted: number | null): Promise<PoolReply> {
    const local = req.addressSpace === LOCAL_ADDRESS_SPACE;
    const existing = await this.index.subnets(req.addressSpace);
    const avoid = local ? [...existing, ...(await this.deps.hostRoutes())] : existing;
    for (const dp of this.deps.defaultPools) {
      const base = parseCidr(dp.base);
      const len = wanted ?? dp.size;
      if (!base || len < base.prefix || len > base.bits - 2) continue;
      const step = 1n << BigInt(base.bits - len);
      const end = base.base + size(base);
      for (let at = base.base; at < end; ) {
        const cand: Cidr = { family: base.family, base: at, prefix: len, bits: base.bits };
        const clash = avoid.find((e) => overlaps(e, cand));
        if (clash) {
          at = alignUp(lastAddress(clash) + 1n, step);
          continue;
        }
        avoid.push(cand);
        at += step;
        const text = cidrToString(cand);
        const key = this.deps.keys.pool(req.addressSpace, text);
        const rec: PoolRecord = { space: req.addressSpace, pool: text, subPool: null, v6: false, gateway: null, hosts: {} };
        if (!(await this.deps.store.createIfAbsent(key, JSON.stringify(addHostRef(rec, this.deps.host))))) continue;
        const poolId = this.poolIdFor(req.addressSpace, text);
        if (await this.overlapsAnother(req.addressSpace, cand)) {
          await this.releasePool(poolId);
          continue;
        }
        return { poolId, pool: text, data: {} };
      }
    }
    const sized = wanted === null ? '' : ` of size /${wanted}`;
    throw vxError('VXNET_ERR_POOLS_EXHAUSTED', `no free subnet${sized} left in ${this.deps.defaultPools.map((p) => `${p.base}:${p.size}`).join(', ')}`);
  }

  /**
   * Whether a pool other than c itself overlaps c (a claim raced by one of another size), after
   * this host's own write of c: from the index once it has caught up with that write, else (the
   * watch is slow or broken) from a list of every pool.
   */
  private async overlapsAnother(space: string, c: Cidr): Promise<boolean> {
    const text = cidrToString(c);
    if (await this.index.settled(this.deps.keys.pool(space, text))) return (await this.index.overlapping(space, c, text)).length > 0;
    return (await listJson<PoolRecord>(this.deps.store, this.deps.keys.pools(space))).some(({ value }) => {
      const other = parseCidr(value.pool);
      return other !== null && value.pool !== text && overlaps(other, c);
    });
  }

  /** Drops one of `host`'s references to the pool (this host unless told: dead-host cleanup). */
  async releasePool(poolId: string, host = this.deps.host): Promise<void> {
    const ref = parsePoolId(poolId);
    const { store, keys } = this.deps;
    const after = await updateJson<PoolRecord>(store, keys.pool(ref.space, ref.pool), (cur) => {
      if (!cur || !cur.hosts[host]) return undefined;
      const hosts = { ...cur.hosts };
      const refs = hosts[host].refs - 1;
      if (refs > 0) hosts[host] = { ...hosts[host], refs };
      else delete hosts[host];
      return Object.keys(hosts).length === 0 ? null : { ...cur, hosts };
    });
    if (after === null) {
      // Nobody holds the pool any more: whatever address keys remain would be leaks.
      for (const kv of await store.list(keys.addresses(ref.space, ref.pool))) await store.delete(kv.key, kv.modRevision);
      this.cursors.delete(poolId);
      this.taken.delete(poolId);
      this.ranges.delete(poolId);
    }
  }

  /** Called when this host's CreateNetwork uses the pool: later address requests are containers. */
  async bindPool(poolId: string, bound: boolean): Promise<void> {
    const ref = parsePoolId(poolId);
    await updateJson<PoolRecord>(this.deps.store, this.deps.keys.pool(ref.space, ref.pool), (cur) => {
      if (!cur) {
        if (bound) throw unknownPool(poolId);
        return undefined;
      }
      const mine = cur.hosts[this.deps.host];
      if (!mine) {
        if (bound) throw vxError('VXNET_ERR_UNKNOWN_POOL', `pool ${poolId} was not requested on host ${this.deps.host}`);
        return undefined;
      }
      if (mine.bound === bound) return undefined;
      return { ...cur, hosts: { ...cur.hosts, [this.deps.host]: { ...mine, bound } } };
    });
  }

  async getPool(poolId: string): Promise<PoolRecord | null> {
    const ref = parsePoolId(poolId);
    const got = await getJson<PoolRecord>(this.deps.store, this.deps.keys.pool(ref.space, ref.pool));
    return got ? got.value : null;
  }

  async requestAddress(req: AddressRequest): Promise<{ address: string; kind: AddressKind }> {
    const ref = parsePoolId(req.poolId);
    // "Any free address" reads the pool record from the watched index: what it uses there (the
    // ip-range, the gateway, who shares the pool) only steers the search, and the address's own
    // create-if-absent decides. Requests naming an address or the gateway read the store.
    const hinted = req.address === '' && req.options?.RequestAddressType !== GATEWAY_REQUEST ? this.index.peek(this.deps.keys.pool(ref.space, ref.pool)) : null;
    const rec = (hinted?.value as PoolRecord | null | undefined) ?? (await this.getPool(req.poolId));
    if (!rec) throw unknownPool(req.poolId);
    const kind = this.kindOf(req, rec);
    if (kind === 'container' && req.address === '') {
      const range = this.rangeOf(req.poolId, rec);
      const ip = await this.allocateNext(req.poolId, ref, rec, range);
      return { address: `${ip}/${range.cidr.prefix}`, kind };
    }
    const pool = parseCidr(rec.pool) as Cidr;
    const ip = kind === 'gateway' && req.address === '' ? bigIntToIp(usableRange(pool).first, pool.family) : req.address;
    if (ip === '') throw badRequest(`aux address request for pool ${req.poolId} names no address`);
    const parsed = parseIp(ip);
    if (!parsed) throw badRequest(`invalid IP address "${ip}"`);
    const { first, last } = usableRange(pool);
    if (!containsIp(pool, parsed) || parsed.value < first || parsed.value > last) {
      throw vxError('VXNET_ERR_ADDRESS_OUTSIDE_POOL', `address ${ip} is not a usable address of subnet ${rec.pool}`);
    }
    const canonical = bigIntToIp(parsed.value, parsed.family);
    if (kind === 'gateway') await this.setPoolGateway(req.poolId, ref, canonical);
    if (kind === 'container') {
      const key = this.deps.keys.address(ref.space, ref.pool, canonical);
      const mine = JSON.stringify({ kind, host: this.deps.host, at: Date.now() } satisfies AddressRecord);
      // The global space serves swarm's allocator, which keeps its own replicated books: a
      // specific address it asks for is one it already holds (a new leader restoring its state
      // asks again for every address the old leader took), so the request takes the record over.
      const taken = !(await this.deps.store.createIfAbsent(key, mine)) && !(ref.space === GLOBAL_ADDRESS_SPACE && (await this.takeOver(key, mine)));
      if (taken) throw vxError('VXNET_ERR_ADDRESS_IN_USE', `address ${canonical} is already in use in subnet ${rec.pool}`);
      this.taken.get(req.poolId)?.add(canonical);
    } else {
      await this.addSharedAddress(ref, canonical, kind);
    }
    return { address: `${canonical}/${pool.prefix}`, kind };
  }

  private kindOf(req: AddressRequest, rec: PoolRecord): AddressKind {
    if (req.options?.RequestAddressType === GATEWAY_REQUEST) return 'gateway';
    // Global pools are never bound (swarm's manager allocates, workers CreateNetwork in the
    // local space): every other address asked of them is a task's or a VIP's.
    if (req.address !== '' && !rec.hosts[this.deps.host]?.bound && rec.space !== GLOBAL_ADDRESS_SPACE) return 'aux';
    return 'container';
  }

  /** Rewrites a container address record as this host's; false if it is not a container's. */
  private async takeOver(key: string, mine: string): Promise<boolean> {
    const cur = await getJson<AddressRecord>(this.deps.store, key);
    if (!cur || cur.value.kind !== 'container') return false;
    return this.deps.store.compareAndSwap(key, mine, cur.modRevision);
  }

  private async setPoolGateway(poolId: string, ref: PoolRef, ip: string): Promise<void> {
    await updateJson<PoolRecord>(this.deps.store, this.deps.keys.pool(ref.space, ref.pool), (cur) => {
      if (!cur) throw unknownPool(poolId);
      if (cur.gateway === ip) return undefined;
      if (cur.gateway !== null) {
        throw vxError('VXNET_ERR_ADDRESS_IN_USE', `subnet ${cur.pool} already has gateway ${cur.gateway} (another host chose it); ${ip} cannot be a second one`);
      }
      return { ...cur, gateway: ip };
    });
  }

  private async addSharedAddress(ref: PoolRef, ip: string, kind: AddressKind): Promise<void> {
    const host = this.deps.host;
    await updateJson<AddressRecord>(this.deps.store, this.deps.keys.address(ref.space, ref.pool, ip), (cur) => {
      if (cur && cur.kind !== kind) {
        throw vxError('VXNET_ERR_ADDRESS_IN_USE', `address ${ip} is already in use (as ${cur.kind === 'container' ? 'a container address' : `the ${cur.kind} address`})`);
      }
      const hosts = { ...(cur?.hosts ?? {}) };
      hosts[host] = (hosts[host] ?? 0) + 1;
      return { kind, hosts };
    });
  }

  /**
   * The pool's subnet and the usable addresses of its ip-range (or subnet), parsed when the pool
   * is first asked for an address, not on every RequestAddress (issue 13: parsing them again was
   * a few percent of a driver's CPU under a burst). A record naming another subnet or ip-range
   * (the pool was given back and asked for again differently) is parsed again.
   */
  private rangeOf(poolId: string, rec: PoolRecord): FreeRange {
    const known = this.ranges.get(poolId);
    if (known && known.pool === rec.pool && known.subPool === rec.subPool) return known;
    const cidr = parseCidr(rec.pool) as Cidr;
    const range = parseCidr(rec.subPool ?? rec.pool) as Cidr;
    const poolRange = usableRange(cidr);
    const first = range.base > poolRange.first ? range.base : poolRange.first;
    const lastOfRange = range.base + size(range) - 1n;
    const last = lastOfRange < poolRange.last ? lastOfRange : poolRange.last;
    const fresh: FreeRange = { pool: rec.pool, subPool: rec.subPool, cidr, first, last, span: last - first + 1n };
    this.ranges.set(poolId, fresh);
    return fresh;
  }

  private async allocateNext(poolId: string, ref: PoolRef, rec: PoolRecord, range: FreeRange): Promise<string> {
    const { cidr: pool, first, last, span } = range;
    // Pass 0 trusts this process's picture of what is taken; only when that finds nothing is the
    // pool listed from the store again (addresses other hosts released since). Listing on every
    // request made allocation O(pool size): 157/s across 3 hosts with etcd (bench/).
    for (let pass = 0; pass < 2; pass++) {
      let used = this.taken.get(poolId);
      const fresh = used === undefined || pass === 1;
      if (fresh) {
        used = new Set((await this.deps.store.list(this.deps.keys.addresses(ref.space, ref.pool))).map((kv) => kv.key.slice(kv.key.lastIndexOf('/') + 1)));
        this.taken.set(poolId, used);
      }
      const ip = await this.tryAddresses(poolId, ref, rec, pool, used as Set<string>, first, last, span);
      if (ip) return ip;
      if (fresh) break;
    }
    throw vxError('VXNET_ERR_SUBNET_EXHAUSTED', `no free address left in ${rec.subPool ? `ip-range ${rec.subPool} of ` : ''}subnet ${rec.pool}`);
  }

  /**
   * Where this host starts handing out addresses of a pool. Alone on a pool it starts at the
   * beginning (addresses in order, as Docker's own IPAM does); when several hosts share the pool
   * each starts at its own point of the range, so they do not all race for the same next address.
   */
  private hostOffset(rec: PoolRecord, span: bigint): bigint {
    if (Object.keys(rec.hosts).length < 2) return 0n;
    const h = createHash('sha256').update(this.deps.host).digest();
    return h.readBigUInt64BE(0) % span;
  }

  /** Walks from the cursor past addresses known to be taken; create-if-absent decides. */
  private async tryAddresses(
    poolId: string,
    ref: PoolRef,
    rec: PoolRecord,
    pool: Cidr,
    used: Set<string>,
    first: bigint,
    last: bigint,
    span: bigint,
  ): Promise<string | null> {
    if (rec.gateway) used.add(rec.gateway);
    let attempts = 0;
    if (!this.cursors.has(poolId)) this.cursors.set(poolId, first + this.hostOffset(rec, span));
    for (let n = 0n; n < span && attempts < ALLOC_ATTEMPTS; n++) {
      // The cursor moves before the await, so concurrent requests in this process try
      // different addresses; only other hosts can make a candidate fail.
      let cursor = this.cursors.get(poolId) ?? first;
      if (cursor < first || cursor > last) cursor = first;
      const ip = bigIntToIp(cursor, pool.family);
      this.cursors.set(poolId, cursor + 1n);
      if (used.has(ip)) continue;
      attempts++;
      used.add(ip);
      const won = await this.creates.create(
        this.deps.keys.address(ref.space, ref.pool, ip),
        JSON.stringify({ kind: 'container', host: this.deps.host, at: Date.now() } satisfies AddressRecord),
      );
      if (won) return ip;
      // Another host took it since we last listed: try the next one.
    }
    return null;
  }

  /**
   * Releases an address; with a guard (IpamDeps.releases), a local-space address is not released
   * while a live endpoint of this host holds it: then the holder's endpoint ID is returned and
   * nothing changes.
   */
  async releaseAddress(poolId: string, address: string): Promise<string | null> {
    const ref = parsePoolId(poolId);
    const parsed = parseIp(address);
    if (!parsed) throw badRequest(`invalid IP address "${address}"`);
    // The pool's existence from the watched index when it has it (the address key decides what
    // is released); the gateway question below reads the store.
    if (!this.index.peek(this.deps.keys.pool(ref.space, ref.pool)) && !(await this.getPool(poolId))) throw unknownPool(poolId);
    const ip = bigIntToIp(parsed.value, parsed.family);
    const release = (): Promise<void> => this.releaseNow(poolId, ref, ip);
    // The global space is swarm's allocator's: it releases a task's address on its own schedule
    // (possibly before the task's endpoint is gone on its node) and keeps its own books.
    if (!this.deps.releases || ref.space !== LOCAL_ADDRESS_SPACE) {
      await release();
      return null;
    }
    return this.deps.releases.releaseUnlessHeld(poolId, ip, release);
  }

  /**
   * Makes sure the store holds ip for this host, for CreateEndpoint: a container address in the
   * local space of one of poolIds whose record is missing (released while its CreateEndpoint was
   * on its way, see network/address-claims.ts) is taken again. 'retaken' when it had to be.
   * The global space is swarm's allocator's (its records name the manager): left alone.
   */
  async holdAddress(poolIds: string[], ip: string): Promise<'held' | 'retaken' | 'not-ours'> {
    const parsed = parseIp(ip);
    if (!parsed) return 'not-ours';
    for (const poolId of poolIds) {
      let ref: PoolRef;
      try {
        ref = parsePoolId(poolId);
      } catch {
        continue;
      }
      const pool = parseCidr(ref.pool);
      if (ref.space !== LOCAL_ADDRESS_SPACE || !pool || !containsIp(pool, parsed)) continue;
      const canonical = bigIntToIp(parsed.value, parsed.family);
      const key = this.deps.keys.address(ref.space, ref.pool, canonical);
      if (await this.deps.store.get(key)) return 'held';
      const mine = JSON.stringify({ kind: 'container', host: this.deps.host, at: Date.now() } satisfies AddressRecord);
      if (!(await this.deps.store.createIfAbsent(key, mine))) return 'held';
      this.taken.get(poolId)?.add(canonical);
      return 'retaken';
    }
    return 'not-ours';
  }

  private async releaseNow(poolId: string, ref: PoolRef, ip: string): Promise<void> {
    const host = this.deps.host;
    this.taken.get(poolId)?.delete(ip);
    let kind: AddressKind | null = null;
    await updateJson<AddressRecord>(this.deps.store, this.deps.keys.address(ref.space, ref.pool, ip), (cur) => {
      kind = cur ? cur.kind : null;
      if (!cur) return undefined;
      if (cur.kind === 'container') return cur.host === host ? null : undefined;
      const hosts = { ...(cur.hosts ?? {}) };
      if (!hosts[host]) return undefined;
      if (--hosts[host] <= 0) delete hosts[host];
      return Object.keys(hosts).length === 0 ? null : { ...cur, hosts };
    });
    // A container's address is never the gateway: only a shared (gateway or aux) record, or none
    // at all, may leave the pool's gateway field pointing at a released address.
    if (kind === 'container') return;
    const rec = await this.getPool(poolId);
    if (rec?.gateway === ip) {
      const still = await getJson<AddressRecord>(this.deps.store, this.deps.keys.address(ref.space, ref.pool, ip));
      if (!still) {
        await updateJson<PoolRecord>(this.deps.store, this.deps.keys.pool(ref.space, ref.pool), (cur) =>
          cur && cur.gateway === ip ? { ...cur, gateway: null } : undefined,
        );
      }
    }
  }

  /**
   * Drops everything this host holds in a pool: its pool reference, its share of the gateway and
   * aux addresses and its container addresses. For reconcile, when dockerd removed a network
   * while vxnet was down and its ReleaseAddress/ReleasePool calls were lost.
   */
  async releaseHostFromPool(poolId: string, host = this.deps.host): Promise<void> {
    const ref = parsePoolId(poolId);
    const { store, keys } = this.deps;
    for (const kv of await listJson<AddressRecord>(store, keys.addresses(ref.space, ref.pool))) {
      await updateJson<AddressRecord>(store, kv.key, (cur) => {
        if (!cur) return undefined;
        if (cur.kind === 'container') return cur.host === host ? null : undefined;
        if (!cur.hosts?.[host]) return undefined;
        const hosts = { ...cur.hosts };
        delete hosts[host];
        return Object.keys(hosts).length === 0 ? null : { ...cur, hosts };
      });
    }
    while ((await this.getPool(poolId))?.hosts[host]) await this.releasePool(poolId, host);
    this.taken.delete(poolId);
  }

  /** Every pool a host holds a reference to. */
  async poolsOf(host: string): Promise<string[]> {
    const out: string[] = [];
    for (const space of ADDRESS_SPACES) {
      for (const { value } of await listJson<PoolRecord>(this.deps.store, this.deps.keys.pools(space))) {
        if (value.hosts[host]) out.push(this.poolIdFor(space, value.pool));
      }
    }
    return out;
  }

  /** Pools on which a network of this host is created (container requests come from them). */
  async boundPools(): Promise<string[]> {
    const out: string[] = [];
    for (const space of ADDRESS_SPACES) {
      for (const { value } of await listJson<PoolRecord>(this.deps.store, this.deps.keys.pools(space))) {
        if (value.hosts[this.deps.host]?.bound) out.push(this.poolIdFor(space, value.pool));
      }
    }
    return out;
  }

  /** Addresses in use per pool and kind, from one store read: cheap enough for every metrics scrape. */
  async addressUsage(): Promise<AddressUsage[]> {
    const prefix = this.deps.keys.allAddresses();
    const usage = new Map<string, AddressUsage>();
    for (const kv of await listJson<AddressRecord>(this.deps.store, prefix)) {
      const [space, subnet] = kv.key.slice(prefix.length).split('/');
      const poolId = this.poolIdFor(space, decodeCidr(subnet));
      const id = `${poolId} ${kv.value.kind}`;
      const u = usage.get(id) ?? { poolId, kind: kv.value.kind, count: 0 };
      u.count++;
      usage.set(id, u);
    }
    return [...usage.values()];
  }

  /** Container addresses this host holds in a pool (for reconcile and tests). */
  async addressesOf(poolId: string): Promise<Array<{ ip: string; record: AddressRecord }>> {
    const ref = parsePoolId(poolId);
    return (await listJson<AddressRecord>(this.deps.store, this.deps.keys.addresses(ref.space, ref.pool))).map((kv) => ({
      ip: kv.key.slice(kv.key.lastIndexOf('/') + 1),
      record: kv.value,
    }));
  }
}

/** The first multiple of step at or above v. */
function alignUp(v: bigint, step: bigint): bigint {
  return ((v + step - 1n) / step) * step;
}

function addHostRef(rec: PoolRecord, host: string): PoolRecord {
  const mine = rec.hosts[host] ?? { refs: 0, bound: false };
  return { ...rec, hosts: { ...rec.hosts, [host]: { ...mine, refs: mine.refs + 1 } } };
}

/**
 * Pool IDs already parsed: every IPAM call names one, and parsing (a CIDR and its text again) was
 * a few percent of a driver's CPU under a RequestAddress burst (issue 13). Only valid IDs are
 * kept, and the memo is emptied when it is full: IDs come from callers, so it must stay bounded.
 */
const parsedPoolIds = new Map<string, PoolRef>();
const PARSED_POOL_IDS_MAX = 1024;

export function parsePoolId(poolId: string): PoolRef {
  const known = parsedPoolIds.get(poolId);
  if (known) return { ...known };
  const ref = parsePoolIdText(poolId);
  if (parsedPoolIds.size >= PARSED_POOL_IDS_MAX) parsedPoolIds.clear();
  parsedPoolIds.set(poolId, ref);
  return { ...ref };
}

function parsePoolIdText(poolId: string): PoolRef {
  const slash = typeof poolId === 'string' ? poolId.indexOf('/') : -1;
  const space = slash > 0 ? poolId.slice(0, slash) : '';
  const pool = slash > 0 ? poolId.slice(slash + 1) : '';
  const c = parseCidr(pool);
  if (!ADDRESS_SPACES.includes(space) || !c || cidrToString(c) !== pool) {
    throw badRequest(`invalid PoolID "${poolId}": vxnet pool IDs look like ${LOCAL_ADDRESS_SPACE}/10.1.0.0/24`);
  }
  return { space, pool };
}

function badRequest(msg: string): Error {
  return vxError('VXNET_ERR_BAD_REQUEST', msg);
}

function unknownPool(poolId: string): Error {
  return vxError('VXNET_ERR_UNKNOWN_POOL', `unknown pool ${poolId}`);
}

// The policy engine: keeps the kernel's `inet vxnet-policy` sets (dataplane/policy-table.ts) in
// step with the store. It reads networks/ and this host's endpoints from the plugin calls' record
// cache (network/record-cache.ts), mirrors names/ itself (StoreMirror), and after every change of
// either recomputes this host's elements (resolve.ts) and applies the difference in one nf_tables
// transaction (over netlink; `nft -f` only for the table's structure and the IPv6 interval sets).
// Changes are coalesced: a burst of records costs one transaction.
//
// Other hosts' endpoints are not held: the sets are decided from this host's endpoints, and
// the sources a rule names are found in names/ records (which carry their addresses). Only
// explain() needs them (to explain a container of another host), and reads them from the store
// when asked. Mirroring every endpoint of the cluster cost ~640 bytes each (6.4 MB with 10,000;
// heap snapshot, bench:memory) and a JSON parse per event of every host; a second copy of the
// networks and local endpoints beside the record cache's, ~1 KB per network and ~600 bytes per
// local endpoint.
//
// Fail closed, scoped: a new local endpoint without rules in its options is "pending" — in
// policed_in with nothing allowed — until vxnet knows whether its container carries rules as
// labels. Pending ends when
//   (a) its container was read from dockerd (the name publisher wrote its names/ record, labels
//       included),
//   (b) dockerd answers that it does not know the endpoint's network, or has the network but not
//       the endpoint well after it was made (an endpoint made by plugin calls alone: no
//       container, so no labels can exist), or
//   (c) there is no dockerd to ask (no socket) or nothing reads labels (names service off).
// While dockerd does not answer, a pending endpoint stays closed.
// Nothing is kept outside the store and the kernel: a restarted driver rebuilds the sets from the
// records in one transaction, and an endpoint whose names/ record survived is not pending again.
import type { Logger } from '../log';
import type { Store } from '../store/types';
import { decode, Keys } from '../store/json';
import { decodeEndpoint, EndpointRecord, NetworkRecord } from '../network/records';
import { StoreMirror } from '../network/store-mirror';
import type { RecordCache } from '../network/record-cache';
import { NameRecord, nameKey, namesPrefix, splitKey } from '../names/records';
import { isolated, resolvePolicy, EndpointPolicy, PolicyInput, PolicyMemo, PolicyPlan } from './resolve';
import { emptyPolicySets, PolicySets } from '../dataplane/policy-table';
import { vxError } from '../errors';
import { explain, Explanation } from './explain';
import { OPT_ALLOW, Proto } from './parse';
import type { Family } from '../ipam/cidr';

export type { Explanation } from './explain';
export type { EndpointPolicy } from './resolve';

/** How often pending endpoints are looked up in dockerd. */
const PENDING_CHECK_MS = 250;
/**
 * dockerd lists an endpoint on its network once the container joined it; one it still does not
 * list this long after CreateEndpoint belongs to no container (plugin calls alone).
 */
export const UNLISTED_ENDPOINT_GRACE_MS = 3000;

export type EndpointLookup = (networkId: string, endpointId: string) => Promise<'listed' | 'unlisted' | 'no-network' | 'unreachable'>;

export interface PolicyKernel {
  /** What the kernel holds; null when the table or one of its enforcing rules is missing. */
  list(): Promise<PolicySets | null>;
  replace(sets: PolicySets): Promise<void>;
  update(from: PolicySets, to: PolicySets, structure?: boolean): Promise<number>;
  /** Packets dropped per policed address; null when the table cannot be read. */
  drops(): Promise<{ in: Map<string, number>; out: Map<string, number> } | null>;
}

export interface PolicyEngineDeps {
  store: Store;
  keys: Keys;
  host: string;
  /** Networks and this host's endpoints (started by its owner before start()). */
  records: Pick<RecordCache, 'onChange' | 'isReady' | 'whenLoaded' | 'eachNetwork' | 'eachEndpoint' | 'endpoint' | 'wrote'>;
  kernel: PolicyKernel;
  /** null: no dockerd to ask, or nothing publishes labels: no endpoint is ever pending (c). */
  lookup: EndpointLookup | null;
  log: Logger;
  now?: () => number;
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class PolicyEngine {
  private readonly names: StoreMirror<NameRecord>;
  /** Local endpoints ("lnet/endpointId") found to have no container to read labels from (b). */
  private readonly noLabels = new Set<string>();
  private applied: PolicySets | null = null;
  /** Drop counters last read per "direction ip", and the sums per "network direction". */
  private readonly dropSeen = new Map<string, number>();
  private readonly dropTotals = new Map<string, number>();
  /** Bad labels already logged (once each). */
  private reported = new Set<string>();
  /** Networks with a local endpoint that has allow rules (options or labels): set by input(). */
  private sourced = new Set<string>();
  /** Each local endpoint's last decision, reused while its records stay the same (resolve.ts). */
  private readonly memo: PolicyMemo = new Map();
  private plan: PolicyPlan = { elements: emptyPolicySets(), endpoints: [] };
  private chain: Promise<void> = Promise.resolve();
  private scheduled: Promise<void> | null = null;
  private checkTimer: NodeJS.Timeout | null = null;
  private checking = false;
  private started = false;
  private closed = false;

  constructor(private readonly deps: PolicyEngineDeps) {
    this.names = new StoreMirror<NameRecord>({
      store: deps.store,
      prefixes: [namesPrefix(deps.keys)],
      parse: (kv) => decode<NameRecord>(kv),
      log: deps.log,
      matters: (key, before, after) => this.nameMatters(key, before, after),
      // After a failed apply the next change of a network, name or local endpoint (or
      // reconcile) retries it.
      onChange: () => this.changed(),
    });
    // Another host's endpoint is not in the record cache, so its events change nothing here:
    // with thousands of endpoints, recomputing on each of them kept a driver busy for the whole
    // burst.
    deps.records.onChange(() => this.changed());
  }

  /**
   * Whether a names/ record can change this host's sets: its own (labels, pending), or one on a
   * network where a local endpoint has allow rules (a source they may name). Every host writes
   * a name record per container; with 10,000 across 3 hosts, recomputing on each of the others'
   * took ~25 s of CPU per driver during the burst (bench:memory, --cpu-prof).
   */
  private nameMatters(key: string, before: NameRecord | undefined, after: NameRecord | undefined): boolean {
    const { host, keys } = this.deps;
    if (before?.host === host || after?.host === host) return true;
    const k = splitKey(key, namesPrefix(keys));
    return k !== null && this.sourced.has(k[0]);
  }

  private changed(): void {
    if (this.started) void this.sync();
  }

  /** Loads the records and makes the kernel match them (one transaction) before returning. */
  async start(): Promise<void> {
    await this.names.start();
    this.started = true;
    await this.sync();
  }

  close(): void {
    this.closed = true;
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.names.close();
  }

  /**
   * Join: the endpoint's record is in the kernel's view before the container gets its
   * interface (a pending endpoint is closed from its first packet on).
   */
  async endpointJoined(key: string, rec: EndpointRecord, net: NetworkRecord): Promise<void> {
    // CreateEndpoint's write is in the record cache already, unless the cache was reloading then.
    const k = splitKey(key, this.deps.keys.endpoints());
    if (!k || !this.deps.records.endpoint(...k)) this.deps.records.wrote(key, JSON.stringify(rec));
    try {
      await this.sync();
    } catch (err) {
      // An endpoint with rules, or on an isolated network, must not run open: the Join fails.
      // Others would only lose the labels' fail-closed window; they join (the error is logged).
      if (rec.allow !== undefined || rec.egress !== undefined || isolated(net)) throw err;
    }
  }

  /**
   * Recomputes and applies (coalesced: calls made while one waits share it). A pass starts at the
   * event loop's next turn, so the changes of one turn (a batch of watch events, the plugin calls
   * read with them) share it: started at once, a pass ran after nearly every change while 3,300
   * endpoints were created on a driver (bench:memory: a CreateEndpoint, its watch event, a Join).
   */
  sync(): Promise<void> {
    if (this.scheduled) return this.scheduled;
    const run = this.chain.then(nextTurn).then(async () => {
      this.scheduled = null;
      if (this.closed) return;
      await this.applyNow();
    });
    this.scheduled = run;
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** The effective policy of this host's endpoints (status, explain). */
  endpoints(): EndpointPolicy[] {
    return this.plan.endpoints;
  }

  /**
   * Packets refused so far per network and direction: the kernel counts per policed address
   * (since its element was added); the deltas are summed here by the address's network.
   */
  async drops(): Promise<Array<{ network: string; direction: 'in' | 'out'; packets: number }>> {
    const counts = await this.deps.kernel.drops();
    if (!counts) return [];
    // Both families: the kernel counts IPv6 drops per address too (drop_in6 / drop_out6).
    const netOf = new Map(this.plan.endpoints.flatMap((e) => [e.ip, e.ip6].filter((a): a is string => a !== null).map((a) => [a, e.lnet] as const)));
    for (const [direction, perIp] of [['in', counts.in], ['out', counts.out]] as const) {
      for (const [ip, packets] of perIp) {
        const lnet = netOf.get(ip);
        if (!lnet) continue;
        const seenKey = `${direction} ${ip}`;
        const before = this.dropSeen.get(seenKey) ?? 0;
        // Fewer than before: the element was removed and added again (its counter restarted).
        const delta = packets >= before ? packets - before : packets;
        this.dropSeen.set(seenKey, packets);
        const totalKey = `${lnet} ${direction}`;
        this.dropTotals.set(totalKey, (this.dropTotals.get(totalKey) ?? 0) + delta);
      }
    }
    return [...this.dropTotals].map(([k, packets]) => {
      const [network, direction] = k.split(' ') as [string, 'in' | 'out'];
      return { network, direction, packets };
    });
  }

  /**
   * `vxnet policy explain`: may `from` open a connection to `to` on port/proto, and why. Other
   * hosts' endpoints are read from the store (the record cache holds this host's only).
   */
  async explain(from: string, to: string, port: number, proto: Proto, family?: Family): Promise<Explanation> {
    const input = await this.loadedInput(true);
    const { store, keys, log } = this.deps;
    for (const kv of await store.list(keys.endpoints())) {
      const k = splitKey(kv.key, keys.endpoints());
      if (!k || input.endpoints.has(k.join('/'))) continue;
      try {
        const ep = decodeEndpoint(kv);
        if (ep.host !== this.deps.host) input.endpoints.set(k.join('/'), ep);
      } catch (err) {
        log.warn({ err, key: kv.key }, 'bad endpoint record left out of the explanation');
      }
    }
    try {
      return explain(input, from, to, port, proto, family);
    } catch (err) {
      throw vxError('VXNET_ERR_BAD_REQUEST', (err as Error).message);
    }
  }

  /**
   * Reconcile: compares the kernel's table with what the records say; any difference (a missing
   * table or chain rule, an element too many or too few) is listed, and fixed by one replacing
   * transaction.
   */
  reconcile(dryRun: boolean): Promise<string[]> {
    // In the chain, not merely after it: a pass started between the listing's two nft reads (the
    // inet table, then the bridge table's copies) made them differ, read as "missing" (a needless
    // replace, seen once when the plugin's activation reconcile met a Join).
    const run = this.chain.then(() => this.reconcileNow(dryRun));
    this.chain = run.then(() => undefined, () => undefined);
    return run;
  }

  private async reconcileNow(dryRun: boolean): Promise<string[]> {
    const want = resolvePolicy(await this.loadedInput()).elements;
    const have = await this.deps.kernel.list();
    const changes: string[] = [];
    if (have === null) changes.push(`table inet vxnet-policy missing or incomplete (${setsSummary(want)})`);
    else {
      for (const name of Object.keys(want) as Array<keyof PolicySets>) {
        const h = new Set(have[name]);
        const w = new Set(want[name]);
        for (const e of want[name]) if (!h.has(e)) changes.push(`add ${name} ${e}`);
        for (const e of have[name]) if (!w.has(e)) changes.push(`remove ${name} ${e}`);
      }
    }
    if (changes.length > 0 && !dryRun) {
      await this.deps.kernel.replace(want);
      this.applied = want;
    }
    return changes;
  }

  private async applyNow(): Promise<void> {
    // While a mirror reloads (a watch resync) it lists nothing: deciding from that would take
    // every element out, an open window. Wait for the reload; if it failed, keep what is applied
    // (the next successful load calls sync again).
    await this.whenLoaded();
    const input = this.input();
    if (input === null) {
      this.deps.log.warn('policy records are not loaded (store reload failed): the sets stay as they are');
      return;
    }
    const plan = resolvePolicy(input, this.memo);
    const sets = plan.elements;
    try {
      if (this.applied === null) {
        // First run (or after a failure): start from what the kernel holds, so that a restart
        // changes only what differs (one transaction either way: never an open window).
        const have = await this.deps.kernel.list();
        if (have) await this.deps.kernel.update(have, sets, true);
        else await this.deps.kernel.replace(sets);
      } else await this.deps.kernel.update(this.applied, sets);
      this.applied = sets;
      this.plan = plan;
    } catch (err) {
      // The next change (or reconcile) replaces the whole content.
      this.applied = null;
      this.deps.log.error({ err }, 'could not update the policy sets');
      throw err;
    }
    const bad = new Set<string>();
    for (const ep of plan.endpoints) {
      if (!ep.error) continue;
      const id = `${ep.endpointId} ${ep.error}`;
      bad.add(id);
      if (!this.reported.has(id)) this.deps.log.warn({ endpoint: ep.endpointId, container: ep.container, error: ep.error }, 'bad policy label: container stays closed');
    }
    this.reported = bad;
    if (input.pending.size > 0) this.scheduleCheck();
  }

  /** input() once a reload in progress is over; an error when the records are not loaded. */
  private async loadedInput(allNames = false): Promise<PolicyInput> {
    await this.whenLoaded();
    const input = this.input(allNames);
    if (!input) throw vxError('VXNET_ERR_STORE', 'the policy records are not loaded (the store reload after a watch resync failed); try again');
    return input;
  }

  private async whenLoaded(): Promise<void> {
    await Promise.all([this.deps.records.whenLoaded(), this.names.whenLoaded()]);
  }

  /**
   * The records resolvePolicy decides from (this host's endpoints); null while the record cache
   * or the names mirror does not hold a full list (a reload after a watch resync). The names are
   * those resolvePolicy reads: the local endpoints' own, and every name of a network where a
   * local endpoint has allow rules (the sources they may name); `allNames` (explain, which finds
   * containers by name anywhere) takes every one.
   */
  private input(allNames = false): PolicyInput | null {
    const { keys, host, records } = this.deps;
    if (!records.isReady() || !this.names.isReady()) return null;
    const networks = new Map<string, NetworkRecord>();
    const endpoints = new Map<string, EndpointRecord>();
    const names = new Map<string, NameRecord>();
    records.eachNetwork((rec) => networks.set(rec.lnet, rec));
    records.eachEndpoint((key, rec) => {
      const k = splitKey(key, keys.endpoints());
      if (k) endpoints.set(k.join('/'), rec);
    });
    const sourced = new Set<string>();
    for (const [key, ep] of endpoints) {
      const [lnet, endpointId] = key.split('/');
      const rec = this.names.get(nameKey(keys, lnet, endpointId));
      if (rec) names.set(key, rec);
      if (ep.allow !== undefined || rec?.labels?.[OPT_ALLOW] !== undefined) sourced.add(lnet);
    }
    this.sourced = sourced;
    const np = namesPrefix(keys);
    const take = (key: string, rec: NameRecord): void => {
      const k = splitKey(key, np);
      if (k) names.set(k.join('/'), rec);
    };
    if (allNames) this.names.each(np, take);
    else for (const lnet of sourced) this.names.each(namesPrefix(keys, lnet), take);
    const pending = new Set<string>();
    for (const [key, ep] of endpoints) {
      if (this.isPending(key, ep, names)) pending.add(key);
    }
    for (const key of this.noLabels) if (!endpoints.has(key)) this.noLabels.delete(key);
    return { host, networks, endpoints, names, pending };
  }

  private isPending(key: string, ep: EndpointRecord, names: Map<string, NameRecord>): boolean {
    if (this.deps.lookup === null) return false; // (c)
    if (ep.allow !== undefined || ep.egress !== undefined) return false; // rules known at CreateEndpoint
    if (names.has(key)) return false; // (a)
    return !this.noLabels.has(key); // (b)
  }

  private scheduleCheck(): void {
    if (this.checkTimer || this.closed) return;
    this.checkTimer = setTimeout(() => {
      this.checkTimer = null;
      void this.checkPending();
    }, PENDING_CHECK_MS);
    this.checkTimer.unref();
  }

  /** (b): asks dockerd about each pending endpoint. */
  private async checkPending(): Promise<void> {
    const lookup = this.deps.lookup;
    if (this.checking || !lookup || this.closed) return;
    this.checking = true;
    let changed = false;
    try {
      // Not loaded: the load's own sync schedules the next check.
      const input = this.input();
      const now = (this.deps.now ?? Date.now)();
      for (const key of input?.pending ?? []) {
        const ep = input?.endpoints.get(key);
        if (!ep) continue;
        const answer = await lookup(ep.networkId, key.split('/')[1]);
        const old = now - (ep.at ?? 0) > UNLISTED_ENDPOINT_GRACE_MS;
        if (answer === 'no-network' || (answer === 'unlisted' && old)) {
          this.noLabels.add(key);
          changed = true;
          this.deps.log.info({ endpoint: key, answer }, 'no container behind this endpoint: no labels, not pending');
        }
      }
    } catch (err) {
      this.deps.log.debug({ err }, 'pending endpoint check failed');
    } finally {
      this.checking = false;
    }
    if (changed) await this.sync().catch(() => undefined);
    else if ((this.input()?.pending.size ?? 0) > 0) this.scheduleCheck();
  }
}

function setsSummary(s: PolicySets): string {
  return `policy sets: ${s.policedIn.length + s.policedIn6.length} policed in, ${s.policedOut.length + s.policedOut6.length} policed out, ${s.allowIn.length + s.allowOut.length + s.allowOut6.length} allow elements`;
}

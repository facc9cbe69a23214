// The engine's fail-closed scope with a real (embedded) store, a recording kernel and a scripted
// dockerd answer: pending ends when the container is read, when dockerd does not know the
// endpoint, or when there is no dockerd; it does not end while dockerd does not answer.
import pino from 'pino';
import { PolicyEngine, EndpointLookup, PolicyEngineDeps, UNLISTED_ENDPOINT_GRACE_MS } from '../../../src/policy';
import { RecordCache } from '../../../src/network/record-cache';
import { emptyPolicySets, PolicySets } from '../../../src/dataplane/policy-table';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { TEST_KEYS } from '../../helpers/plugin-app';
import { eventually } from '../../helpers/eventually';
import type { EmbeddedStore } from '../../../src/store/embedded';
import type { Store, WatchHandlers } from '../../../src/store/types';

const silent = pino({ level: 'silent' });
const NET = { lnet: 'n1', vni: 256, ipv4: { subnet: '10.5.0.0/24', gateway: '10.5.0.1', poolId: null }, ipv6: null, mtu: 1450, internal: false };

/** An engine over the store with its record cache started first, as the daemon does. */
async function newEngine(store: Store, kernel: RecordingKernel, lookup: EndpointLookup | null): Promise<PolicyEngine> {
  const records = new RecordCache({ store, keys: TEST_KEYS, host: 'h1', log: silent });
  await records.start();
  const deps: PolicyEngineDeps = { store, keys: TEST_KEYS, host: 'h1', records, kernel, lookup, log: silent };
  const engine = new PolicyEngine(deps);
  const close = engine.close.bind(engine);
  engine.close = () => {
    close();
    records.close();
  };
  return engine;
}

class RecordingKernel {
  sets: PolicySets = emptyPolicySets();
  async list(): Promise<PolicySets | null> {
    return this.sets;
  }
  async replace(s: PolicySets): Promise<void> {
    this.sets = s;
  }
  async update(_from: PolicySets, to: PolicySets): Promise<number> {
    this.sets = to;
    return 1;
  }
  /** What the kernel's counting sets say (per address, both families). */
  counts: { in: Map<string, number>; out: Map<string, number> } | null = null;
  async drops(): Promise<{ in: Map<string, number>; out: Map<string, number> } | null> {
    return this.counts;
  }
}

describe('policy engine: fail closed, scoped', () => {
  let store: EmbeddedStore;
  let engine: PolicyEngine | null = null;
  const kernel = new RecordingKernel();
  const endpointKey = TEST_KEYS.endpoint('n1', 'e1');

  beforeEach(async () => {
    store = tmpEmbeddedStore();
    kernel.sets = emptyPolicySets();
    kernel.counts = null;
    await store.createIfAbsent(TEST_KEYS.network('n1'), JSON.stringify(NET));
  });
  afterEach(async () => {
    engine?.close();
    await store.close();
  });

  async function start(lookup: EndpointLookup | null, at = Date.now()): Promise<PolicyEngine> {
    engine = await newEngine(store, kernel, lookup);
    await engine.start();
    const rec = { networkId: 'd1', host: 'h1', vtep: null, mac: '02:00:00:00:00:01', ipv4: '10.5.0.2/24', ipv6: null, at };
    await store.createIfAbsent(endpointKey, JSON.stringify(rec));
    await engine.endpointJoined(endpointKey, rec, NET);
    return engine;
  }

  it('closes a new endpoint until its container is read (names record), then opens it', async () => {
    await start(async () => 'listed');
    expect(kernel.sets.policedIn).toEqual(['10.5.0.2']);
    expect(engine!.endpoints()[0].pending).toBe(true);
    const name = { host: 'h1', containerId: 'c1', network: 'net', names: ['web'], ipv4: '10.5.0.2', ipv6: null, labels: {} };
    await store.createIfAbsent(`${TEST_KEYS.prefix}names/n1/e1`, JSON.stringify(name));
    await eventually('opened', () => kernel.sets.policedIn.length === 0, 2000);
  });

  it('ends pending when dockerd does not have the network (no container, no labels)', async () => {
    await start(async () => 'no-network');
    expect(kernel.sets.policedIn).toEqual(['10.5.0.2']);
    await eventually('opened', () => kernel.sets.policedIn.length === 0, 2000);
  });

  it('ends pending for an endpoint dockerd does not list only once it is old enough', async () => {
    await start(async () => 'unlisted', Date.now() - UNLISTED_ENDPOINT_GRACE_MS - 1000);
    await eventually('opened', () => kernel.sets.policedIn.length === 0, 2000);
  });

  it('keeps it closed while dockerd does not answer', async () => {
    await start(async () => 'unreachable', Date.now() - UNLISTED_ENDPOINT_GRACE_MS - 1000);
    await new Promise((r) => setTimeout(r, 800));
    expect(kernel.sets.policedIn).toEqual(['10.5.0.2']);
  });

  it('never closes anything without a dockerd to ask', async () => {
    await start(null);
    expect(kernel.sets.policedIn).toEqual([]);
  });

  it('does not recompute for another host\'s endpoints, but still explains them', async () => {
    await start(null);
    const passes = jest.spyOn(kernel, 'update');
    const remote = { networkId: 'd1', host: 'h2', vtep: '192.0.2.2', mac: '02:00:00:00:00:09', ipv4: '10.5.0.9/24', ipv6: null };
    await store.createIfAbsent(TEST_KEYS.endpoint('n1', 'e9'), JSON.stringify(remote));
    await eventually('remote endpoint seen', async () => {
      try {
        return (await engine!.explain('10.5.0.2', '10.5.0.9', 80, 'tcp')).to.host === 'h2';
      } catch {
        return false;
      }
    }, 2000);
    // A local endpoint after it: the watch is ordered, so this one pass is the only one.
    const local = { networkId: 'd1', host: 'h1', vtep: null, mac: '02:00:00:00:00:03', ipv4: '10.5.0.3/24', ipv6: null };
    await store.createIfAbsent(TEST_KEYS.endpoint('n1', 'e3'), JSON.stringify(local));
    await eventually('local endpoint applied', () => engine!.endpoints().some((e) => e.endpointId === 'e3'), 2000);
    expect(passes).toHaveBeenCalledTimes(1);
  });

  it('recomputes for another host\'s names only where a local rule may name them', async () => {
    await start(null);
    const passes = jest.spyOn(kernel, 'update');
    const name = (host: string, n: string, ip: string) => JSON.stringify({ host, containerId: `c-${n}`, network: 'net', names: [n], ipv4: ip, ipv6: null, labels: {} });
    // n2 has no local endpoint with rules: another host's name there changes nothing here.
    await store.createIfAbsent(TEST_KEYS.network('n2'), JSON.stringify({ ...NET, lnet: 'n2', vni: 257, ipv4: { ...NET.ipv4, subnet: '10.6.0.0/24', gateway: '10.6.0.1' } }));
    await store.createIfAbsent(`${TEST_KEYS.prefix}names/n2/r1`, name('h2', 'far', '10.6.0.9'));
    await store.createIfAbsent(`${TEST_KEYS.prefix}names/n1/r1`, name('h2', 'api', '10.5.0.9'));
    const local = { networkId: 'd1', host: 'h1', vtep: null, mac: '02:00:00:00:00:03', ipv4: '10.5.0.3/24', ipv6: null, allow: 'api:80' };
    await store.createIfAbsent(TEST_KEYS.endpoint('n1', 'e3'), JSON.stringify(local));
    await eventually('rule applied', () => kernel.sets.allowIn.some((e) => e.startsWith('10.5.0.3 . 10.5.0.9')), 2000);
    const after = passes.mock.calls.length;
    // Now n1 has a local rule naming sources: another host's new name there is read at once.
    await store.createIfAbsent(`${TEST_KEYS.prefix}names/n1/r2`, name('h2', 'api', '10.5.0.20'));
    await eventually('second source applied', () => kernel.sets.allowIn.some((e) => e.startsWith('10.5.0.3 . 10.5.0.20')), 2000);
    expect(passes.mock.calls.length).toBe(after + 1);
    // ... and on n2 still nothing.
    await store.createIfAbsent(`${TEST_KEYS.prefix}names/n2/r2`, name('h2', 'far2', '10.6.0.10'));
    await new Promise((r) => setTimeout(r, 300));
    expect(passes.mock.calls.length).toBe(after + 1);
    // The plan decided from the trimmed names equals the one from every name (reconcile's check).
    expect(await engine!.reconcile(true)).toEqual([]);
  });
});

describe('policy engine: drops by network, both families', () => {
  it('sums the per-address counters of IPv4 and IPv6 addresses into their network, by direction', async () => {
    const store = tmpEmbeddedStore();
    const kernel = new RecordingKernel();
    const net6 = { ...NET, lnet: 'n6', ipv6: { subnet: 'fd05::/64', gateway: 'fd05::1', poolId: null }, icc: false };
    await store.createIfAbsent(TEST_KEYS.network('n6'), JSON.stringify(net6));
    const engine = await newEngine(store, kernel, null);
    try {
      await engine.start();
      const rec = { networkId: 'd6', host: 'h1', vtep: null, mac: '02:00:00:00:00:02', ipv4: '10.5.0.2/24', ipv6: 'fd05::2/64', at: Date.now() };
      const key = TEST_KEYS.endpoint('n6', 'e6');
      await store.createIfAbsent(key, JSON.stringify(rec));
      await engine.endpointJoined(key, rec, net6);
      // Isolated network: both addresses are policed (and counted) in their own family's sets.
      expect(kernel.sets.policedIn).toEqual(['10.5.0.2']);
      expect(kernel.sets.policedIn6).toEqual(['fd05::2']);
      expect(engine.endpoints()[0].ip6).toBe('fd05::2');
      kernel.counts = { in: new Map([['10.5.0.2', 3], ['fd05::2', 4], ['fd99::9', 50]]), out: new Map([['fd05::2', 2]]) };
      expect(await engine.drops()).toEqual([
        { network: 'n6', direction: 'in', packets: 7 },
        { network: 'n6', direction: 'out', packets: 2 },
      ]);
      kernel.counts = { in: new Map([['10.5.0.2', 3], ['fd05::2', 10]]), out: new Map([['fd05::2', 2]]) };
      expect(await engine.drops()).toEqual([
        { network: 'n6', direction: 'in', packets: 13 },
        { network: 'n6', direction: 'out', packets: 2 },
      ]);
    } finally {
      engine.close();
      await store.close();
    }
  });
});

describe('policy engine: the driver\'s own deletes', () => {
  it('takes an endpoint this process deleted out of the sets (its watch event reports nothing)', async () => {
    // Watch events trail the writes' replies, as over etcd: the cache hears of the delete first.
    const inner = tmpEmbeddedStore();
    const store: Store = {
      get: (k) => inner.get(k),
      list: (p) => inner.list(p),
      createIfAbsent: (k, v, o) => inner.createIfAbsent(k, v, o),
      compareAndSwap: (k, v, r, o) => inner.compareAndSwap(k, v, r, o),
      delete: (k, r) => inner.delete(k, r),
      revision: () => inner.revision(),
      watch: (p, r, h) =>
        inner.watch(p, r, {
          ...h,
          onEvents: (events, rev) => void setTimeout(() => h.onEvents(events, rev), 20),
        }),
      close: () => inner.close(),
    };
    const kernel = new RecordingKernel();
    const isolatedNet = { ...NET, icc: false };
    await store.createIfAbsent(TEST_KEYS.network('n1'), JSON.stringify(isolatedNet));
    const records = new RecordCache({ store, keys: TEST_KEYS, host: 'h1', log: silent });
    await records.start();
    const engine = new PolicyEngine({ store, keys: TEST_KEYS, host: 'h1', records, kernel, lookup: null, log: silent });
    try {
      await engine.start();
      const rec = { networkId: 'd1', host: 'h1', vtep: null, mac: '02:00:00:00:00:02', ipv4: '10.5.0.2/24', ipv6: null, at: Date.now() };
      const key = TEST_KEYS.endpoint('n1', 'e2');
      const raw = JSON.stringify(rec);
      await store.createIfAbsent(key, raw);
      records.wrote(key, raw);
      await engine.endpointJoined(key, rec, isolatedNet);
      expect(kernel.sets.policedIn).toEqual(['10.5.0.2']);
      // As DeleteEndpoint does: the store's delete, then the cache told.
      records.removed(key, await store.delete(key));
      await eventually('element removed', () => kernel.sets.policedIn.length === 0, 2000);
      await new Promise((r) => setTimeout(r, 50)); // the delete's own watch event changes nothing
      expect(kernel.sets.policedIn).toEqual([]);
    } finally {
      engine.close();
      records.close();
      await store.close();
    }
  });
});

describe('policy engine: a store reload never empties the sets', () => {
  it('waits for the reload after a watch resync instead of deciding from an empty mirror', async () => {
    const inner = tmpEmbeddedStore();
    // The embedded store never compacts: the resync is triggered by hand, and the reload's list
    // is held until the test lets it go.
    const handlers: WatchHandlers[] = [];
    let release: () => void = () => undefined;
    let gate: Promise<void> | null = null;
    const store: Store = {
      get: (k) => inner.get(k),
      list: async (p) => {
        if (gate) await gate;
        return inner.list(p);
      },
      createIfAbsent: (k, v, o) => inner.createIfAbsent(k, v, o),
      compareAndSwap: (k, v, r, o) => inner.compareAndSwap(k, v, r, o),
      delete: (k, r) => inner.delete(k, r),
      revision: () => inner.revision(),
      watch: (p, r, h) => {
        handlers.push(h);
        return inner.watch(p, r, h);
      },
      close: () => inner.close(),
    };
    const kernel = new RecordingKernel();
    const isolatedNet = { ...NET, icc: false };
    await store.createIfAbsent(TEST_KEYS.network('n1'), JSON.stringify(isolatedNet));
    const engine = await newEngine(store, kernel, null);
    try {
      await engine.start();
      const rec = { networkId: 'd1', host: 'h1', vtep: null, mac: '02:00:00:00:00:02', ipv4: '10.5.0.2/24', ipv6: null, at: Date.now() };
      const key = TEST_KEYS.endpoint('n1', 'e2');
      await store.createIfAbsent(key, JSON.stringify(rec));
      await engine.endpointJoined(key, rec, isolatedNet);
      expect(kernel.sets.policedIn).toEqual(['10.5.0.2']);

      gate = new Promise<void>((r) => (release = r));
      handlers[0].onResync?.();
      // A change meanwhile (a Join, another record): the engine must not decide from nothing.
      let synced = false;
      const pass = engine.sync().then(() => (synced = true));
      await new Promise((r) => setTimeout(r, 50));
      expect(synced).toBe(false);
      expect(kernel.sets.policedIn).toEqual(['10.5.0.2']);
      gate = null;
      release();
      await pass;
      expect(kernel.sets.policedIn).toEqual(['10.5.0.2']);
    } finally {
      engine.close();
      await store.close();
    }
  });
});

describe('policy engine: reconcile and passes', () => {
  /** Lists in two reads, as the real table does (the inet table, then the bridge's copies): a write between them shows as an incomplete table. */
  class TwoReadKernel extends RecordingKernel {
    private version = 0;
    override async list(): Promise<PolicySets | null> {
      const first = this.version;
      await new Promise((r) => setTimeout(r, 30));
      return this.version === first ? this.sets : null;
    }
    override async update(from: PolicySets, to: PolicySets): Promise<number> {
      this.version++;
      return super.update(from, to);
    }
  }

  it('never interleaves its listing with a pass', async () => {
    const store = tmpEmbeddedStore();
    const kernel = new TwoReadKernel();
    const engine = await newEngine(store, kernel, null);
    try {
      await engine.start();
      const checks = Array.from({ length: 3 }, () => engine.reconcile(true));
      // A pass asked for while the checks wait or list runs after them, not in the middle.
      const passes = [engine.sync(), engine.sync()];
      expect(await Promise.all(checks)).toEqual([[], [], []]);
      await Promise.all(passes);
      expect(await engine.reconcile(true)).toEqual([]);
    } finally {
      engine.close();
      await store.close();
    }
  });
});

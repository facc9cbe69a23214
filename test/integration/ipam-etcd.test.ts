// The allocator over a real etcd, as three hosts run it: three Ipam instances, each with its own
// EtcdStore (own gRPC connection), on one pool. Concurrent allocation hands out no address twice;
// release, exhaustion (a host takes what is left wherever it is), a dead host's addresses freed,
// a pool whose addresses an older vxnet wrote one transaction each (the layout is unchanged, so
// old and new allocators can share a pool during a rolling upgrade), and RequestPool's overlap
// check through the watched pool index, raced by pools of another size.
import { EtcdStore } from '../../src/store/etcd';
import { Ipam, LOCAL_ADDRESS_SPACE as L, GATEWAY_REQUEST } from '../../src/ipam/ipam';
import { Keys } from '../../src/store/json';
import type { Store } from '../../src/store/types';
import { sweepDeadHosts } from '../../src/network/dead-hosts';
import { createLogger } from '../../src/log';
import { startEtcd } from '../helpers/etcd';
import type { EtcdProcess } from '../helpers/etcd';

let etcd: EtcdProcess;
beforeAll(async () => {
  etcd = await startEtcd();
}, 30000);
afterAll(async () => {
  await etcd?.stop();
});

const HOSTS = ['h1', 'h2', 'h3'];
let run = 0;

interface Host {
  name: string;
  store: Store;
  ipam: Ipam;
}

/** The write path of the previous vxnet: no createEach, so every address is its own transaction. */
function oneByOne(store: EtcdStore): Store {
  return {
    get: (k) => store.get(k),
    list: (p) => store.list(p),
    createIfAbsent: (k, v, o) => store.createIfAbsent(k, v, o),
    compareAndSwap: (k, v, r) => store.compareAndSwap(k, v, r),
    delete: (k, r) => store.delete(k, r),
    revision: () => store.revision(),
    watch: (p, r, h) => store.watch(p, r, h),
    close: () => store.close(),
  };
}

async function cluster(opts: { old?: string[] } = {}): Promise<{ keys: Keys; hosts: Host[]; close: () => Promise<void> }> {
  const keys = new Keys(`/ipam-it-${++run}/`);
  const hosts: Host[] = [];
  for (const name of HOSTS) {
    const etcdStore = await EtcdStore.open({ endpoints: [etcd.endpoint] });
    const store = opts.old?.includes(name) ? oneByOne(etcdStore) : etcdStore;
    hosts.push({ name, store, ipam: new Ipam({ store, keys, host: name, defaultPools: [{ base: '10.128.0.0/9', size: 24 }], hostRoutes: async () => [] }) });
  }
  return {
    keys,
    hosts,
    close: async () => {
      for (const h of hosts) {
        h.ipam.close();
        await h.store.close();
      }
    },
  };
}

async function sharedPool(hosts: Host[], subnet: string): Promise<string> {
  let poolId = '';
  for (const h of hosts) poolId = (await h.ipam.requestPool({ addressSpace: L, pool: subnet, subPool: '', options: {}, v6: false })).poolId;
  await hosts[0].ipam.requestAddress({ poolId, address: '', options: { RequestAddressType: GATEWAY_REQUEST } });
  return poolId;
}

/**
 * n "any address" requests on one host, at most IN_FLIGHT at once (an unbatched allocator with
 * hundreds of calls in flight on this 2-CPU machine runs into the store's 5 s call deadline);
 * the addresses it got and the error codes (with the message of the first failure).
 */
const IN_FLIGHT = 32;
async function burst(h: Host, poolId: string, n: number): Promise<{ ips: string[]; errors: string[] }> {
  const ips: string[] = [];
  const errors: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, IN_FLIGHT) }, async () => {
    while (next < n) {
      next++;
      try {
        ips.push((await h.ipam.requestAddress({ poolId, address: '', options: null })).address.split('/')[0]);
      } catch (err) {
        const code = String((err as { code?: string }).code ?? err);
        errors.push(code === 'VXNET_ERR_SUBNET_EXHAUSTED' ? code : `${code}: ${(err as Error).message}`);
      }
    }
  }));
  return { ips, errors };
}

/** Container address keys in the store, by owner. */
async function owners(h: Host, poolId: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const a of await h.ipam.addressesOf(poolId)) if (a.record.kind === 'container') out.set(a.ip, a.record.host ?? '');
  return out;
}

describe('src/ipam over etcd, three hosts', () => {
  it('hands out no address twice under concurrent allocation from three drivers, and releases them all', async () => {
    const c = await cluster();
    try {
      const poolId = await sharedPool(c.hosts, '10.60.0.0/20');
      const got = await Promise.all(c.hosts.map((h) => burst(h, poolId, 300)));
      const all = got.flatMap((g) => g.ips);
      expect(got.flatMap((g) => g.errors)).toEqual([]);
      expect(all).toHaveLength(900);
      expect(new Set(all).size).toBe(900);
      expect(all).not.toContain('10.60.0.1'); // the gateway
      // Every address is recorded once, under the host that was given it.
      const rec = await owners(c.hosts[0], poolId);
      expect(rec.size).toBe(900);
      got.forEach((g, i) => expect(g.ips.every((ip) => rec.get(ip) === HOSTS[i])).toBe(true));
      // Release: each host gives back its own; another host's release of them changes nothing.
      await c.hosts[1].ipam.releaseAddress(poolId, got[0].ips[0]);
      expect((await owners(c.hosts[0], poolId)).get(got[0].ips[0])).toBe('h1');
      await Promise.all(c.hosts.map((h, i) => Promise.all(got[i].ips.map((ip) => h.ipam.releaseAddress(poolId, ip)))));
      expect((await owners(c.hosts[0], poolId)).size).toBe(0);
    } finally {
      await c.close();
    }
  }, 120000);

  it('shares a pool between allocators writing one transaction per address (previous version) and batched ones', async () => {
    const c = await cluster({ old: ['h1', 'h3'] });
    try {
      const poolId = await sharedPool(c.hosts, '10.61.0.0/22');
      // The older allocator filled part of the pool first, as before an upgrade.
      const before = await burst(c.hosts[0], poolId, 100);
      const got = await Promise.all(c.hosts.map((h) => burst(h, poolId, 250)));
      const all = [...before.ips, ...got.flatMap((g) => g.ips)];
      expect([...before.errors, ...got.flatMap((g) => g.errors)]).toEqual([]);
      expect(new Set(all).size).toBe(850);
      expect((await owners(c.hosts[1], poolId)).size).toBe(850);
    } finally {
      await c.close();
    }
  }, 120000);

  it('gives out exactly the free addresses of a pool that runs out, taking them wherever they are', async () => {
    const c = await cluster();
    try {
      // 10.62.0.0/27: 30 usable, one of them the gateway: 29 for containers.
      const poolId = await sharedPool(c.hosts, '10.62.0.0/27');
      const first = await Promise.all(c.hosts.map((h) => burst(h, poolId, 12)));
      const taken = first.flatMap((g) => g.ips);
      expect(new Set(taken).size).toBe(taken.length);
      expect(taken).toHaveLength(29);
      expect(first.flatMap((g) => g.errors).every((e) => e === 'VXNET_ERR_SUBNET_EXHAUSTED')).toBe(true);
      expect(first.flatMap((g) => g.errors)).toHaveLength(36 - 29);
      // h2 and h3 free some addresses; h1, whose own part of the pool is used up, gets exactly those.
      const freed = [...first[1].ips.slice(0, 3), ...first[2].ips.slice(0, 2)];
      for (const ip of first[1].ips.slice(0, 3)) await c.hosts[1].ipam.releaseAddress(poolId, ip);
      for (const ip of first[2].ips.slice(0, 2)) await c.hosts[2].ipam.releaseAddress(poolId, ip);
      const again = await burst(c.hosts[0], poolId, 7);
      expect(again.ips.sort()).toEqual([...freed].sort());
      expect(again.errors).toEqual(['VXNET_ERR_SUBNET_EXHAUSTED', 'VXNET_ERR_SUBNET_EXHAUSTED']);
    } finally {
      await c.close();
    }
  }, 120000);

  it('refuses a static address held by another host and grants a free one', async () => {
    const c = await cluster();
    try {
      const poolId = await sharedPool(c.hosts, '10.63.0.0/24');
      const [a] = (await burst(c.hosts[0], poolId, 1)).ips;
      for (const h of c.hosts) await h.ipam.bindPool(poolId, true);
      await expect(c.hosts[2].ipam.requestAddress({ poolId, address: a, options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_ADDRESS_IN_USE' });
      await expect(c.hosts[2].ipam.requestAddress({ poolId, address: '10.63.0.200', options: null })).resolves.toMatchObject({ kind: 'container' });
      // The static address is never handed out by another host's "any address" requests.
      const rest = await Promise.all(c.hosts.map((h) => burst(h, poolId, 80)));
      expect(rest.flatMap((g) => g.ips)).not.toContain('10.63.0.200');
      expect(new Set([a, '10.63.0.200', ...rest.flatMap((g) => g.ips)]).size).toBe(242);
    } finally {
      await c.close();
    }
  }, 120000);

  it("frees a dead host's addresses and pool share when the dead-host sweep releases it", async () => {
    const c = await cluster();
    try {
      const poolId = await sharedPool(c.hosts, '10.64.0.0/24');
      const got = await Promise.all(c.hosts.map((h) => burst(h, poolId, 40)));
      const store = c.hosts[0].store;
      // h1 and h2 are alive; h3 has a Docker network record and no lease: dead.
      for (const h of ['h1', 'h2']) await store.createIfAbsent(c.keys.host(h), '{}');
      await store.createIfAbsent(c.keys.dockerNetwork('h3', 'n1'), JSON.stringify({ lnet: 'l1', poolIds: [poolId] }));
      const released = await sweepDeadHosts({
        store,
        keys: c.keys,
        host: 'h1',
        graceMs: 0,
        driver: { forgetHost: async () => [] },
        ipam: c.hosts[0].ipam,
        log: createLogger('silent'),
      });
      expect(released).toEqual(['h3']);
      const left = await owners(c.hosts[0], poolId);
      expect(left.size).toBe(80);
      expect([...left.values()].includes('h3')).toBe(false);
      expect((await c.hosts[0].ipam.getPool(poolId))?.hosts.h3).toBeUndefined();
      // h3's addresses are free again for the living hosts.
      const after = await burst(c.hosts[1], poolId, 40);
      expect(after.errors).toEqual([]);
      expect(new Set([...got[0].ips, ...got[1].ips, ...after.ips]).size).toBe(120);
    } finally {
      await c.close();
    }
  }, 120000);

  it('never keeps two overlapping pools when hosts ask for subnets of different sizes at the same moment', async () => {
    const c = await cluster();
    try {
      for (let i = 0; i < 8; i++) {
        const wide = `10.${70 + i}.0.0/16`;
        const narrow = `10.${70 + i}.${i}.0/24`;
        const asks = await Promise.allSettled([
          c.hosts[0].ipam.requestPool({ addressSpace: L, pool: wide, subPool: '', options: {}, v6: false }),
          c.hosts[1].ipam.requestPool({ addressSpace: L, pool: narrow, subPool: '', options: {}, v6: false }),
        ]);
        const won = asks.filter((a) => a.status === 'fulfilled');
        expect(won.length).toBeLessThanOrEqual(1);
        for (const a of asks) if (a.status === 'rejected') expect(a.reason).toMatchObject({ code: 'VXNET_ERR_POOL_OVERLAP' });
        const pools = (await c.hosts[2].store.list(c.keys.pools(L))).map((kv) => kv.key);
        expect(pools.filter((k) => k.includes(`10.${70 + i}.`)).length).toBe(won.length);
      }
    } finally {
      await c.close();
    }
  }, 120000);
});

describe('src/store/etcd.ts createEach', () => {
  it('answers each key as createIfAbsent would, in one call, whatever mix of taken and free', async () => {
    const store = await EtcdStore.open({ endpoints: [etcd.endpoint] });
    try {
      await store.createIfAbsent('/each/1', 'theirs');
      await store.createIfAbsent('/each/4', 'theirs');
      const got = await store.createEach(['/each/0', '/each/1', '/each/2', '/each/3', '/each/4'].map((key) => ({ key, value: 'mine' })));
      expect(got).toEqual([true, false, true, true, false]);
      expect((await store.list('/each/')).map((kv) => kv.value)).toEqual(['mine', 'theirs', 'mine', 'mine', 'theirs']);
      expect(await store.createEach([])).toEqual([]);
    } finally {
      await store.close();
    }
  }, 30000);
});

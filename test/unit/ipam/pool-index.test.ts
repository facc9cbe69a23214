import { PoolIndex } from '../../../src/ipam/pool-index';
import { Ipam, LOCAL_ADDRESS_SPACE as L, GLOBAL_ADDRESS_SPACE as G } from '../../../src/ipam/ipam';
import { Keys } from '../../../src/store/json';
import type { Store, KeyValue } from '../../../src/store/types';
import { parseCidr, Cidr } from '../../../src/ipam/cidr';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';

const keys = new Keys('/vxnet/v1/');
const cidr = (t: string): Cidr => parseCidr(t) as Cidr;

/** Counts the store calls that read many keys. */
function counting(store: Store): { store: Store; lists: string[] } {
  const lists: string[] = [];
  const wrapped: Store = {
    get: (k) => store.get(k),
    list: (prefix: string): Promise<KeyValue[]> => {
      lists.push(prefix);
      return store.list(prefix);
    },
    createIfAbsent: (k, v, o) => store.createIfAbsent(k, v, o),
    compareAndSwap: (k, v, r) => store.compareAndSwap(k, v, r),
    delete: (k, r) => store.delete(k, r),
    revision: () => store.revision(),
    watch: (p, r, h) => store.watch(p, r, h),
    close: () => store.close(),
  };
  return { store: wrapped, lists };
}

describe('src/ipam/pool-index.ts', () => {
  let store: Store;
  beforeEach(() => {
    store = tmpEmbeddedStore();
  });
  afterEach(async () => {
    await store.close();
  });

  it('follows pools written and deleted after it loaded, per address space, subnet from the key', async () => {
    await store.createIfAbsent(keys.pool(L, '10.1.0.0/24'), '{}');
    const index = new PoolIndex(store, keys);
    expect((await index.overlapping(L, cidr('10.1.0.0/16'))).map((p) => p.pool)).toEqual(['10.1.0.0/24']);
    await store.createIfAbsent(keys.pool(L, '10.1.5.0/24'), '{"gateway":"10.1.5.1"}');
    await store.createIfAbsent(keys.pool(G, '10.1.6.0/24'), '{}');
    await store.delete(keys.pool(L, '10.1.0.0/24'));
    expect(await index.settled(keys.pool(L, '10.1.5.0/24'))).toBe(true);
    expect((await index.overlapping(L, cidr('10.1.0.0/16'))).map((p) => p.pool)).toEqual(['10.1.5.0/24']);
    expect(await index.overlapping(L, cidr('10.1.5.0/24'), '10.1.5.0/24')).toEqual([]);
    expect((await index.subnets(G)).map((c) => c.prefix)).toEqual([24]);
    expect(index.peek(keys.pool(L, '10.1.5.0/24'))?.value).toEqual({ gateway: '10.1.5.1' });
    index.close();
  });

  it('answers settled() false for a key that is not there', async () => {
    const index = new PoolIndex(store, keys);
    expect(await index.settled(keys.pool(L, '10.9.0.0/24'))).toBe(false);
    index.close();
  });

  it('lets RequestPool with a subnet check overlaps without listing the pools (flat in their number)', async () => {
    const c = counting(store);
    const ipam = new Ipam({ store: c.store, keys, host: 'h1', defaultPools: [{ base: '10.128.0.0/9', size: 24 }], hostRoutes: async () => [] });
    for (let i = 0; i < 50; i++) await ipam.requestPool({ addressSpace: L, pool: `10.7.${i}.0/24`, subPool: '', options: {}, v6: false });
    const before = c.lists.length;
    for (let i = 50; i < 100; i++) await ipam.requestPool({ addressSpace: L, pool: `10.7.${i}.0/24`, subPool: '', options: {}, v6: false });
    await ipam.requestPool({ addressSpace: L, pool: '', subPool: '', options: {}, v6: false });
    expect(c.lists.slice(before)).toEqual([]);
    await expect(ipam.requestPool({ addressSpace: L, pool: '10.7.0.0/16', subPool: '', options: {}, v6: false })).rejects.toMatchObject({ code: 'VXNET_ERR_POOL_OVERLAP' });
    ipam.close();
  });
});

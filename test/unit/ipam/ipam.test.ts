import { Ipam, LOCAL_ADDRESS_SPACE as L, GLOBAL_ADDRESS_SPACE as G, GATEWAY_REQUEST } from '../../../src/ipam/ipam';
import { Keys } from '../../../src/store/json';
import type { Store } from '../../../src/store/types';
import { parseCidr, Cidr } from '../../../src/ipam/cidr';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';

const keys = new Keys('/vxnet/v1/');
const GW = { RequestAddressType: GATEWAY_REQUEST };

function ipamOn(store: Store, host = 'h1', hostRoutes: string[] = []): Ipam {
  const routes = hostRoutes.map((r) => parseCidr(r) as Cidr);
  return new Ipam({
    store,
    keys,
    host,
    defaultPools: [{ base: '10.128.0.0/9', size: 24 }],
    hostRoutes: async () => routes,
  });
}

describe('src/ipam/ipam.ts', () => {
  let store: Store;
  let ipam: Ipam;
  beforeEach(() => {
    store = tmpEmbeddedStore();
    ipam = ipamOn(store);
  });
  afterEach(async () => {
    await store.close();
  });

  async function pool(p: string, sub = ''): Promise<string> {
    return (await ipam.requestPool({ addressSpace: L, pool: p, subPool: sub, options: {}, v6: p.includes(':') })).poolId;
  }

  it('gives a requested subnet back under a stable PoolID and refcounts identical requests', async () => {
    const a = await ipam.requestPool({ addressSpace: L, pool: '10.1.0.0/24', subPool: '', options: {}, v6: false });
    const b = await ipam.requestPool({ addressSpace: L, pool: '10.1.0.0/24', subPool: '', options: {}, v6: false });
    expect(a).toEqual({ poolId: `${L}/10.1.0.0/24`, pool: '10.1.0.0/24', data: {} });
    expect(b.poolId).toBe(a.poolId);
    await ipam.releasePool(a.poolId);
    expect(await ipam.getPool(a.poolId)).not.toBeNull();
    await ipam.releasePool(a.poolId);
    expect(await ipam.getPool(a.poolId)).toBeNull();
    await expect(ipam.releasePool(a.poolId)).resolves.toBeUndefined();
  });

  it('keeps address spaces apart (a swarm manager asks in both)', async () => {
    await pool('10.1.0.0/24');
    const g = await ipam.requestPool({ addressSpace: G, pool: '10.1.0.0/24', subPool: '', options: {}, v6: false });
    expect(g.poolId).toBe(`${G}/10.1.0.0/24`);
  });

  it('chooses distinct /24s from the default pools, skipping host routes and used subnets', async () => {
    ipam = ipamOn(store, 'h1', ['10.128.0.0/23']);
    await pool('10.128.3.0/24');
    const got: string[] = [];
    for (let i = 0; i < 3; i++) got.push((await ipam.requestPool({ addressSpace: L, pool: '', subPool: '', options: {}, v6: false })).pool);
    expect(got).toEqual(['10.128.2.0/24', '10.128.4.0/24', '10.128.5.0/24']);
  });

  it('fails clearly when the default pools are used up', async () => {
    ipam = new Ipam({ store, keys, host: 'h1', defaultPools: [{ base: '10.9.0.0/23', size: 24 }], hostRoutes: async () => [] });
    await ipam.requestPool({ addressSpace: L, pool: '', subPool: '', options: {}, v6: false });
    await ipam.requestPool({ addressSpace: L, pool: '', subPool: '', options: {}, v6: false });
    await expect(ipam.requestPool({ addressSpace: L, pool: '', subPool: '', options: {}, v6: false })).rejects.toMatchObject({
      code: 'VXNET_ERR_POOLS_EXHAUSTED',
    });
  });

  it.each([
    [{ pool: '10.1.0.1/24' }, /network address/],
    [{ pool: '10.1.0.0/33' }, /invalid subnet/],
    [{ pool: 'banana' }, /invalid subnet/],
    [{ pool: '10.1.0.0/24', subPool: '10.2.0.0/25' }, /not inside subnet/],
    [{ pool: '10.1.0.0/24', subPool: 'x' }, /invalid ip-range/],
    [{ pool: '', subPool: '10.1.0.0/25' }, /without a subnet/],
    [{ pool: 'fd00::/64' }, /not an IPv4 subnet/],
    [{ pool: '10.1.0.0/31' }, /too small/],
    [{ addressSpace: 'nope', pool: '10.1.0.0/24' }, /unknown address space/],
  ])('rejects bad pool request %j', async (over: Record<string, string>, msg) => {
    const req = { addressSpace: L, subPool: '', options: {}, v6: false, pool: '', ...over };
    await expect(ipam.requestPool(req)).rejects.toThrow(msg);
    expect(await store.list('/vxnet/v1/')).toEqual([]);
  });

  it('refuses a subnet overlapping one in use', async () => {
    await pool('10.1.0.0/16');
    await expect(pool('10.1.2.0/24')).rejects.toMatchObject({ code: 'VXNET_ERR_POOL_OVERLAP' });
  });

  it('hands out the first host address as gateway, then containers in order, never network/broadcast', async () => {
    const id = await pool('10.1.0.0/29');
    expect((await ipam.requestAddress({ poolId: id, address: '', options: GW })).address).toBe('10.1.0.1/29');
    await ipam.bindPool(id, true);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push((await ipam.requestAddress({ poolId: id, address: '', options: null })).address);
    expect(got).toEqual(['10.1.0.2/29', '10.1.0.3/29', '10.1.0.4/29', '10.1.0.5/29', '10.1.0.6/29']);
    await expect(ipam.requestAddress({ poolId: id, address: '', options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_SUBNET_EXHAUSTED' });
  });

  it('allocates inside the ip-range, but lets aux and static addresses sit outside it', async () => {
    const id = await pool('10.1.0.0/24', '10.1.0.128/25');
    await ipam.requestAddress({ poolId: id, address: '', options: GW });
    expect((await ipam.requestAddress({ poolId: id, address: '10.1.0.5', options: null })).kind).toBe('aux');
    await ipam.bindPool(id, true);
    expect((await ipam.requestAddress({ poolId: id, address: '', options: null })).address).toBe('10.1.0.128/24');
    expect(await ipam.requestAddress({ poolId: id, address: '10.1.0.20', options: null })).toEqual({ address: '10.1.0.20/24', kind: 'container' });
  });

  it('allocates from the new ip-range when the pool is given back elsewhere and asked for again with another', async () => {
    const id = await pool('10.1.0.0/24', '10.1.0.128/25');
    await ipam.bindPool(id, true);
    expect((await ipam.requestAddress({ poolId: id, address: '', options: null })).address).toBe('10.1.0.128/24');
    // The same host's pool released and asked for again through another instance (a restart):
    // this instance saw the old ip-range and must not keep allocating from it.
    const other = ipamOn(store);
    await other.releasePool(id);
    expect(await other.getPool(id)).toBeNull();
    await other.requestPool({ addressSpace: L, pool: '10.1.0.0/24', subPool: '10.1.0.0/26', options: {}, v6: false });
    await other.bindPool(id, true);
    const got = (await ipam.requestAddress({ poolId: id, address: '', options: null })).address;
    expect(got).toMatch(/^10\.1\.0\.\d+\/24$/);
    expect(Number(got.split('/')[0].split('.')[3])).toBeLessThan(64);
    other.close();
  });

  it('refuses a static address in use, outside the pool, or not an address', async () => {
    const id = await pool('10.1.0.0/24');
    await ipam.bindPool(id, true);
    await ipam.requestAddress({ poolId: id, address: '10.1.0.9', options: null });
    await expect(ipam.requestAddress({ poolId: id, address: '10.1.0.9', options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_ADDRESS_IN_USE' });
    await expect(ipam.requestAddress({ poolId: id, address: '10.2.0.9', options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_ADDRESS_OUTSIDE_POOL' });
    await expect(ipam.requestAddress({ poolId: id, address: '10.1.0.255', options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_ADDRESS_OUTSIDE_POOL' });
    await expect(ipam.requestAddress({ poolId: id, address: '10.1.0.0', options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_ADDRESS_OUTSIDE_POOL' });
    await expect(ipam.requestAddress({ poolId: id, address: '10.1.0.999', options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_BAD_REQUEST' });
    await expect(ipam.requestAddress({ poolId: `${L}/10.7.0.0/24`, address: '', options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_UNKNOWN_POOL' });
    await expect(ipam.requestAddress({ poolId: '../../etc', address: '', options: null })).rejects.toMatchObject({ code: 'VXNET_ERR_BAD_REQUEST' });
  });

  it('does not reuse a released address at once, and releases idempotently', async () => {
    const id = await pool('10.1.0.0/24');
    await ipam.bindPool(id, true);
    const a = (await ipam.requestAddress({ poolId: id, address: '', options: null })).address;
    await ipam.releaseAddress(id, a.split('/')[0]);
    await ipam.releaseAddress(id, a.split('/')[0]);
    const b = (await ipam.requestAddress({ poolId: id, address: '', options: null })).address;
    expect(b).not.toBe(a);
  });

  it('counts the gateway and aux addresses per host, and refuses a second gateway', async () => {
    const h2 = ipamOn(store, 'h2');
    const id = await pool('10.1.0.0/24');
    await h2.requestPool({ addressSpace: L, pool: '10.1.0.0/24', subPool: '', options: {}, v6: false });
    await ipam.requestAddress({ poolId: id, address: '10.1.0.1', options: GW });
    await h2.requestAddress({ poolId: id, address: '10.1.0.1', options: GW });
    await h2.requestAddress({ poolId: id, address: '10.1.0.5', options: null });
    await ipam.requestAddress({ poolId: id, address: '10.1.0.5', options: null });
    await expect(h2.requestAddress({ poolId: id, address: '10.1.0.254', options: GW })).rejects.toThrow(/already has gateway 10.1.0.1/);
    await ipam.releaseAddress(id, '10.1.0.1');
    await ipam.releaseAddress(id, '10.1.0.5');
    await ipam.releasePool(id);
    // h2 still holds all three: nothing it uses is gone.
    expect((await ipam.getPool(id))?.gateway).toBe('10.1.0.1');
    expect((await ipam.addressesOf(id)).map((a) => a.ip).sort()).toEqual(['10.1.0.1', '10.1.0.5']);
    await h2.releaseAddress(id, '10.1.0.1');
    await h2.releaseAddress(id, '10.1.0.5');
    await h2.releasePool(id);
    expect(await store.list('/vxnet/v1/')).toEqual([]);
  });

  it('handles IPv6 pools', async () => {
    const id = await pool('fd00:1::/64');
    expect((await ipam.requestAddress({ poolId: id, address: '', options: GW })).address).toBe('fd00:1::1/64');
    await ipam.bindPool(id, true);
    expect((await ipam.requestAddress({ poolId: id, address: '', options: null })).address).toBe('fd00:1::2/64');
    expect((await ipam.requestAddress({ poolId: id, address: 'fd00:1::abcd', options: null })).address).toBe('fd00:1::abcd/64');
  });

  it('never hands one address to two concurrent requests (two hosts, one pool)', async () => {
    const h2 = ipamOn(store, 'h2');
    const id = await pool('10.1.0.0/24');
    await h2.requestPool({ addressSpace: L, pool: '10.1.0.0/24', subPool: '', options: {}, v6: false });
    await ipam.bindPool(id, true);
    await h2.bindPool(id, true);
    const all = await Promise.all(
      Array.from({ length: 100 }, (_, i) => (i % 2 ? ipam : h2).requestAddress({ poolId: id, address: '', options: null })),
    );
    expect(new Set(all.map((a) => a.address)).size).toBe(100);
  });

  it('starts each host at its own point of a shared pool, and a lone host at the beginning', async () => {
    const h2 = ipamOn(store, 'h2');
    const id = await pool('10.1.0.0/16');
    await ipam.bindPool(id, true);
    expect((await ipam.requestAddress({ poolId: id, address: '', options: null })).address).toBe('10.1.0.1/16');
    await h2.requestPool({ addressSpace: L, pool: '10.1.0.0/16', subPool: '', options: {}, v6: false });
    await h2.bindPool(id, true);
    const fromH2 = (await h2.requestAddress({ poolId: id, address: '', options: null })).address;
    expect(fromH2).not.toBe('10.1.0.2/16');
    expect(fromH2).toMatch(/^10\.1\.\d+\.\d+\/16$/);
  });

  it('lets a new swarm leader take over the global addresses the old one allocated', async () => {
    const req = { addressSpace: G, pool: '10.5.0.0/24', subPool: '', options: {}, v6: false };
    const id = (await ipam.requestPool(req)).poolId;
    await ipam.requestAddress({ poolId: id, address: '', options: GW });
    const task = (await ipam.requestAddress({ poolId: id, address: '', options: null })).address.split('/')[0];
    // The new leader restores swarm's books: the same pool, gateway and every task address again.
    const leader2 = ipamOn(store, 'h2');
    expect((await leader2.requestPool(req)).poolId).toBe(id);
    await leader2.requestAddress({ poolId: id, address: '10.5.0.1', options: GW });
    expect(await leader2.requestAddress({ poolId: id, address: task, options: null })).toEqual({ address: `${task}/24`, kind: 'container' });
    expect(JSON.parse((await store.get(`/vxnet/v1/addresses/${G}/10.5.0.0_24/${task}`))?.value ?? '{}')).toMatchObject({ kind: 'container', host: 'h2' });
    // Its dynamic allocations still never collide with a held address.
    const next = (await leader2.requestAddress({ poolId: id, address: '', options: null })).address.split('/')[0];
    expect(next).not.toBe(task);
    // The local space keeps its rule: a held address is refused.
    const local = await pool('10.6.0.0/24');
    const held = (await ipam.requestAddress({ poolId: local, address: '', options: null })).address.split('/')[0];
    await ipamOn(store, 'h2').requestPool({ addressSpace: L, pool: '10.6.0.0/24', subPool: '', options: {}, v6: false });
    await expect(ipamOn(store, 'h2').requestAddress({ poolId: local, address: held, options: null })).rejects.toThrow(/already in use/);
  });

  it('removes leftover address keys with the last release of the pool', async () => {
    const id = await pool('10.1.0.0/24');
    await ipam.bindPool(id, true);
    await ipam.requestAddress({ poolId: id, address: '', options: null });
    await ipam.releasePool(id);
    expect(await store.list('/vxnet/v1/')).toEqual([]);
  });
});

// Subnet size without naming a subnet: --ipam-opt vxnet.subnet-size=N and --subnet 0.0.0.0/N.
import { parsePoolAsk } from '../../../src/ipam/pool-ask';
import { Ipam, LOCAL_ADDRESS_SPACE as L, GLOBAL_ADDRESS_SPACE as G } from '../../../src/ipam/ipam';
import { parseCidr, Cidr, cidrToString, overlaps } from '../../../src/ipam/cidr';
import { Keys } from '../../../src/store/json';
import type { Store } from '../../../src/store/types';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';

const POOLS = [{ base: '10.128.0.0/9', size: 24 }];
const ask = (pool: string, options: Record<string, string> = {}, subPool = '', v6 = false) => parsePoolAsk({ pool, subPool, options, v6 }, POOLS);

describe('src/ipam/pool-ask.ts', () => {
  it.each([
    ['', {}, { kind: 'auto', size: null }],
    ['', { 'vxnet.subnet-size': '28' }, { kind: 'auto', size: 28 }],
    ['', { 'vxnet.subnet-size': '/28' }, { kind: 'auto', size: 28 }],
    ['0.0.0.0/28', {}, { kind: 'auto', size: 28 }],
    ['0.0.0.0/28', { 'vxnet.subnet-size': '28' }, { kind: 'auto', size: 28 }],
    ['0.0.0.0/9', {}, { kind: 'auto', size: 9 }],
    ['0.0.0.0/30', {}, { kind: 'auto', size: 30 }],
    ['', { other: 'x' }, { kind: 'auto', size: null }],
  ])('reads Pool %j with options %j', (pool, options, want) => {
    expect(ask(pool, options)).toEqual(want);
  });

  it('keeps a named subnet (the option may repeat its size)', () => {
    expect(ask('10.1.0.0/24')).toEqual({ kind: 'subnet', pool: parseCidr('10.1.0.0/24') });
    expect(ask('10.1.0.0/28', { 'vxnet.subnet-size': '28' })).toEqual({ kind: 'subnet', pool: parseCidr('10.1.0.0/28') });
  });

  it.each([
    ['', { 'vxnet.subnet-size': 'big' }, '', 'IPAM option vxnet.subnet-size="big" is not a prefix length (e.g. 28)'],
    ['', { 'vxnet.subnet-size': '-4' }, '', 'IPAM option vxnet.subnet-size="-4" is not a prefix length (e.g. 28)'],
    ['', { 'vxnet.subnet-size': '' }, '', 'IPAM option vxnet.subnet-size="" is not a prefix length (e.g. 28)'],
    ['', { 'vxnet.subnet-size': '31' }, '', 'vxnet.subnet-size=31: /31 does not fit the default pools (VXNET_DEFAULT_POOLS 10.128.0.0/9:24 allow /9../30)'],
    ['', { 'vxnet.subnet-size': '8' }, '', 'vxnet.subnet-size=8: /8 does not fit the default pools (VXNET_DEFAULT_POOLS 10.128.0.0/9:24 allow /9../30)'],
    ['0.0.0.0/31', {}, '', 'subnet 0.0.0.0/31: /31 does not fit the default pools (VXNET_DEFAULT_POOLS 10.128.0.0/9:24 allow /9../30)'],
    ['0.0.0.0/28', { 'vxnet.subnet-size': '26' }, '', 'subnet 0.0.0.0/28 and vxnet.subnet-size=26 ask for different sizes (/28 and /26)'],
    ['10.1.0.0/24', { 'vxnet.subnet-size': '26' }, '', 'subnet 10.1.0.0/24 and vxnet.subnet-size=26 ask for different sizes (/24 and /26)'],
    ['0.0.0.0/28', {}, '10.0.0.0/29', 'ip-range 10.0.0.0/29 given with subnet 0.0.0.0/28, which names no subnet (any free /28)'],
    ['', { 'vxnet.subnetsize': '28' }, '', 'unknown IPAM option vxnet.subnetsize (vxnet knows vxnet.subnet-size)'],
  ])('refuses Pool %j with options %j (ip-range %j)', (pool, options, subPool, msg) => {
    expect(() => ask(pool, options, subPool)).toThrow(msg);
  });

  it('refuses a size for IPv6 (vxnet does not choose IPv6 subnets)', () => {
    expect(() => ask('::/64', {}, '', true)).toThrow(/does not choose IPv6 subnets/);
  });

  it('allows what any one of several pools allows', () => {
    const pools = [{ base: '10.128.0.0/9', size: 24 }, { base: '172.20.0.0/14', size: 24 }];
    expect(parsePoolAsk({ pool: '', subPool: '', options: { 'vxnet.subnet-size': '9' }, v6: false }, pools)).toEqual({ kind: 'auto', size: 9 });
    expect(() => parsePoolAsk({ pool: '', subPool: '', options: { 'vxnet.subnet-size': '8' }, v6: false }, pools)).toThrow('allow /9../30, /14../30');
  });
});

describe('src/ipam/ipam.ts (sized automatic subnets)', () => {
  const keys = new Keys('/vxnet/v1/');
  let store: Store;
  const ipamOn = (host = 'h1', routes: string[] = [], pools = POOLS): Ipam =>
    new Ipam({ store, keys, host, defaultPools: pools, hostRoutes: async () => routes.map((r) => parseCidr(r) as Cidr) });
  const request = (ipam: Ipam, pool: string, options: Record<string, string> = {}, space = L) =>
    ipam.requestPool({ addressSpace: space, pool, subPool: '', options, v6: false }).then((r) => r.pool);
  beforeEach(() => {
    store = tmpEmbeddedStore();
  });
  afterEach(async () => {
    await store.close();
  });

  it('packs /28s after a /24 and around host routes; both forms ask the same', async () => {
    const ipam = ipamOn('h1', ['10.128.1.0/28']);
    expect(await request(ipam, '')).toBe('10.128.0.0/24');
    expect(await request(ipam, '', { 'vxnet.subnet-size': '28' })).toBe('10.128.1.16/28');
    expect(await request(ipam, '0.0.0.0/28')).toBe('10.128.1.32/28');
    // A /24 asked now skips the partly used 10.128.1.0/24.
    expect(await request(ipam, '')).toBe('10.128.2.0/24');
    expect(await request(ipam, '', { 'vxnet.subnet-size': '26' })).toBe('10.128.1.64/26');
  });

  it('jumps over used space instead of stepping through it (a /30 after a /10)', async () => {
    const ipam = ipamOn();
    expect(await request(ipam, '0.0.0.0/10')).toBe('10.128.0.0/10');
    expect(await request(ipam, '0.0.0.0/30')).toBe('10.192.0.0/30');
  });

  it('says which size ran out', async () => {
    const ipam = ipamOn('h1', [], [{ base: '10.9.0.0/24', size: 24 }]);
    expect(await request(ipam, '0.0.0.0/25')).toBe('10.9.0.0/25');
    expect(await request(ipam, '0.0.0.0/25')).toBe('10.9.0.128/25');
    await expect(request(ipam, '0.0.0.0/26')).rejects.toThrow('no free subnet of size /26 left in 10.9.0.0/24:24');
  });

  it('never gives overlapping subnets to requests of mixed sizes racing from two hosts', async () => {
    const h1 = ipamOn('h1');
    const h2 = ipamOn('h2');
    const sizes = ['', '28', '26', '24', '30', '25', '', '27'];
    const got = await Promise.all(
      sizes.flatMap((sz, i) => [h1, h2].map((ipam) => request(ipam, '', sz === '' ? {} : { 'vxnet.subnet-size': sz }).then((p) => `${p}#${i}`))),
    );
    const cidrs = got.map((g) => parseCidr(g.split('#')[0]) as Cidr);
    for (let i = 0; i < cidrs.length; i++) {
      for (let j = i + 1; j < cidrs.length; j++) expect(overlaps(cidrs[i], cidrs[j]) ? `${got[i]} / ${got[j]}` : null).toBeNull();
    }
    expect(new Set(cidrs.map(cidrToString)).size).toBe(sizes.length * 2);
    expect((await store.list('/vxnet/v1/pools/')).length).toBe(sizes.length * 2);
  });

  it('never lets a named subnet and an automatic one of another size overlap when asked at once', async () => {
    const held: string[] = [];
    for (let round = 0; round < 5; round++) {
      const [h1, h2] = [ipamOn('h1'), ipamOn('h2')];
      const got = await Promise.allSettled([request(h1, `10.128.${round}.0/24`), request(h2, '0.0.0.0/28'), request(h2, '0.0.0.0/27')]);
      for (const g of got) {
        if (g.status === 'fulfilled') held.push(g.value);
        else expect(String(g.reason)).toMatch(/overlaps/); // a refusal says why
      }
    }
    const cidrs = held.map((h) => parseCidr(h) as Cidr);
    for (let i = 0; i < cidrs.length; i++) for (let j = i + 1; j < cidrs.length; j++) expect(overlaps(cidrs[i], cidrs[j]) ? `${held[i]} / ${held[j]}` : null).toBeNull();
    // Every kept claim is in the store, and nothing given back is.
    const stored = (await store.list('/vxnet/v1/pools/')).map((kv) => (kv.key.split('/').pop() as string).replace('_', '/'));
    expect(stored.sort()).toEqual([...held].sort());
  });

  it('takes sizes in the global space (a swarm manager passes --ipam-opt on)', async () => {
    const ipam = ipamOn('h1', ['10.128.0.0/28']);
    // Host routes matter only for local pools: the manager's routes say nothing about the workers'.
    expect(await request(ipam, '', { 'vxnet.subnet-size': '28' }, G)).toBe('10.128.0.0/28');
  });
});

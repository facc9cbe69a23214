// PeerSync's own view of what it programmed, which `vxnet status` and the metrics report.
import { PeerSync } from '../../../src/network/peers';
import type { EndpointRecord, NetworkRecord } from '../../../src/network/records';
import { createLogger } from '../../../src/log';
import type { Store } from '../../../src/store/types';
import { recordingDataplane, RecordingDataplane } from '../../helpers/recording-dataplane';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { TEST_KEYS } from '../../helpers/plugin-app';

const keys = TEST_KEYS;
const NET: NetworkRecord = { lnet: 'span', vni: 300, ipv4: { subnet: '10.9.0.0/24', gateway: '10.9.0.1', poolId: null }, ipv6: null, mtu: 1450, internal: false };

function endpoint(host: string, ip: string): EndpointRecord {
  const last = Number(ip.split('.')[3]).toString(16).padStart(2, '0');
  return { networkId: 'n', host, vtep: `172.31.0.${host.slice(1)}`, mac: `02:42:0a:09:00:${last}`, ipv4: `${ip}/24`, ipv6: null };
}

describe('src/network/peers.ts PeerSync.programmed', () => {
  let store: Store;
  let dp: RecordingDataplane;
  let sync: PeerSync;
  beforeEach(async () => {
    store = tmpEmbeddedStore();
    dp = recordingDataplane();
    for (const h of ['h1', 'h2', 'h3']) await store.createIfAbsent(keys.host(h), JSON.stringify({ vtep: `172.31.0.${h.slice(1)}`, version: 't' }));
    await store.createIfAbsent(keys.network('span'), JSON.stringify(NET));
    await store.createIfAbsent(keys.endpoint('span', 'a'), JSON.stringify(endpoint('h1', '10.9.0.2')));
    await store.createIfAbsent(keys.endpoint('span', 'b'), JSON.stringify(endpoint('h2', '10.9.0.3')));
    await store.createIfAbsent(keys.endpoint('span', 'c'), JSON.stringify(endpoint('h2', '10.9.0.4')));
    await store.createIfAbsent(keys.endpoint('span', 'd'), JSON.stringify(endpoint('h3', '10.9.0.5')));
    sync = new PeerSync({ store, keys, dataplane: dp, host: 'h1', log: createLogger('silent') });
    await sync.start();
  });
  afterEach(async () => {
    await sync.close();
    await store.close();
  });

  it('counts the entries of each active network, and forgets a network once it is deactivated', async () => {
    expect(sync.programmed()).toEqual([]);
    await sync.activate('span', NET);
    // Remote endpoints b, c (h2) and d (h3): 3 unicast + 2 all-zero FDB entries, 3 neighbours.
    expect(sync.programmed()).toEqual([{ lnet: 'span', vni: 300, fdb: 5, neigh: 3, vteps: 2 }]);
    sync.deactivate('span');
    expect(sync.programmed()).toEqual([]);
  });

  it('does not count an entry the kernel refused', async () => {
    dp.ensureNeigh = async (s) => {
      if (s.ip === '10.9.0.4') throw new Error('EINVAL');
    };
    await sync.activate('span', NET);
    expect(sync.programmed()).toEqual([{ lnet: 'span', vni: 300, fdb: 5, neigh: 2, vteps: 2 }]);
  });

  it('after activation, programs only what a new or removed record changes, without reading the device again', async () => {
    let reads = 0;
    const listFdb = dp.listFdb.bind(dp);
    dp.listFdb = async (dev) => {
      reads++;
      return listFdb(dev);
    };
    await sync.activate('span', NET);
    expect(reads).toBe(1);
    dp.calls.length = 0;
    await store.createIfAbsent(keys.endpoint('span', 'e'), JSON.stringify(endpoint('h3', '10.9.0.6')));
    await waitFor(() => dp.calls.length >= 2);
    expect(dp.calls).toEqual(['ensureFdb vxv-300 02:42:0a:09:00:06', 'ensureNeigh vxv-300 10.9.0.6']);
    dp.calls.length = 0;
    await store.delete(keys.endpoint('span', 'b'));
    await waitFor(() => dp.calls.length >= 2);
    expect(dp.calls).toEqual(['removeNeigh vxv-300 10.9.0.3', 'removeFdb vxv-300 02:42:0a:09:00:03']);
    expect(reads).toBe(1);
    expect(sync.programmed()).toEqual([{ lnet: 'span', vni: 300, fdb: 5, neigh: 3, vteps: 2 }]);
  });
});

/** Polls (bounded: 2 s) until cond holds; the watch delivers events asynchronously. */
async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error('condition not met within 2 s');
}

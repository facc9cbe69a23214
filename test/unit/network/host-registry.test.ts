// registerHost when this host's key is still there (a restart after kill -9, within the TTL):
// the key is taken over in one write, so the other hosts' watches never see the host leave.
import { registerHost } from '../../../src/network/host-registry';
import { Keys } from '../../../src/store/json';
import type { WatchEvent } from '../../../src/store/types';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';

describe('src/network/host-registry.ts', () => {
  it('moves a left-over host key to the new lease with a put, never a delete', async () => {
    const store = tmpEmbeddedStore();
    const keys = new Keys('/vxnet/v1/');
    try {
      await registerHost(store, keys, 'h1', { vtep: '10.0.0.1', version: 'old' }, 10);
      const events: WatchEvent[] = [];
      const w = store.watch(keys.hosts(), await store.revision(), { onEvents: (evs) => events.push(...evs) });
      await registerHost(store, keys, 'h1', { vtep: '10.0.0.1', version: 'new' }, 10);
      await new Promise((r) => setImmediate(r));
      w.close();
      expect(events.map((e) => e.type)).toEqual(['put']);
      expect(JSON.parse((await store.get(keys.host('h1')))!.value)).toEqual({ vtep: '10.0.0.1', version: 'new' });
    } finally {
      await store.close();
    }
  });

  it('creates the key when there is none', async () => {
    const store = tmpEmbeddedStore();
    const keys = new Keys('/vxnet/v1/');
    try {
      await registerHost(store, keys, 'h2', { vtep: '10.0.0.2', version: 'v' }, 10);
      expect(JSON.parse((await store.get(keys.host('h2')))!.value)).toEqual({ vtep: '10.0.0.2', version: 'v' });
    } finally {
      await store.close();
    }
  });
});

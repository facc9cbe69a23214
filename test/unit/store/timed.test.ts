import { timedStore, StoreOp } from '../../../src/store/timed';
import type { Store } from '../../../src/store/types';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';

/** The store with some methods replaced (the rest still reach the real one). */
function like(store: Store, override: Partial<Store>): Store {
  return Object.assign(Object.create(store) as Store, override);
}

describe('src/store/timed.ts', () => {
  let raw: Store;
  let seen: Array<{ op: StoreOp; ok: boolean }>;
  let store: Store;
  beforeEach(() => {
    raw = tmpEmbeddedStore();
    seen = [];
    store = timedStore(raw, (op, seconds, ok) => {
      expect(seconds).toBeGreaterThanOrEqual(0);
      seen.push({ op, ok });
    });
  });
  afterEach(() => store.close());

  it('passes every call through and reports each with its op', async () => {
    expect(await store.createIfAbsent('/k', 'v')).toBe(true);
    expect(await store.createIfAbsent('/k', 'w')).toBe(false); // a "no" is an answer, not an error
    const kv = await store.get('/k');
    expect(kv?.value).toBe('v');
    expect(await store.compareAndSwap('/k', 'x', kv?.modRevision ?? -1)).toBe(true);
    expect((await store.list('/')).map((e) => e.value)).toEqual(['x']);
    expect(await store.revision()).toBeGreaterThan(0);
    expect(await store.delete('/k')).toBe(true);
    expect(typeof (await store.grantLease?.(5))).toBe('string');
    expect(seen).toEqual(
      ['createIfAbsent', 'createIfAbsent', 'get', 'compareAndSwap', 'list', 'revision', 'delete', 'grantLease'].map((op) => ({ op, ok: true })),
    );
  });

  it('reports a rejected call as not ok and rethrows it', async () => {
    const failing = timedStore(like(raw, { get: () => Promise.reject(new Error('etcd down')) }), (op, _s, ok) => seen.push({ op, ok }));
    await expect(failing.get('/k')).rejects.toThrow('etcd down');
    expect(seen).toEqual([{ op: 'get', ok: false }]);
  });

  it('can hold leases only when the store underneath can', () => {
    expect(timedStore(like(raw, { grantLease: undefined }), () => undefined).grantLease).toBeUndefined();
    expect(timedStore(raw, () => undefined).grantLease).toBeDefined();
  });

  it('hands watches through untimed', async () => {
    const events: string[] = [];
    const w = store.watch('/w/', await store.revision(), { onEvents: (evs) => evs.forEach((e) => events.push(e.type)) });
    await store.createIfAbsent('/w/a', '1');
    await new Promise((r) => setImmediate(r));
    w.close();
    expect(events).toEqual(['put']);
    expect(seen.map((s) => s.op)).toEqual(['revision', 'createIfAbsent']);
  });
});

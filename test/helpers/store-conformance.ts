// The Store conformance suite: every implementation (embedded, etcd) must pass it unchanged.
import type { Store, WatchEvent } from '../../src/store/types';

export function storeConformance(name: string, open: () => Promise<Store>, reopen?: (s: Store) => Promise<Store>): void {
  describe(`${name} store conformance`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('createIfAbsent writes once and refuses the second writer', async () => {
      expect(await store.createIfAbsent('/t/a', '1')).toBe(true);
      expect(await store.createIfAbsent('/t/a', '2')).toBe(false);
      expect((await store.get('/t/a'))?.value).toBe('1');
    });

    it('get of a missing key is null', async () => {
      expect(await store.get('/t/missing')).toBeNull();
    });

    it('compareAndSwap succeeds only on the expected revision', async () => {
      expect(await store.compareAndSwap('/t/c', 'x', 0)).toBe(true);
      const cur = await store.get('/t/c');
      expect(cur).not.toBeNull();
      expect(await store.compareAndSwap('/t/c', 'y', cur!.modRevision + 100)).toBe(false);
      expect(await store.compareAndSwap('/t/c', 'y', 0)).toBe(false);
      expect(await store.compareAndSwap('/t/c', 'y', cur!.modRevision)).toBe(true);
      expect((await store.get('/t/c'))?.value).toBe('y');
    });

    it('delete honours the revision and reports missing keys', async () => {
      await store.createIfAbsent('/t/d', '1');
      const cur = await store.get('/t/d');
      expect(await store.delete('/t/d', cur!.modRevision + 1)).toBe(false);
      expect(await store.delete('/t/d', cur!.modRevision)).toBe(true);
      expect(await store.delete('/t/d')).toBe(false);
    });

    it('list returns the keys under a prefix, sorted, and nothing else', async () => {
      for (const k of ['/t/l/b', '/t/l/a', '/t/l/c', '/t/lx', '/t/m']) await store.createIfAbsent(k, k);
      expect((await store.list('/t/l/')).map((kv) => kv.key)).toEqual(['/t/l/a', '/t/l/b', '/t/l/c']);
    });

    it('revisions grow with every write', async () => {
      const r0 = await store.revision();
      await store.createIfAbsent('/t/r', '1');
      const r1 = await store.revision();
      expect(r1).toBeGreaterThan(r0);
      expect((await store.get('/t/r'))?.modRevision).toBe(r1);
    });

    it('concurrent createIfAbsent on one key has exactly one winner', async () => {
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.createIfAbsent('/t/race', String(i))));
      expect(results.filter(Boolean)).toHaveLength(1);
    });

    it('watch reports puts and deletes under its prefix, in order', async () => {
      const from = await store.revision();
      const events: WatchEvent[] = [];
      const got = new Promise<void>((resolve) => {
        const w = store.watch('/t/w/', from, {
          onEvents(evs) {
            events.push(...evs);
            if (events.length >= 3) {
              w.close();
              resolve();
            }
          },
        });
      });
      await store.createIfAbsent('/t/w/1', 'a');
      await store.createIfAbsent('/t/other', 'x');
      const kv = await store.get('/t/w/1');
      await store.compareAndSwap('/t/w/1', 'b', kv!.modRevision);
      await store.delete('/t/w/1');
      await got;
      expect(events.map((e) => e.type)).toEqual(['put', 'put', 'delete']);
      expect(events.map((e) => (e.type === 'put' ? e.kv.key : e.key))).toEqual(['/t/w/1', '/t/w/1', '/t/w/1']);
    });

    it('watch from an older revision replays what it missed', async () => {
      const from = await store.revision();
      await store.createIfAbsent('/t/h/1', 'a');
      await store.createIfAbsent('/t/h/2', 'b');
      const keys = await new Promise<string[]>((resolve) => {
        const seen: string[] = [];
        const w = store.watch('/t/h/', from, {
          onEvents(evs) {
            for (const e of evs) if (e.type === 'put') seen.push(e.kv.key);
            if (seen.length >= 2) {
              w.close();
              resolve(seen);
            }
          },
        });
      });
      expect(keys).toEqual(['/t/h/1', '/t/h/2']);
    });

    if (reopen) {
      it('keeps every acknowledged write across a reopen', async () => {
        await store.createIfAbsent('/t/p/1', 'one');
        await store.createIfAbsent('/t/p/2', 'two');
        await store.delete('/t/p/1');
        store = await reopen(store);
        expect(await store.get('/t/p/1')).toBeNull();
        expect((await store.get('/t/p/2'))?.value).toBe('two');
      });
    }
  });
}

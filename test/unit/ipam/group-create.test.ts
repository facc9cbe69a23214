import { GroupCreate, MAX_BATCH } from '../../../src/ipam/group-create';
import type { Store } from '../../../src/store/types';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';

/**
 * The tests of the wait: the callers ask again within a few turns of the event loop, which on a
 * loaded machine (jest's workers on 2 cores) took longer than the driver's 10 ms once in ~10
 * runs. The wait ends as soon as the batch is refilled, so a long one costs these tests nothing.
 */
const WAIT_ROOM_MS = 2000;

/** The embedded store, given a createEach that records its batches (answers from createIfAbsent, one by one). */
function batchingStore(): { store: Store; batches: string[][]; fail: { next: Error | null } } {
  const store = tmpEmbeddedStore();
  const batches: string[][] = [];
  const fail = { next: null as Error | null };
  const s = store as Store;
  s.createEach = async (entries) => {
    batches.push(entries.map((e) => e.key));
    if (fail.next) {
      const err = fail.next;
      fail.next = null;
      throw err;
    }
    const out: boolean[] = [];
    for (const e of entries) out.push(await store.createIfAbsent(e.key, e.value));
    return out;
  };
  return { store: s, batches, fail };
}

describe('src/ipam/group-create.ts', () => {
  it('sends the writes asked in one turn of the event loop together, with the same answers', async () => {
    const { store, batches } = batchingStore();
    try {
      await store.createIfAbsent('/a/3', 'other');
      const g = new GroupCreate(store);
      const got = await Promise.all([0, 1, 2, 3, 4].map((i) => g.create(`/a/${i}`, `v${i}`)));
      expect(got).toEqual([true, true, true, false, true]);
      expect(batches).toEqual([['/a/0', '/a/1', '/a/2', '/a/3', '/a/4']]);
      expect((await store.get('/a/3'))?.value).toBe('other');
      expect((await store.get('/a/4'))?.value).toBe('v4');
    } finally {
      await store.close();
    }
  });

  it('sends a lone write alone and the writes asked while a batch is out in the next one', async () => {
    const { store, batches } = batchingStore();
    try {
      const g = new GroupCreate(store);
      expect(await g.create('/e/alone', 'v')).toBe(true); // createIfAbsent, not a batch
      const first = g.create('/e/0', 'v');
      const second = g.create('/e/1', 'v');
      // Asked once the first batch is on its way: they wait for it and go together.
      await new Promise((r) => setImmediate(r));
      const later = [g.create('/e/2', 'v'), g.create('/e/3', 'v'), g.create('/e/0', 'w')];
      expect(await Promise.all([first, second, ...later])).toEqual([true, true, true, true, false]);
      expect(batches).toEqual([['/e/0', '/e/1'], ['/e/2', '/e/3', '/e/0']]);
      expect((await store.get('/e/alone'))?.value).toBe('v');
      expect((await store.get('/e/0'))?.value).toBe('v');
    } finally {
      await store.close();
    }
  });

  it('after a batch, waits (briefly) for the callers it answered to ask again before cutting the next one', async () => {
    const { store, batches } = batchingStore();
    try {
      const g = new GroupCreate(store, WAIT_ROOM_MS);
      // x1 goes; x2 is asked while x1 is out; x1's caller asks x3 as soon as it has its answer.
      const x1 = g.create('/f/1', 'v').then(async (ok) => {
        await new Promise((r) => setImmediate(r));
        return [ok, await g.create('/f/3', 'v')];
      });
      await new Promise((r) => setImmediate(r));
      const x2 = g.create('/f/2', 'v');
      expect(await Promise.all([x1, x2])).toEqual([[true, true], true]);
      // Without the wait x2 would have gone alone, then x3 alone.
      expect(batches).toEqual([['/f/2', '/f/3']]);
    } finally {
      await store.close();
    }
  });

  it('after a batch of several, waits for its callers to ask again even when nothing else is queued', async () => {
    const { store, batches } = batchingStore();
    try {
      const g = new GroupCreate(store, WAIT_ROOM_MS);
      const turns = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
      };
      // Three callers with one write each in flight; each asks again as soon as it is answered,
      // one turn of the event loop later than the one before it.
      const callers = [0, 1, 2].map((i) =>
        g.create(`/g/${i}`, 'v').then(async (ok) => {
          await turns(i + 1);
          return [ok, await g.create(`/g/${i + 3}`, 'v')];
        }),
      );
      expect(await Promise.all(callers)).toEqual([[true, true], [true, true], [true, true]]);
      // Without the wait the first to come back would have gone alone, ahead of the others.
      expect(batches).toEqual([['/g/0', '/g/1', '/g/2'], ['/g/3', '/g/4', '/g/5']]);
    } finally {
      await store.close();
    }
  });

  it('never puts one key twice in a batch and caps a batch at MAX_BATCH', async () => {
    const { store, batches } = batchingStore();
    try {
      const g = new GroupCreate(store);
      const asks = [g.create('/b/first', 'x')];
      for (let i = 0; i < MAX_BATCH + 10; i++) asks.push(g.create(`/b/${i}`, 'x'));
      asks.push(g.create('/b/0', 'y'));
      const got = await Promise.all(asks);
      expect(got.filter((c) => c)).toHaveLength(MAX_BATCH + 11);
      expect(got[got.length - 1]).toBe(false); // /b/0 was created by the earlier ask
      expect(batches.every((b) => b.length <= MAX_BATCH && new Set(b).size === b.length)).toBe(true);
      // All 76 asked in one turn: 64, then the other 12 (the second /b/0 among them, after the first).
      expect(batches.map((b) => b.length)).toEqual([MAX_BATCH, 12]);
      expect(batches[1]).toContain('/b/0');
    } finally {
      await store.close();
    }
  });

  it('rejects every write of a failed batch and goes on with the next', async () => {
    const { store, fail } = batchingStore();
    try {
      const g = new GroupCreate(store);
      await expect(Promise.all([g.create('/c/0', 'v'), g.create('/c/4', 'v')])).resolves.toEqual([true, true]);
      fail.next = new Error('etcd down');
      const batch = [g.create('/c/1', 'v'), g.create('/c/2', 'v')];
      await expect(batch[0]).rejects.toThrow('etcd down');
      await expect(batch[1]).rejects.toThrow('etcd down');
      await expect(Promise.all([g.create('/c/1', 'v'), g.create('/c/3', 'v')])).resolves.toEqual([true, true]);
      expect(await store.get('/c/2')).toBeNull(); // the failed batch wrote nothing
    } finally {
      await store.close();
    }
  });

  it('writes one by one on a store without createEach', async () => {
    const store = tmpEmbeddedStore();
    try {
      const g = new GroupCreate(store);
      expect(await Promise.all([g.create('/d/0', 'v'), g.create('/d/0', 'w'), g.create('/d/1', 'v')])).toEqual([true, false, true]);
    } finally {
      await store.close();
    }
  });
});

// The in-memory mirror's ordering rules (network/store-mirror.ts): events arrive by hand here,
// in the orders a lagging or replaying watch can deliver them.
import { StoreMirror } from '../../../src/network/store-mirror';
import { createLogger } from '../../../src/log';
import type { KeyValue, Store, WatchHandlers } from '../../../src/store/types';

const P = '/x/';

/** A store that serves a fixed list and hands its watch handlers to the test. */
function fakeStore(listed: KeyValue[], rev = 10): { store: Store; handlers: WatchHandlers[]; setList(kvs: KeyValue[]): void } {
  let list = listed;
  const handlers: WatchHandlers[] = [];
  const store = {
    revision: async () => rev,
    list: async (prefix: string) => list.filter((kv) => kv.key.startsWith(prefix)),
    watch: (_p: string, _r: number, h: WatchHandlers) => {
      handlers.push(h);
      return { close: () => undefined };
    },
  } as unknown as Store;
  return { store, handlers, setList: (kvs) => (list = kvs) };
}

const kv = (key: string, value: string, modRevision: number): KeyValue => ({ key, value, modRevision });

function mirror(store: Store, parse: (kv: KeyValue) => string | null = (k) => k.value): StoreMirror<string> {
  return new StoreMirror<string>({ store, prefixes: [P], parse, log: createLogger('silent') });
}

describe('StoreMirror', () => {
  it('serves nothing before start, then what the store listed', async () => {
    const { store } = fakeStore([kv(`${P}a`, 'A', 5)]);
    const m = mirror(store);
    expect(m.get(`${P}a`)).toBeUndefined();
    await m.start();
    expect(m.get(`${P}a`)).toBe('A');
    expect(m.get(`${P}b`)).toBeUndefined();
    expect(m.list(P)).toEqual([{ key: `${P}a`, value: 'A' }]);
  });

  it('ignores replayed puts and deletes older than what it holds', async () => {
    const { store } = fakeStore([kv(`${P}a`, 'A7', 7)]);
    const m = mirror(store);
    await m.start();
    // The watch starts at the list's revision and replays 6 and 7.
    m.onEvents([{ type: 'delete', key: `${P}a`, modRevision: 6 }, { type: 'put', kv: kv(`${P}a`, 'A7', 7) }]);
    expect(m.get(`${P}a`)).toBe('A7');
    m.onEvents([{ type: 'put', kv: kv(`${P}a`, 'A9', 9) }]);
    expect(m.get(`${P}a`)).toBe('A9');
    m.onEvents([{ type: 'delete', key: `${P}a`, modRevision: 11 }]);
    expect(m.get(`${P}a`)).toBeUndefined();
  });

  it('serves its own write at once and keeps it against an older delete still in the watch', async () => {
    const { store } = fakeStore([]);
    const m = mirror(store);
    await m.start();
    m.noteWrite(`${P}e`, 'mine');
    expect(m.get(`${P}e`)).toBe('mine');
    // A delete of an earlier incarnation of the key, delivered late: older than our write.
    m.onEvents([{ type: 'delete', key: `${P}e`, modRevision: 12 }]);
    expect(m.get(`${P}e`)).toBe('mine');
    // An older put of another value is not ours either.
    m.onEvents([{ type: 'put', kv: kv(`${P}e`, 'older', 13) }]);
    expect(m.get(`${P}e`)).toBe('mine');
    // Our own event arrives, then another host deletes the key: the mirror follows.
    m.onEvents([{ type: 'put', kv: kv(`${P}e`, 'mine', 14) }]);
    m.onEvents([{ type: 'delete', key: `${P}e`, modRevision: 15 }]);
    expect(m.get(`${P}e`)).toBeUndefined();
  });

  it('does not bring back a key it deleted when an older put is still in the watch', async () => {
    const { store } = fakeStore([kv(`${P}e`, 'E', 5)]);
    const m = mirror(store);
    await m.start();
    m.noteDelete(`${P}e`, true);
    expect(m.get(`${P}e`)).toBeUndefined();
    m.onEvents([{ type: 'put', kv: kv(`${P}e`, 'E-updated', 6) }]); // before our delete
    expect(m.get(`${P}e`)).toBeUndefined();
    m.onEvents([{ type: 'delete', key: `${P}e`, modRevision: 7 }]); // our delete
    // Created again later (by anyone): served.
    m.onEvents([{ type: 'put', kv: kv(`${P}e`, 'again', 8) }]);
    expect(m.get(`${P}e`)).toBe('again');
  });

  it('a write whose watch event came before its reply follows a later delete (no stale entry)', async () => {
    const { store } = fakeStore([]);
    const m = mirror(store);
    await m.start();
    m.onEvents([{ type: 'put', kv: kv(`${P}e`, 'mine', 21) }]); // our write's event, first
    m.noteWrite(`${P}e`, 'mine'); // then its reply
    expect(m.get(`${P}e`)).toBe('mine');
    m.onEvents([{ type: 'delete', key: `${P}e`, modRevision: 22 }]); // another host deletes it
    expect(m.get(`${P}e`)).toBeUndefined();
  });

  it('a write whose key was deleted again before its reply arrived is left to the store', async () => {
    const { store } = fakeStore([]);
    const m = mirror(store);
    await m.start();
    m.onEvents([{ type: 'put', kv: kv(`${P}e`, 'mine', 21) }, { type: 'delete', key: `${P}e`, modRevision: 22 }]);
    m.noteWrite(`${P}e`, 'mine');
    expect(m.get(`${P}e`)).toBeUndefined();
  });

  it('a delete whose watch event came before its reply blocks nothing afterwards', async () => {
    const { store } = fakeStore([kv(`${P}e`, 'E', 5)]);
    const m = mirror(store);
    await m.start();
    m.onEvents([{ type: 'delete', key: `${P}e`, modRevision: 6 }]);
    m.noteDelete(`${P}e`, true);
    m.onEvents([{ type: 'put', kv: kv(`${P}e`, 'again', 7) }]);
    expect(m.get(`${P}e`)).toBe('again');
  });

  it('a delete that found nothing waits for no event: a later put is served', async () => {
    const { store } = fakeStore([]);
    const m = mirror(store);
    await m.start();
    m.noteDelete(`${P}gone`, false);
    m.onEvents([{ type: 'put', kv: kv(`${P}gone`, 'new', 20) }]);
    expect(m.get(`${P}gone`)).toBe('new');
  });

  it('leaves out records the parser rejects, and drops one that stops qualifying', async () => {
    const { store } = fakeStore([kv(`${P}a`, 'keep', 3), kv(`${P}b`, 'skip', 4)]);
    const m = mirror(store, (k) => (k.value.startsWith('keep') ? k.value : null));
    await m.start();
    expect(m.get(`${P}a`)).toBe('keep');
    expect(m.get(`${P}b`)).toBeUndefined();
    m.onEvents([{ type: 'put', kv: kv(`${P}a`, 'skip now', 9) }]);
    expect(m.get(`${P}a`)).toBeUndefined();
    expect(m.size()).toBe(0);
  });

  it('leaves out a record that does not parse, and keeps serving the others', async () => {
    const { store } = fakeStore([kv(`${P}a`, 'ok', 3), kv(`${P}bad`, '{', 4)]);
    const m = mirror(store, (k) => {
      if (k.value === '{') throw new Error('invalid JSON');
      return k.value;
    });
    await m.start();
    expect(m.get(`${P}a`)).toBe('ok');
    expect(m.get(`${P}bad`)).toBeUndefined();
  });

  it('after a watch gap it reloads from the store, keeping writes the new list has not seen', async () => {
    const f = fakeStore([kv(`${P}a`, 'A', 3), kv(`${P}b`, 'B', 4)]);
    const m = mirror(f.store);
    await m.start();
    m.noteWrite(`${P}mine`, 'M');
    m.noteDelete(`${P}b`, true);
    // Meanwhile a has gone and c has come (events compacted away); the new list predates our delete.
    f.setList([kv(`${P}b`, 'B', 4), kv(`${P}c`, 'C', 30)]);
    f.handlers[0].onResync?.();
    await new Promise((r) => setImmediate(r));
    expect(m.get(`${P}a`)).toBeUndefined();
    expect(m.get(`${P}c`)).toBe('C');
    expect(m.get(`${P}b`)).toBeUndefined(); // deleted here; its event is still to come
    expect(m.get(`${P}mine`)).toBe('M');
  });

  it('tells onChange only of changes that matter to it, and never of replays', async () => {
    const { store } = fakeStore([kv(`${P}a`, 'A', 3)]);
    const heard: number[] = [];
    const m = new StoreMirror<string>({
      store,
      prefixes: [P],
      parse: (k) => k.value,
      log: createLogger('silent'),
      onChange: () => heard.push(heard.length),
      matters: (key, before, after) => key.endsWith('/mine') || before === 'watched' || after === 'watched',
    });
    await m.start();
    const loaded = heard.length;
    m.onEvents([{ type: 'put', kv: kv(`${P}other`, 'x', 11) }, { type: 'put', kv: kv(`${P}a`, 'A', 3) }]);
    expect(heard.length).toBe(loaded);
    expect(m.get(`${P}other`)).toBe('x'); // held all the same
    m.onEvents([{ type: 'put', kv: kv(`${P}mine`, 'm', 12) }]);
    expect(heard.length).toBe(loaded + 1);
    m.onEvents([{ type: 'put', kv: kv(`${P}other`, 'watched', 13) }]);
    m.onEvents([{ type: 'delete', key: `${P}other`, modRevision: 14 }]);
    expect(heard.length).toBe(loaded + 3);
    m.onEvents([{ type: 'delete', key: `${P}other`, modRevision: 15 }]); // nothing held any more
    expect(heard.length).toBe(loaded + 3);
  });

  it('tells onChange of its own delete at once, and of its own write when the write\'s event comes', async () => {
    const { store } = fakeStore([kv(`${P}a`, 'A', 3)]);
    let heard = 0;
    const m = new StoreMirror<string>({ store, prefixes: [P], parse: (k) => k.value, log: createLogger('silent'), onChange: () => heard++ });
    await m.start();
    heard = 0;
    m.noteDelete(`${P}a`, true);
    expect(heard).toBe(1);
    m.onEvents([{ type: 'delete', key: `${P}a`, modRevision: 11 }]); // the delete's own event
    expect(heard).toBe(1);
    m.noteDelete(`${P}absent`, false);
    expect(heard).toBe(1);
    m.noteWrite(`${P}b`, 'B');
    m.onEvents([{ type: 'put', kv: kv(`${P}b`, 'B', 12) }]);
    expect(heard).toBe(2);
    expect(m.get(`${P}b`)).toBe('B');
  });

  it('serves nothing after close', async () => {
    const { store } = fakeStore([kv(`${P}a`, 'A', 3)]);
    const m = mirror(store);
    await m.start();
    m.close();
    expect(m.get(`${P}a`)).toBeUndefined();
    expect(m.list(P)).toBeNull();
  });
});

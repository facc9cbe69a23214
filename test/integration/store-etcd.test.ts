// EtcdStore against a real etcd on 127.0.0.1: the shared conformance suite, then what only a
// networked store has to survive (outages, restarts, compaction, leases, concurrent clients).
import { Etcd3 } from 'etcd3';
import { VxnetError } from '../../src/errors';
import { EtcdStore } from '../../src/store/etcd';
import type { EtcdStoreOptions } from '../../src/store/etcd';
import type { WatchEvent } from '../../src/store/types';
import { startEtcd, sleep } from '../helpers/etcd';
import type { EtcdProcess } from '../helpers/etcd';
import { storeConformance } from '../helpers/store-conformance';
import { Keys } from '../../src/store/json';
import { registerHost } from '../../src/network/host-registry';

const SLOW = 60000;
let etcd: EtcdProcess;
let admin: Etcd3;
const open: EtcdStore[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  admin = new Etcd3({ hosts: etcd.endpoint });
}, 30000);

afterAll(async () => {
  for (const s of open) await s.close();
  admin?.close();
  await etcd?.stop();
});

async function store(extra: Partial<EtcdStoreOptions> = {}): Promise<EtcdStore> {
  const s = await EtcdStore.open({ endpoints: [etcd.endpoint], prefix: '/t/', ...extra });
  open.push(s);
  return s;
}

/** Each test starts from an empty keyspace (tests run one at a time, each file has its own etcd). */
async function wipe(): Promise<void> {
  await admin.delete().all();
}

async function rejection(p: Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const t0 = Date.now();
  try {
    await p;
  } catch (err) {
    return { err, ms: Date.now() - t0 };
  }
  throw new Error('expected a rejection');
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, withinMs: number): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return { value: v, ms: Date.now() - t0 };
    if (Date.now() - t0 > withinMs) throw new Error(`${what}: not within ${withinMs} ms`);
    await sleep(50);
  }
}

function keyOf(e: WatchEvent): string {
  return e.type === 'put' ? e.kv.key : e.key;
}

storeConformance('etcd', async () => {
  await wipe();
  return EtcdStore.open({ endpoints: [etcd.endpoint] });
});

describe('src/store/etcd.ts', () => {
  beforeEach(wipe);

  it('rejects every kind of call with VXNET_ERR_STORE within the call timeout while etcd is down, and recovers without a reopen', async () => {
    const s = await store(); // default callTimeoutMs: 5000
    await s.createIfAbsent('/t/o/kept', 'v');
    const kv = await s.get('/t/o/kept');
    await etcd.kill();
    try {
      const calls = [
        s.get('/t/o/kept'),
        s.list('/t/o/'),
        s.createIfAbsent('/t/o/new', 'v'),
        s.compareAndSwap('/t/o/kept', 'w', kv!.modRevision),
        s.delete('/t/o/kept'),
        s.revision(),
      ];
      const results = await Promise.all(calls.map(rejection));
      const times = results.map((r) => r.ms);
      // eslint-disable-next-line no-console
      console.log(`etcd down: calls rejected after ${times.join(', ')} ms`);
      for (const { err, ms } of results) {
        expect(err).toBeInstanceOf(VxnetError);
        expect((err as VxnetError).code).toBe('VXNET_ERR_STORE');
        expect((err as VxnetError).message).toMatch(/^could not \S+.* in etcd: /);
        expect((err as VxnetError).cause).toBeDefined();
        expect(ms).toBeLessThan(6500);
      }
      expect((results[0].err as VxnetError).message).toContain('/t/o/kept');
    } finally {
      await etcd.restart();
    }
    const back = await until('first successful write after restart', () => s.createIfAbsent('/t/o/after', 'v'), 10000);
    // eslint-disable-next-line no-console
    console.log(`etcd back: first write succeeded ${back.ms} ms after it was healthy`);
    expect((await s.get('/t/o/kept'))?.value).toBe('v');
    expect((await s.get('/t/o/after'))?.value).toBe('v');
  }, SLOW);

  it('times out calls to a hung etcd (SIGSTOP) within the call timeout', async () => {
    const s = await store({ callTimeoutMs: 2000 });
    await s.createIfAbsent('/t/p/a', 'v');
    etcd.pause();
    let results: Array<{ err: unknown; ms: number }>;
    try {
      results = await Promise.all([s.get('/t/p/a'), s.createIfAbsent('/t/p/b', 'v')].map(rejection));
    } finally {
      etcd.resume();
    }
    // eslint-disable-next-line no-console
    console.log(`etcd paused: calls rejected after ${results.map((r) => r.ms).join(', ')} ms (timeout 2000)`);
    for (const { err, ms } of results) {
      expect((err as VxnetError).code).toBe('VXNET_ERR_STORE');
      expect((err as VxnetError).message).toMatch(/within 2000 ms/);
      expect(ms).toBeGreaterThanOrEqual(1900);
      expect(ms).toBeLessThan(3000);
    }
    await until('a read after resume', () => s.get('/t/p/a'), 10000);
  }, SLOW);

  it('fails to open, as VXNET_ERR_STORE within dialTimeoutMs, when nothing answers', async () => {
    const t0 = Date.now();
    const err = await EtcdStore.open({ endpoints: ['http://127.0.0.1:1'], dialTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect((err as VxnetError).code).toBe('VXNET_ERR_STORE');
    expect(Date.now() - t0).toBeLessThan(2500);
  });

  it('calls onResync when the watch starts from a compacted revision, then goes on from the current one', async () => {
    const s = await store();
    const from = await s.revision();
    await s.createIfAbsent('/t/c/1', 'a');
    await s.createIfAbsent('/t/c/2', 'b');
    const rev = await s.revision();
    await admin.kv.compact({ revision: String(rev), physical: true });
    const events: WatchEvent[] = [];
    let resyncs = 0;
    const w = s.watch('/t/c/', from, {
      onEvents: (evs) => events.push(...evs),
      onResync: () => resyncs++,
    });
    await until('onResync', async () => resyncs > 0, 5000);
    await s.createIfAbsent('/t/c/3', 'c');
    await until('event after resync', async () => events.length > 0, 5000);
    w.close();
    expect(resyncs).toBe(1);
    expect(events.map(keyOf)).toEqual(['/t/c/3']);
  }, SLOW);

  it('resumes a watch across an etcd restart from its last revision: no loss, no repeat', async () => {
    const s = await store();
    const errors: VxnetError[] = [];
    const writer = await store({ onError: (e) => errors.push(e) });
    const events: WatchEvent[] = [];
    let resyncs = 0;
    const w = s.watch('/t/rw/', await s.revision(), { onEvents: (evs) => events.push(...evs), onResync: () => resyncs++ });
    await writer.createIfAbsent('/t/rw/a', '1');
    await until('first event', async () => events.length === 1, 5000);
    await etcd.kill();
    await etcd.restart();
    // Written while the watcher is still reconnecting (its backoff starts at 250 ms).
    await writer.createIfAbsent('/t/rw/b', '2');
    await writer.delete('/t/rw/a');
    const t0 = Date.now();
    await until('events written during the gap', async () => events.length >= 3, 15000);
    // eslint-disable-next-line no-console
    console.log(`watch caught up ${Date.now() - t0} ms after the writes that followed the restart`);
    await sleep(300);
    w.close();
    expect(events.map((e) => `${e.type} ${keyOf(e)}`)).toEqual(['put /t/rw/a', 'put /t/rw/b', 'delete /t/rw/a']);
    expect(resyncs).toBe(0);
  }, SLOW);

  it('watchers of one prefix share an etcd watch, each getting exactly the events after its own revision', async () => {
    const s = await store();
    const seen = { a: [] as string[], b: [] as string[], c: [] as string[] };
    const follow = (who: keyof typeof seen) => ({ onEvents: (evs: WatchEvent[]) => seen[who].push(...evs.map((e) => `${e.type} ${keyOf(e)}`)) });
    const r0 = await s.revision();
    const a = s.watch('/t/f/', r0, follow('a'));
    await s.createIfAbsent('/t/f/1', 'x');
    await until('a sees 1', async () => seen.a.length === 1, 5000);
    // b listed after 1: it joins a's watch. c listed before 1, which a's watch already delivered:
    // it needs a watch of its own.
    const b = s.watch('/t/f/', await s.revision(), follow('b'));
    const c = s.watch('/t/f/', r0, follow('c'));
    expect(s.watchCount()).toBe(2);
    await s.createIfAbsent('/t/f/2', 'y');
    await s.delete('/t/f/1');
    await until('all caught up', async () => seen.a.length === 3 && seen.b.length === 2 && seen.c.length === 3, 5000);
    await sleep(200);
    expect(seen.a).toEqual(['put /t/f/1', 'put /t/f/2', 'delete /t/f/1']);
    expect(seen.b).toEqual(['put /t/f/2', 'delete /t/f/1']);
    expect(seen.c).toEqual(seen.a);
    a.close();
    expect(s.watchCount()).toBe(2); // b still on it
    b.close();
    c.close();
    expect(s.watchCount()).toBe(0);
  });

  it('keeps delivering after a handler throws, and reports the throw through onError', async () => {
    const errors: VxnetError[] = [];
    const s = await store({ onError: (e) => errors.push(e) });
    const seen: string[] = [];
    const w = s.watch('/t/h/', await s.revision(), {
      onEvents(evs) {
        seen.push(...evs.map(keyOf));
        if (seen.length === 1) throw new Error('handler bug');
      },
    });
    await s.createIfAbsent('/t/h/1', 'a');
    await until('first event', async () => seen.length === 1, 5000);
    await s.createIfAbsent('/t/h/2', 'b');
    await until('second event', async () => seen.length === 2, 5000);
    w.close();
    expect(errors.map((e) => e.message)).toEqual([expect.stringContaining('handler bug')]);
  });

  it('keeps leased keys while the holder lives and drops them TTL after it stops', async () => {
    const holder = await store();
    const reader = await store();
    const lease = await holder.grantLease(2);
    expect(await holder.createIfAbsent('/t/l/host', 'me', { lease })).toBe(true);
    await holder.createIfAbsent('/t/l/plain', 'x');
    await sleep(5000); // 2.5 × TTL: only keep-alives keep it
    expect((await reader.get('/t/l/host'))?.value).toBe('me');
    // compareAndSwap keeps the key's lease
    const kv = await reader.get('/t/l/host');
    expect(await holder.compareAndSwap('/t/l/host', 'me2', kv!.modRevision)).toBe(true);
    await holder.close();
    const t0 = Date.now();
    const gone = await until('leased key gone', async () => (await reader.get('/t/l/host')) === null, 6000);
    // eslint-disable-next-line no-console
    console.log(`leased key (ttl 2 s) gone ${gone.ms} ms after its holder closed`);
    expect(Date.now() - t0).toBeGreaterThan(1000);
    expect(await reader.get('/t/l/plain')).not.toBeNull();
  }, SLOW);

  it('a restarted process takes its host key over under its new lease: no delete for the watchers, and the old lease\'s expiry leaves it', async () => {
    // registerHost after kill -9: the key still carries the dead process's lease. A delete and
    // create would tell every other host that this host left (they drop its tunnel entries).
    const keys = new Keys('/t/');
    const dead = await store();
    await registerHost(dead, keys, 'h1', { vtep: '10.0.0.1', version: 'old' }, 2);
    const watcher = await store();
    const events: WatchEvent[] = [];
    const w = watcher.watch(keys.hosts(), await watcher.revision(), { onEvents: (evs) => events.push(...evs) });
    const restarted = await store();
    await registerHost(restarted, keys, 'h1', { vtep: '10.0.0.1', version: 'new' }, 2);
    await dead.close(); // keep-alives of the old lease stop: it expires 2 s later
    await sleep(5000);
    w.close();
    expect(events.map((e) => e.type)).toEqual(['put']);
    expect(JSON.parse((await watcher.get(keys.host('h1')))!.value)).toEqual({ vtep: '10.0.0.1', version: 'new' });
    // The key lives on the new lease: it goes when that one's holder stops.
    await restarted.close();
    await until('host key gone with the new lease', async () => (await watcher.get(keys.host('h1'))) === null, 6000);
  }, SLOW);

  it('grants a new lease after losing one and writes its keys again', async () => {
    const errors: VxnetError[] = [];
    const holder = await store({ onError: (e) => errors.push(e) });
    const lease = await holder.grantLease(2);
    await holder.createIfAbsent('/t/g/host', 'me', { lease });
    const before = (await admin.get('/t/g/host').exec()).kvs[0].lease;
    await etcd.kill();
    await sleep(5000); // > 2 × TTL without keep-alives: etcd3 declares the lease lost
    await etcd.restart();
    const moved = await until(
      'key under a new lease',
      async () => {
        const kv = (await admin.get('/t/g/host').exec()).kvs[0];
        return kv && kv.lease !== before && kv.lease !== '0' ? kv : null;
      },
      15000,
    );
    // eslint-disable-next-line no-console
    console.log(`key carried by a new lease ${moved.ms} ms after etcd was back`);
    expect(errors.some((e) => /was lost/.test(e.message))).toBe(true);
    await sleep(5000); // the old lease expires; the new one is kept alive
    expect((await admin.get('/t/g/host').string())).toBe('me');
    // The handle still works for new keys.
    expect(await holder.createIfAbsent('/t/g/other', 'x', { lease })).toBe(true);
  }, SLOW);

  it('has exactly one winner per key across 3 clients (50 distinct keys each, plus contended keys)', async () => {
    const clients = await Promise.all([store(), store(), store()]);
    const distinct = await Promise.all(
      clients.flatMap((c, ci) => Array.from({ length: 50 }, (_, i) => c.createIfAbsent(`/t/cc/d/${ci}/${String(i).padStart(2, '0')}`, `${ci}`))),
    );
    expect(distinct.filter(Boolean)).toHaveLength(150);
    const raceKeys = Array.from({ length: 10 }, (_, k) => `/t/cc/r/${k}`);
    const attempts = clients.flatMap((c, ci) => raceKeys.flatMap((key) => Array.from({ length: 5 }, (_, a) => ({ key, p: c.createIfAbsent(key, `${ci}.${a}`) }))));
    const won = await Promise.all(attempts.map(async ({ key, p }) => ({ key, ok: await p })));
    for (const key of raceKeys) expect(won.filter((w) => w.key === key && w.ok)).toHaveLength(1);
    expect(await clients[0].list('/t/cc/d/')).toHaveLength(150);
    // compareAndSwap from one revision: one winner too
    const cur = await clients[0].get(raceKeys[0]);
    const cas = await Promise.all(clients.map((c, ci) => c.compareAndSwap(raceKeys[0], `cas${ci}`, cur!.modRevision)));
    expect(cas.filter(Boolean)).toHaveLength(1);
  }, SLOW);

  it('rejects calls after close with VXNET_ERR_STORE', async () => {
    const s = await EtcdStore.open({ endpoints: [etcd.endpoint] });
    await s.close();
    await expect(s.get('/t/x')).rejects.toMatchObject({ code: 'VXNET_ERR_STORE' });
  });
});

// EtcdStore against a real 3-member etcd cluster on loopback: members are SIGKILLed and brought
// back while three clients write, race and read. No call may fail (a write whose member died is
// sent again to another member, and its outcome is read back), no race may have two winners,
// and what each client believes it wrote is what etcd holds at the end.
import { EtcdStore } from '../../src/store/etcd';
import { sleep, startEtcdCluster } from '../helpers/etcd';
import type { EtcdCluster } from '../helpers/etcd';

const CHURN_MS = 14_000;

let cluster: EtcdCluster;
beforeAll(async () => {
  cluster = await startEtcdCluster(3);
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

interface Tally {
  calls: number;
  failures: string[];
}

/** One client's churn over its own keys: create, swap, delete, read back, and one shared race per round. */
async function churn(store: EtcdStore, id: string, until: number, tally: Tally, wins: Map<string, string[]>): Promise<Map<string, string | null>> {
  const mine = new Map<string, string | null>();
  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    tally.calls++;
    try {
      return await fn();
    } catch (err) {
      tally.failures.push(`${id} ${what}: ${(err as Error).message}`);
      await sleep(100);
      return undefined;
    }
  };
  for (let round = 0; Date.now() < until; round++) {
    const key = `/c/${id}/${round % 20}`;
    const value = `${id}-${round}`;
    const current = await call('get', () => store.get(key));
    if (current === undefined) continue;
    if (current === null) {
      if (await call('create', () => store.createIfAbsent(key, value))) mine.set(key, value);
    } else if (round % 3 === 0) {
      if (await call('delete', () => store.delete(key, current.modRevision))) mine.set(key, null);
    } else if (await call('swap', () => store.compareAndSwap(key, value, current.modRevision))) {
      mine.set(key, value);
    }
    // The shared race: like two hosts taking the same free address.
    const race = `/c/race/${round}`;
    if (await call('race', () => store.createIfAbsent(race, `${id}-${round}`))) {
      wins.set(race, [...(wins.get(race) ?? []), id]);
    }
    await sleep(20);
  }
  return mine;
}

describe('src/store/etcd.ts on a 3-member cluster', () => {
  it('fails no call and loses no write while members are killed and restarted', async () => {
    const stores = await Promise.all(['a', 'b', 'c'].map(() => EtcdStore.open({ endpoints: cluster.endpoints })));
    const lease = await stores[0].grantLease(3);
    expect(await stores[0].createIfAbsent('/c/host/a', 'alive', { lease })).toBe(true);
    const tally: Tally = { calls: 0, failures: [] };
    const wins = new Map<string, string[]>();
    const until = Date.now() + CHURN_MS;
    const killer = (async () => {
      // Each member in turn is down for a while; two stay up, so etcd keeps its quorum.
      for (const m of cluster.members) {
        await sleep(CHURN_MS / 8);
        await m.kill();
        await sleep(CHURN_MS / 8);
        await m.restart();
      }
    })();
    try {
      const [results] = await Promise.all([
        Promise.all(stores.map((s, i) => churn(s, 'abc'[i], until, tally, wins))),
        killer,
      ]);
      // eslint-disable-next-line no-console
      console.log(`3-member cluster, each member killed in turn: ${tally.calls} calls, ${tally.failures.length} failed; ${wins.size} races`);
      expect(tally.failures).toEqual([]);
      for (const [race, winners] of wins) expect([race, winners.length]).toEqual([race, 1]);
      for (const mine of results) {
        for (const [key, value] of mine) expect([key, (await stores[1].get(key))?.value ?? null]).toEqual([key, value]);
      }
      // The leased registration outlived every member's death (keep-alives moved to live members).
      expect((await stores[2].get('/c/host/a'))?.value).toBe('alive');
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  }, 90_000);
});

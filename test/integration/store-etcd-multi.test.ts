// EtcdStore given several endpoints, one of which never answers (connection refused): every
// call lands on the live member, including the writes that the dead member's breaker lets
// through as its trial (refused at once, sent again to the live one).
import { VxnetError } from '../../src/errors';
import { EtcdStore } from '../../src/store/etcd';
import { sleep, startEtcd } from '../helpers/etcd';
import type { EtcdProcess } from '../helpers/etcd';

let etcd: EtcdProcess;
beforeAll(async () => {
  etcd = await startEtcd();
}, 30000);
afterAll(async () => {
  await etcd?.stop();
});

describe('src/store/etcd.ts with several endpoints', () => {
  it('serves every read and every write while one member is down', async () => {
    const s = await EtcdStore.open({ endpoints: ['http://127.0.0.1:1', etcd.endpoint], callTimeoutMs: 2000 });
    const writes: Array<{ ok: boolean; ms: number }> = [];
    const reads: Array<{ ok: boolean; ms: number }> = [];
    const t0 = Date.now();
    try {
      for (let i = 0; Date.now() - t0 < 12000; i++) {
        let t = Date.now();
        const ok = await s.createIfAbsent(`/m/${i}`, 'v').then(
          () => true,
          (err: unknown) => {
            expect((err as VxnetError).code).toBe('VXNET_ERR_STORE');
            return false;
          },
        );
        writes.push({ ok, ms: Date.now() - t });
        t = Date.now();
        const read = await s.get(`/m/${i}`).then(() => true, () => false);
        reads.push({ ok: read, ms: Date.now() - t });
        await sleep(100);
      }
    } finally {
      await s.close();
    }
    const failed = writes.filter((w) => !w.ok);
    // eslint-disable-next-line no-console
    console.log(
      `one of 2 members down, 12 s: ${writes.length} writes (${failed.length} failed${failed.length ? `, after ${failed.map((f) => f.ms).join(', ')} ms` : ''}), ` +
        `${reads.length} reads (${reads.filter((r) => !r.ok).length} failed, slowest ${Math.max(...reads.map((r) => r.ms))} ms)`,
    );
    expect(reads.every((r) => r.ok)).toBe(true);
    expect(failed).toEqual([]);
  }, 60000);
});

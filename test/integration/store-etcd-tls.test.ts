// EtcdStore over TLS with client certificates (etcd --client-cert-auth), certificates made per run.
import { VxnetError } from '../../src/errors';
import { EtcdStore } from '../../src/store/etcd';
import { startEtcd } from '../helpers/etcd';
import type { EtcdProcess } from '../helpers/etcd';
import { storeConformance } from '../helpers/store-conformance';

let etcd: EtcdProcess;
beforeAll(async () => {
  etcd = await startEtcd({ tls: true });
}, 30000);
afterAll(async () => {
  await etcd?.stop();
});

// The suite's keys are fixed and this file's etcd is shared by its tests: each starts empty.
storeConformance('etcd over TLS', async () => {
  const s = await EtcdStore.open({ endpoints: [etcd.endpoint], ...etcd.tls! });
  for (const kv of await s.list('/')) await s.delete(kv.key);
  return s;
});

describe('src/store/etcd.ts over TLS', () => {
  it('refuses to open without a client certificate', async () => {
    const err = await EtcdStore.open({ endpoints: [etcd.endpoint], ca: etcd.tls!.ca, dialTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VxnetError);
    expect((err as VxnetError).code).toBe('VXNET_ERR_STORE');
  });

  it('names an unreadable certificate file', async () => {
    await expect(EtcdStore.open({ endpoints: [etcd.endpoint], ca: '/nonexistent/ca.pem' })).rejects.toMatchObject({
      code: 'VXNET_ERR_STORE',
      message: expect.stringContaining('/nonexistent/ca.pem'),
    });
  });
});

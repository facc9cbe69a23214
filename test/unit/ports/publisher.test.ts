// The ports domain over the embedded store and a fake kernel: which host ports it takes, what it
// records, and that a refusal or a failure leaves nothing behind.
import { PortPublisher, PortDataplane, PORTMAP_OPTION } from '../../../src/ports';
import type { PortRecord } from '../../../src/ports';
import { vxError, VxnetError } from '../../../src/errors';
import { createLogger } from '../../../src/log';
import { getJson } from '../../../src/store/json';
import type { Store } from '../../../src/store/types';
import { tmpEmbeddedStore } from '../../helpers/tmp-store';
import { TEST_KEYS, NET_ID, EP_ID, EP_ID2 } from '../../helpers/plugin-app';

interface FakeKernel extends PortDataplane {
  /** EndpointID → rule count */
  rules: Map<string, number>;
  /** proto/ip:port of reservation sockets open now */
  open: Set<string>;
  /** ports some other process holds */
  taken: Set<string>;
  failAdd: boolean;
}

function fakeKernel(): FakeKernel {
  const k: FakeKernel = {
    rules: new Map(),
    open: new Set(),
    taken: new Set(),
    failAdd: false,
    async ensurePortChains() {},
    async addPortRules(r) {
      if (k.failAdd) throw vxError('VXNET_ERR_FIREWALL', 'iptables-restore failed');
      k.rules.set(r.endpointId, (k.rules.get(r.endpointId) ?? 0) + r.bindings.length + 1);
    },
    async removePortRules(r) {
      k.rules.delete(r.endpointId);
    },
    async removePortRulesOf(ids) {
      for (const id of ids) k.rules.delete(id);
    },
    async listPortRuleOwners() {
      return new Map(k.rules);
    },
    async enableRouteLocalnet() {},
    async enableHairpin() {},
    async reservePort(proto, ip, port) {
      const key = `${proto}/${ip}:${port}`;
      const clash = [...k.open, ...k.taken].some((o) => {
        const [p, rest] = o.split('/');
        const [oip, oport] = rest.split(':');
        return p === proto && Number(oport) === port && (oip === ip || oip === '0.0.0.0' || ip === '0.0.0.0');
      });
      if (clash) return null;
      k.open.add(key);
      return { close: async () => void k.open.delete(key) };
    },
    readEphemeralRange: () => '40000 40003',
  };
  return k;
}

const places = {
  async endpointPlace(networkId: string, endpointId: string) {
    if (endpointId !== EP_ID && endpointId !== EP_ID2) throw vxError('VXNET_ERR_UNKNOWN_ENDPOINT', `unknown endpoint ${endpointId} in network ${networkId}`);
    return { lnet: 'appnet', containerIp: endpointId === EP_ID ? '10.1.0.2' : '10.1.0.3', bridge: 'vxb-256', subnet: '10.1.0.0/24', veth: 'vxe-x' };
  },
};

const map = (...entries: Array<Record<string, unknown>>): Record<string, unknown> => ({
  [PORTMAP_OPTION]: entries.map((e) => ({ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 0, HostPortEnd: 0, ...e })),
});

describe('src/ports/publisher.ts', () => {
  let store: Store;
  let k: FakeKernel;
  let pub: PortPublisher;
  const make = (): PortPublisher => new PortPublisher({ store, keys: TEST_KEYS, host: 'h1', dataplane: k, places, log: createLogger('silent') });
  const record = async (ep = EP_ID): Promise<PortRecord | null> => (await getJson<PortRecord>(store, TEST_KEYS.port('h1', ep)))?.value ?? null;

  beforeEach(() => {
    store = tmpEmbeddedStore();
    k = fakeKernel();
    pub = make();
  });
  afterEach(async () => {
    await pub.close();
    await store.close();
  });

  it('publishes -p H:C, -p C, -p A-B:C and /udp: reserves, records, adds rules', async () => {
    k.taken.add('tcp/0.0.0.0:8001');
    const bindings = await pub.program(NET_ID, EP_ID, map({ HostPort: 8080, HostPortEnd: 8080 }, {}, { HostPort: 8000, HostPortEnd: 8002 }, { Proto: 17, Port: 53, HostPort: 8080, HostPortEnd: 8080 }));
    expect(bindings).toEqual([
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80 },
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 40000, containerPort: 80 },
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8000, containerPort: 80 },
      { proto: 'udp', hostIp: '0.0.0.0', hostPort: 8080, containerPort: 53 },
    ]);
    expect([...k.open].sort()).toEqual(['tcp/0.0.0.0:40000', 'tcp/0.0.0.0:8000', 'tcp/0.0.0.0:8080', 'udp/0.0.0.0:8080']);
    expect(k.rules.get(EP_ID)).toBe(5);
    expect(await record()).toMatchObject({ networkId: NET_ID, containerIp: '10.1.0.2', bridge: 'vxb-256', subnet: '10.1.0.0/24', bindings });
    expect(pub.counts()).toEqual({ tcp: 3, udp: 1 });
    // The next free port of a range skips the one a process holds; the next ephemeral port follows the last.
    expect(await pub.program(NET_ID, EP_ID2, map({ HostPort: 8000, HostPortEnd: 8002 }, {}))).toEqual([
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8002, containerPort: 80 },
      { proto: 'tcp', hostIp: '0.0.0.0', hostPort: 40001, containerPort: 80 },
    ]);
  });

  it('a re-sent Program changes nothing; another one replaces the ports', async () => {
    const first = await pub.program(NET_ID, EP_ID, map({}));
    expect(await pub.program(NET_ID, EP_ID, map({}))).toEqual(first);
    expect(k.rules.get(EP_ID)).toBe(2);
    expect(k.open.size).toBe(1);
    await pub.program(NET_ID, EP_ID, map({ HostPort: 9000, HostPortEnd: 9000 }));
    expect([...k.open]).toEqual(['tcp/0.0.0.0:9000']);
    await pub.program(NET_ID, EP_ID, {});
    expect(k.open.size + k.rules.size).toBe(0);
    expect(await record()).toBeNull();
  });

  const refusals: Array<[string, string[], Array<Record<string, unknown>>, string, RegExp]> = [
    ['a fixed port a process holds', ['tcp/0.0.0.0:8080'], [{ HostPort: 8080, HostPortEnd: 8080 }], 'VXNET_ERR_PORT_IN_USE', /host port 8080\/tcp on 0\.0\.0\.0 is already in use/],
    ['a port on all addresses when one address has it', ['tcp/127.0.0.1:8080'], [{ HostPort: 8080, HostPortEnd: 8080 }], 'VXNET_ERR_PORT_IN_USE', /host port 8080\/tcp/],
    ['a whole range', ['tcp/0.0.0.0:8000', 'tcp/0.0.0.0:8001'], [{ HostPort: 8000, HostPortEnd: 8001 }], 'VXNET_ERR_PORT_IN_USE', /every host port of 8000-8001\/tcp on 0\.0\.0\.0 is already in use/],
  ];
  it.each(refusals)('refuses %s and leaves nothing behind', async (_what, taken, entries, code, msg) => {
    for (const t of taken) k.taken.add(t);
    // A free ephemeral port first: its reservation must be given back too.
    const err: unknown = await pub.program(NET_ID, EP_ID, map({}, ...entries)).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(VxnetError);
    expect((err as VxnetError).code).toBe(code);
    expect((err as VxnetError).message).toMatch(msg);
    expect(k.open.size + k.rules.size).toBe(0);
    expect(await record()).toBeNull();
  });

  it('another container\'s port is taken; the ephemeral range can run out', async () => {
    await pub.program(NET_ID, EP_ID, map({ HostPort: 8080, HostPortEnd: 8080 }));
    await expect(pub.program(NET_ID, EP_ID2, map({ HostPort: 8080, HostPortEnd: 8080 }))).rejects.toThrow(/host port 8080\/tcp on 0\.0\.0\.0 is already in use/);
    expect(await record(EP_ID2)).toBeNull();
    await expect(pub.program(NET_ID, EP_ID2, map({}, {}, {}, {}, {}))).rejects.toMatchObject({ code: 'VXNET_ERR_PORTS_EXHAUSTED', message: expect.stringMatching(/no free host port left .* in the ephemeral range 40000-40003/) });
    expect([...k.open]).toEqual(['tcp/0.0.0.0:8080']);
  });

  it('a failure adding rules undoes the reservations and the record', async () => {
    k.failAdd = true;
    await expect(pub.program(NET_ID, EP_ID, map({}, { HostPort: 8080, HostPortEnd: 8080 }))).rejects.toThrow(/iptables-restore failed/);
    expect(k.open.size).toBe(0);
    expect(await record()).toBeNull();
  });

  it('refuses bad input and unknown endpoints before changing anything', async () => {
    await expect(pub.program(NET_ID, EP_ID, map({ Proto: 132 }))).rejects.toThrow(/sctp is not supported/);
    await expect(pub.program(NET_ID, 'f'.repeat(64), map({}))).rejects.toMatchObject({ code: 'VXNET_ERR_UNKNOWN_ENDPOINT' });
    expect(k.open.size + k.rules.size).toBe(0);
  });

  it('revoke removes rules, reservations and record, and may come again', async () => {
    await pub.program(NET_ID, EP_ID, map({ HostPort: 8080, HostPortEnd: 8080 }));
    await pub.revoke(EP_ID);
    await pub.revoke(EP_ID);
    await pub.revoke(EP_ID2);
    expect(k.open.size + k.rules.size).toBe(0);
    expect(await record()).toBeNull();
    expect(await pub.published()).toEqual([]);
  });

  it('reconcile after a restart: takes reservations back, rebuilds missing rules, drops stale records and orphan rules', async () => {
    await pub.program(NET_ID, EP_ID, map({ HostPort: 8080, HostPortEnd: 8080 }));
    await pub.program(NET_ID, EP_ID2, map({ HostPort: 8081, HostPortEnd: 8081 }));
    await pub.close(); // the process died: sockets closed, rules stay
    expect(k.open.size).toBe(0);
    k.rules.delete(EP_ID); // someone flushed them
    k.rules.set('a'.repeat(64), 3); // left by an endpoint nobody records
    pub = make();
    expect((await pub.published()).map((p) => p.reserved)).toEqual([false, false]);

    const dry = await pub.reconcile(async () => new Set([EP_ID]), true);
    expect(dry).toEqual({ stalePorts: [`${EP_ID2.slice(0, 12)} (0.0.0.0:8081/tcp)`], repairPorts: [`${EP_ID.slice(0, 12)} (0.0.0.0:8080/tcp)`], orphanPortRules: ['aaaaaaaaaaaa'] });
    expect(k.open.size).toBe(0);

    expect(await pub.reconcile(async () => new Set([EP_ID]), false)).toEqual(dry);
    expect([...k.open]).toEqual(['tcp/0.0.0.0:8080']);
    expect([...k.rules]).toEqual([[EP_ID, 2]]);
    expect(await record(EP_ID2)).toBeNull();
    expect((await pub.published()).map((p) => [p.hostPort, p.reserved])).toEqual([[8080, true]]);
    expect(await pub.reconcile(async () => new Set([EP_ID]), false)).toEqual({ stalePorts: [], repairPorts: [], orphanPortRules: [] });
  });

  it('reconcile reports a port another process took while the driver was away, and keeps the binding', async () => {
    await pub.program(NET_ID, EP_ID, map({ HostPort: 8080, HostPortEnd: 8080 }));
    await pub.close();
    k.taken.add('tcp/0.0.0.0:8080');
    pub = make();
    await pub.reconcile(async () => new Set([EP_ID]), false);
    expect((await pub.published()).map((p) => [p.hostPort, p.reserved])).toEqual([[8080, false]]);
    expect(k.rules.get(EP_ID)).toBe(2);
  });
});

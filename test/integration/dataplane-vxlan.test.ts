// VXLAN device, FDB and neighbour entries against the real kernel, read back with
// `ip -d -j link`, `bridge -j fdb` and `ip -j neigh`. The underlay is a veth end with an
// address from TEST-NET-1 that exists only in this netns.
import { VxnetError } from '../../src/errors';
import {
  ZERO_MAC,
  closeRtnl,
  ensureBridge,
  ensureFdb,
  ensureNeigh,
  ensureVeth,
  ensureVxlan,
  listFdb,
  listNeigh,
  removeFdb,
  removeNeigh,
  removeVxlan,
  vxlanMismatch,
} from '../../src/dataplane';
import type { VxlanAttrs, VxlanSpec } from '../../src/dataplane';
import { bridgeJson, deleteLinks, ipJson, linkDetails, sh, suffix } from '../helpers/netns';

afterAll(() => closeRtnl());

describe('src/dataplane/vxlan vxlanMismatch', () => {
  const base: VxlanAttrs = { vni: 4097, port: 4789, local: '192.0.2.1', link: 7, learning: false, proxy: true };

  it('is null when everything matches', () => {
    expect(vxlanMismatch(base, { ...base })).toBeNull();
  });

  it.each<[string, Partial<VxlanAttrs>, string]>([
    ['vni', { vni: 2 }, 'vni: 4097 vs 2'],
    ['port', { port: 8472 }, 'port: 4789 vs 8472'],
    ['local', { local: '192.0.2.9' }, 'local: 192.0.2.1 vs 192.0.2.9'],
    ['underlay', { link: null }, 'link: 7 vs null'],
    ['learning', { learning: true }, 'learning: false vs true'],
    ['proxy', { proxy: false }, 'proxy: true vs false'],
  ])('names a different %s', (_field, change, text) => {
    expect(vxlanMismatch(base, { ...base, ...change })).toBe(text);
  });

  it('lists every difference', () => {
    expect(vxlanMismatch(base, { ...base, vni: 1, proxy: false })).toBe('vni: 4097 vs 1, proxy: true vs false');
  });
});

describe('src/dataplane/vxlan', () => {
  let s: string;
  let underlay: string;
  let bridge: string;
  let spec: VxlanSpec;
  beforeEach(async () => {
    s = suffix(8);
    underlay = `vxu-${s}`;
    bridge = `vxb-${s}`;
    sh('ip', ['link', 'add', underlay, 'mtu', '1500', 'type', 'veth', 'peer', 'name', `vxq-${s}`]);
    sh('ip', ['addr', 'add', '192.0.2.1/24', 'dev', underlay]);
    sh('ip', ['link', 'set', underlay, 'up']);
    await ensureBridge({ name: bridge, mtu: 1450, mac: '02:42:0a:4e:00:01', addresses: ['10.78.0.1/24'] });
    // VNIs differ per test: the kernel refuses two devices with one VNI and port in a netns.
    spec = { name: `vxv-${s}`, vni: 100 + Math.floor(Math.random() * 3000), port: 4789, local: '192.0.2.1', underlay, mtu: 1450, bridge };
  });
  afterEach(() => deleteLinks(spec.name, underlay, bridge));

  it('creates the device: VNI, port, local, underlay, learning off, proxy on, MTU, on the bridge, up', async () => {
    await ensureVxlan(spec);
    const d = linkDetails(spec.name);
    expect(d.linkinfo.info_kind).toBe('vxlan');
    expect(d.linkinfo.info_data).toMatchObject({ id: spec.vni, port: 4789, local: '192.0.2.1', link: underlay, learning: false, proxy: true });
    expect(d.mtu).toBe(1450);
    expect(d.master).toBe(bridge);
    expect(d.flags).toContain('UP');
  });

  it('takes an IPv6 local address and no underlay', async () => {
    const v6 = { ...spec, local: '2001:db8::1', underlay: undefined };
    await ensureVxlan(v6);
    const d = linkDetails(spec.name);
    expect(d.linkinfo.info_data).toMatchObject({ id: spec.vni, local6: '2001:db8::1', learning: false, proxy: true });
    expect(d.linkinfo.info_data.link).toBeUndefined();
    const onRebuild = jest.fn();
    await ensureVxlan(v6, { onRebuild });
    expect(onRebuild).not.toHaveBeenCalled();
  });

  it('turns off learning and turns on neigh_suppress on its bridge port', async () => {
    await ensureVxlan(spec);
    const port = linkDetails(spec.name).linkinfo.info_slave_data;
    expect(port.learning).toBe(false);
    expect(port.neigh_suppress).toBe(true);
  });

  it('is idempotent: a second ensure keeps the same device', async () => {
    await ensureVxlan(spec);
    const index = linkDetails(spec.name).ifindex;
    const onRebuild = jest.fn();
    await ensureVxlan(spec, { onRebuild });
    expect(onRebuild).not.toHaveBeenCalled();
    expect(linkDetails(spec.name).ifindex).toBe(index);
  });

  it('repairs live drift without rebuilding: MTU, bridge, port flags, down', async () => {
    await ensureVxlan(spec);
    const index = linkDetails(spec.name).ifindex;
    sh('ip', ['link', 'set', spec.name, 'nomaster']);
    sh('ip', ['link', 'set', spec.name, 'mtu', '1400', 'down']);
    await ensureVxlan(spec);
    const d = linkDetails(spec.name);
    expect(d.ifindex).toBe(index);
    expect(d.mtu).toBe(1450);
    expect(d.master).toBe(bridge);
    expect(d.flags).toContain('UP');
    expect(d.linkinfo.info_slave_data.learning).toBe(false);
    expect(d.linkinfo.info_slave_data.neigh_suppress).toBe(true);
  });

  it('rebuilds on a mismatch that cannot change live (proxy off, other VNI)', async () => {
    sh('ip', ['link', 'add', spec.name, 'type', 'vxlan', 'id', String(spec.vni + 1), 'local', '192.0.2.1', 'dstport', '4789', 'dev', underlay, 'noproxy', 'nolearning']);
    const reasons: string[] = [];
    await ensureVxlan(spec, { onRebuild: (r) => reasons.push(r) });
    expect(reasons).toEqual([`vni: ${spec.vni} vs ${spec.vni + 1}, proxy: true vs false`]);
    const d = linkDetails(spec.name);
    expect(d.linkinfo.info_data).toMatchObject({ id: spec.vni, proxy: true, learning: false });
    expect(d.master).toBe(bridge);
  });

  it('replaces a link of the same name that is not a VXLAN device', async () => {
    sh('ip', ['link', 'add', spec.name, 'type', 'bridge']);
    const onRebuild = jest.fn();
    await ensureVxlan(spec, { onRebuild });
    expect(onRebuild).toHaveBeenCalledWith('kind: vxlan vs bridge');
    expect(linkDetails(spec.name).linkinfo.info_kind).toBe('vxlan');
  });

  it('names the clash when another device has the same VNI and port', async () => {
    const other = `vxw-${s}`;
    sh('ip', ['link', 'add', other, 'type', 'vxlan', 'id', String(spec.vni), 'local', '192.0.2.1', 'dstport', '4789', 'dev', underlay]);
    try {
      const err = await ensureVxlan(spec).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VxnetError);
      expect((err as VxnetError).code).toBe('VXNET_ERR_VNI_TAKEN');
      expect((err as VxnetError).message).toContain(`VNI ${spec.vni} on UDP port 4789`);
    } finally {
      deleteLinks(other);
    }
  });

  it('removeVxlan deletes it and resolves when already gone', async () => {
    await ensureVxlan(spec);
    await removeVxlan(spec.name);
    expect(linkDetails(spec.name)).toBeNull();
    await expect(removeVxlan(spec.name)).resolves.toBeUndefined();
  });

  describe('src/dataplane/fdb', () => {
    function fdbOf(dev: string): any[] {
      return bridgeJson(['fdb', 'show', 'dev', dev]);
    }

    it('keeps one all-zero entry per remote VTEP (append), idempotently', async () => {
      await ensureVxlan(spec);
      await ensureFdb({ dev: spec.name, mac: ZERO_MAC, dst: '192.0.2.2' });
      await ensureFdb({ dev: spec.name, mac: ZERO_MAC, dst: '192.0.2.3' });
      await ensureFdb({ dev: spec.name, mac: ZERO_MAC, dst: '192.0.2.2' });
      const zeros = fdbOf(spec.name).filter((e) => e.mac === ZERO_MAC);
      expect(zeros.map((e) => e.dst).sort()).toEqual(['192.0.2.2', '192.0.2.3']);
      expect(zeros.every((e) => e.state === 'permanent' && e.flags.includes('self'))).toBe(true);
      await removeFdb({ dev: spec.name, mac: ZERO_MAC, dst: '192.0.2.2' });
      await removeFdb({ dev: spec.name, mac: ZERO_MAC, dst: '192.0.2.2' });
      expect(fdbOf(spec.name).filter((e) => e.mac === ZERO_MAC).map((e) => e.dst)).toEqual(['192.0.2.3']);
    });

    it('writes static MAC -> VTEP entries and moves a MAC to its new VTEP in place', async () => {
      await ensureVxlan(spec);
      await ensureFdb({ dev: spec.name, mac: '02:42:0a:4e:00:07', dst: '192.0.2.2' });
      await ensureFdb({ dev: spec.name, mac: '02:42:0a:4e:00:07', dst: '192.0.2.3' });
      const entries = fdbOf(spec.name).filter((e) => e.mac === '02:42:0a:4e:00:07');
      expect(entries).toEqual([expect.objectContaining({ dst: '192.0.2.3', state: 'permanent', flags: ['self'] })]);
      const listed = await listFdb(spec.name);
      expect(listed).toContainEqual({ mac: '02:42:0a:4e:00:07', dst: '192.0.2.3', master: false, self: true, state: 'permanent' });
      await removeFdb({ dev: spec.name, mac: '02:42:0a:4e:00:07', dst: '192.0.2.3' });
      expect(fdbOf(spec.name).filter((e) => e.mac === '02:42:0a:4e:00:07')).toEqual([]);
      await expect(removeFdb({ dev: spec.name, mac: '02:42:0a:4e:00:07', dst: '192.0.2.3' })).resolves.toBeUndefined();
    });

    it('pins a container MAC on its bridge port as a static (not local) master entry', async () => {
      const veth = { hostName: `vxe-${s}`, peerName: `vxc-${s}`, mtu: 1450, peerMac: '02:42:0a:4e:00:05', bridge };
      await ensureVeth(veth);
      try {
        await ensureFdb({ dev: veth.hostName, mac: veth.peerMac, master: true });
        await ensureFdb({ dev: veth.hostName, mac: veth.peerMac, master: true });
        const entries = fdbOf(veth.hostName).filter((e) => e.mac === veth.peerMac);
        expect(entries).toEqual([expect.objectContaining({ master: bridge, state: 'static' })]);
        expect(await listFdb(veth.hostName)).toContainEqual({ mac: veth.peerMac, dst: null, master: true, self: false, state: 'static' });
        await removeFdb({ dev: veth.hostName, mac: veth.peerMac, master: true });
        await removeFdb({ dev: veth.hostName, mac: veth.peerMac, master: true });
        expect(fdbOf(veth.hostName).filter((e) => e.mac === veth.peerMac)).toEqual([]);
      } finally {
        deleteLinks(veth.hostName);
      }
    });

    it('removeFdb resolves when the device is gone', async () => {
      await expect(removeFdb({ dev: `vxv-${suffix()}`, mac: ZERO_MAC, dst: '192.0.2.2' })).resolves.toBeUndefined();
    });
  });

  describe('src/dataplane/neigh', () => {
    function neighOf(dev: string): any[] {
      return ipJson(['neigh', 'show', 'dev', dev]);
    }

    it('writes permanent IPv4 and IPv6 entries and replaces the MAC of a re-used IP', async () => {
      await ensureVxlan(spec);
      await ensureNeigh({ dev: spec.name, ip: '10.78.0.5', mac: '02:42:0a:4e:00:05' });
      await ensureNeigh({ dev: spec.name, ip: '10.78.0.5', mac: '02:42:0a:4e:00:05' });
      await ensureNeigh({ dev: spec.name, ip: 'fd78::5', mac: '02:42:0a:4e:00:06' });
      await ensureNeigh({ dev: spec.name, ip: '10.78.0.6', mac: '02:42:0a:4e:00:16' });
      await ensureNeigh({ dev: spec.name, ip: '10.78.0.6', mac: '02:42:0a:4e:00:26' });
      const entries = neighOf(spec.name);
      expect(entries).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ dst: '10.78.0.5', lladdr: '02:42:0a:4e:00:05', state: ['PERMANENT'] }),
          expect.objectContaining({ dst: 'fd78::5', lladdr: '02:42:0a:4e:00:06', state: ['PERMANENT'] }),
          expect.objectContaining({ dst: '10.78.0.6', lladdr: '02:42:0a:4e:00:26', state: ['PERMANENT'] }),
        ]),
      );
      expect(entries).toHaveLength(3);
      const listed = await listNeigh(spec.name);
      expect(listed).toHaveLength(3);
      expect(listed).toContainEqual({ ip: 'fd78::5', mac: '02:42:0a:4e:00:06', permanent: true });
    });

    it('removeNeigh deletes the entry and resolves when it or the device is gone', async () => {
      await ensureVxlan(spec);
      await ensureNeigh({ dev: spec.name, ip: '10.78.0.5', mac: '02:42:0a:4e:00:05' });
      await removeNeigh({ dev: spec.name, ip: '10.78.0.5' });
      expect(neighOf(spec.name)).toEqual([]);
      await expect(removeNeigh({ dev: spec.name, ip: '10.78.0.5' })).resolves.toBeUndefined();
      await expect(removeNeigh({ dev: `vxv-${suffix()}`, ip: '10.78.0.5' })).resolves.toBeUndefined();
    });
  });
});

// Bridge and veth against the real kernel of the test's private netns, read back with `ip -j`.
import { LinkNotFoundError, VxnetError } from '../../src/errors';
import {
  closeReaper,
  closeRtnl,
  drainReleasedVeths,
  onReapFailure,
  reaperBacklog,
  releaseVeth,
  ensureBridge,
  ensureVeth,
  getLinkByName,
  listLinks,
  removeBridge,
  removeVeth,
  setMtu,
  setUp,
} from '../../src/dataplane';
import type { BridgeSpec, VethSpec } from '../../src/dataplane';
import { reaperThreadRunning, setReaperIdleStop } from '../../src/dataplane/kernel-thread';
import { deleteLinks, globalAddrs, linkDetails, sh, suffix } from '../helpers/netns';
import { eventually } from '../helpers/eventually';

afterAll(async () => {
  await closeReaper();
  closeRtnl();
});

describe('src/dataplane/rtnl', () => {
  let made: string[] = [];
  afterEach(() => {
    deleteLinks(...made);
    made = [];
  });

  it('getLinkByName resolves null for a missing link', async () => {
    await expect(getLinkByName(`vxn-${suffix()}`)).resolves.toBeNull();
  });

  it('getLinkByName and listLinks describe a link', async () => {
    const name = `vxl-${suffix()}`;
    made.push(name);
    sh('ip', ['link', 'add', name, 'mtu', '1400', 'type', 'bridge']);
    const link = await getLinkByName(name);
    expect(link).toMatchObject({ name, kind: 'bridge', mtu: 1400, up: false, master: null });
    expect(link?.mac).toBe(linkDetails(name).address);
    const listed = await listLinks(name.slice(0, 6));
    expect(listed.map((l) => l.name)).toContain(name);
    expect(listed.every((l) => l.name.startsWith(name.slice(0, 6)))).toBe(true);
  });

  it('setMtu and setUp change the link', async () => {
    const name = `vxl-${suffix()}`;
    made.push(name);
    sh('ip', ['link', 'add', name, 'type', 'bridge']);
    const link = await getLinkByName(name);
    await setMtu(link!, 1300);
    await setUp(link!);
    const d = linkDetails(name);
    expect(d.mtu).toBe(1300);
    expect(d.flags).toContain('UP');
  });
});

describe('src/dataplane/bridge', () => {
  let name: string;
  let spec: BridgeSpec;
  beforeEach(() => {
    name = `vxb-${suffix()}`;
    spec = { name, mtu: 1450, mac: '02:42:0a:01:00:01', addresses: ['10.77.0.1/24'] };
  });
  afterEach(() => deleteLinks(name));

  it('creates the bridge with MTU, pinned MAC, address, no STP, default ageing, up', async () => {
    await ensureBridge(spec);
    const d = linkDetails(name);
    expect(d.linkinfo.info_kind).toBe('bridge');
    expect(d.mtu).toBe(1450);
    expect(d.address).toBe('02:42:0a:01:00:01');
    expect(d.flags).toContain('UP');
    expect(d.linkinfo.info_data.stp_state).toBe(0);
    expect(d.linkinfo.info_data.ageing_time).toBe(30000);
    expect(globalAddrs(name)).toEqual(['10.77.0.1/24']);
    const [v4] = JSON.parse(sh('ip', ['-j', '-4', 'addr', 'show', 'dev', name]));
    expect(v4.addr_info[0].broadcast).toBe('10.77.0.255');
  });

  it('is idempotent: a second ensure changes nothing', async () => {
    await ensureBridge(spec);
    const before = linkDetails(name);
    await ensureBridge(spec);
    const after = linkDetails(name);
    expect(after.ifindex).toBe(before.ifindex);
    expect(globalAddrs(name)).toEqual(['10.77.0.1/24']);
  });

  it('repairs drift: MTU, MAC, STP, extra and missing addresses, down', async () => {
    await ensureBridge(spec);
    sh('ip', ['link', 'set', name, 'down', 'mtu', '1300', 'address', '02:00:00:00:00:99']);
    sh('ip', ['link', 'set', name, 'type', 'bridge', 'stp_state', '1']);
    sh('ip', ['addr', 'del', '10.77.0.1/24', 'dev', name]);
    sh('ip', ['addr', 'add', '10.78.0.1/16', 'dev', name]);
    sh('ip', ['addr', 'add', 'fd77::9/64', 'dev', name]);
    await ensureBridge(spec);
    const d = linkDetails(name);
    expect(d.mtu).toBe(1450);
    expect(d.address).toBe('02:42:0a:01:00:01');
    expect(d.flags).toContain('UP');
    expect(d.linkinfo.info_data.stp_state).toBe(0);
    expect(globalAddrs(name)).toEqual(['10.77.0.1/24']);
  });

  it('manages IPv6 addresses next to IPv4 ones, without DAD', async () => {
    await ensureBridge({ ...spec, addresses: ['10.77.0.1/24', 'fd77::1/64'] });
    expect(globalAddrs(name)).toEqual(['10.77.0.1/24', 'fd77::1/64']);
    const [link] = JSON.parse(sh('ip', ['-j', '-6', 'addr', 'show', 'dev', name]));
    const v6 = link.addr_info.find((a: any) => a.local === 'fd77::1');
    expect(v6.nodad).toBe(true);
    await ensureBridge({ ...spec, addresses: ['fd77::1/64'] });
    expect(globalAddrs(name)).toEqual(['fd77::1/64']);
  });

  it('replaces a link of the same name that is not a bridge', async () => {
    const peer = `vxp-${suffix()}`;
    sh('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', peer]);
    await ensureBridge(spec);
    expect(linkDetails(name).linkinfo.info_kind).toBe('bridge');
    expect(linkDetails(peer)).toBeNull();
  });

  it('removeBridge deletes it and resolves when it is already gone', async () => {
    await ensureBridge(spec);
    await removeBridge(name);
    expect(linkDetails(name)).toBeNull();
    await expect(removeBridge(name)).resolves.toBeUndefined();
  });

  it('rejects an invalid MTU with a kernel error naming the action and the bridge', async () => {
    const err = await ensureBridge({ ...spec, mtu: 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VxnetError);
    expect((err as VxnetError).code).toBe('VXNET_ERR_KERNEL');
    expect((err as VxnetError).message).toMatch(new RegExp(`^could not create bridge ${name}: EINVAL`));
  });
});

describe('src/dataplane/veth', () => {
  let bridge: string;
  let spec: VethSpec;
  beforeEach(async () => {
    const s = suffix(8);
    bridge = `vxb-${s}`;
    spec = { hostName: `vxe-${s}`, peerName: `vxc-${s}`, mtu: 1450, peerMac: '02:42:0a:4d:00:05', bridge };
    await ensureBridge({ name: bridge, mtu: 1450, mac: '02:42:0a:4d:00:01', addresses: ['10.77.0.1/24'] });
  });
  afterEach(() => deleteLinks(spec.hostName, spec.peerName, bridge));

  it('creates the pair: both ends at the MTU, peer MAC, host end on the bridge and up, peer down', async () => {
    await ensureVeth(spec);
    const host = linkDetails(spec.hostName);
    const peer = linkDetails(spec.peerName);
    expect(host.linkinfo.info_kind).toBe('veth');
    expect(host.mtu).toBe(1450);
    expect(peer.mtu).toBe(1450);
    expect(host.master).toBe(bridge);
    expect(host.flags).toContain('UP');
    expect(peer.flags).not.toContain('UP');
    expect(peer.address).toBe('02:42:0a:4d:00:05');
  });

  it('is idempotent and repairs MTU, master and peer MAC', async () => {
    await ensureVeth(spec);
    const index = linkDetails(spec.hostName).ifindex;
    await ensureVeth(spec);
    expect(linkDetails(spec.hostName).ifindex).toBe(index);
    sh('ip', ['link', 'set', spec.hostName, 'nomaster']);
    sh('ip', ['link', 'set', spec.hostName, 'mtu', '1300', 'down']);
    sh('ip', ['link', 'set', spec.peerName, 'mtu', '1200', 'address', '02:00:00:00:00:07']);
    await ensureVeth(spec);
    const host = linkDetails(spec.hostName);
    const peer = linkDetails(spec.peerName);
    expect(host.ifindex).toBe(index);
    expect(host.master).toBe(bridge);
    expect(host.mtu).toBe(1450);
    expect(host.flags).toContain('UP');
    expect(peer.mtu).toBe(1450);
    expect(peer.address).toBe('02:42:0a:4d:00:05');
  });

  it('recreates the pair when a stale link holds the peer name', async () => {
    const other = `vxo-${suffix()}`;
    sh('ip', ['link', 'add', other, 'type', 'veth', 'peer', 'name', spec.peerName]);
    await ensureVeth(spec);
    expect(linkDetails(spec.hostName).master).toBe(bridge);
    expect(linkDetails(spec.peerName).address).toBe('02:42:0a:4d:00:05');
    expect(linkDetails(other)).toBeNull();
  });

  it('removeVeth deletes both ends and resolves when already gone', async () => {
    await ensureVeth(spec);
    await removeVeth(spec.hostName);
    expect(linkDetails(spec.hostName)).toBeNull();
    expect(linkDetails(spec.peerName)).toBeNull();
    await expect(removeVeth(spec.hostName)).resolves.toBeUndefined();
  });

  it('releaseVeth answers before the kernel is done; the reaper thread deletes the pair', async () => {
    await ensureVeth(spec);
    // Measures the main thread's event loop while the pair is released: the slow RTM_DELLINK
    // runs in the reaper's thread, so timers here keep firing.
    let ticks = 0;
    const tick = setInterval(() => ticks++, 1);
    await releaseVeth(spec.hostName);
    expect(reaperBacklog()).toBe(1);
    await drainReleasedVeths();
    clearInterval(tick);
    expect(reaperBacklog()).toBe(0);
    expect(ticks).toBeGreaterThan(0);
    expect(linkDetails(spec.hostName)).toBeNull();
    expect(linkDetails(spec.peerName)).toBeNull();
    // A pair already gone is not an error (a reconcile may have removed it first).
    const failures: string[] = [];
    onReapFailure((name) => failures.push(name));
    await releaseVeth(spec.hostName);
    await drainReleasedVeths();
    expect(failures).toEqual([]);
  });

  it('the reaper thread ends when idle and the next release starts it again', async () => {
    setReaperIdleStop(50);
    try {
      await ensureVeth(spec);
      await releaseVeth(spec.hostName);
      await drainReleasedVeths();
      expect(linkDetails(spec.hostName)).toBeNull();
      await eventually('idle thread ended', () => !reaperThreadRunning(), 5000);
      const failures: string[] = [];
      onReapFailure((name) => failures.push(name));
      await ensureVeth(spec);
      await releaseVeth(spec.hostName);
      expect(reaperThreadRunning()).toBe(true);
      await drainReleasedVeths();
      expect(linkDetails(spec.hostName)).toBeNull();
      expect(linkDetails(spec.peerName)).toBeNull();
      expect(failures).toEqual([]);
    } finally {
      setReaperIdleStop(60_000);
    }
  });

  it('fails with LinkNotFoundError when the bridge does not exist', async () => {
    const err = await ensureVeth({ ...spec, bridge: `vxb-${suffix()}` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LinkNotFoundError);
    expect(linkDetails(spec.hostName)).toBeNull();
  });
});

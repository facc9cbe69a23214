// The anti-spoofing table (src/dataplane/antispoof.ts) in the test's private netns: namespace
// "containers" on a bridge, their entries built by network/antispoof.ts as Join builds them.
// An honest container talks (IPv4, ARP, IPv6 link-local and global, ND); one that takes another's
// IP or MAC reaches nothing and poisons no neighbour entry; a port without entries drops everything;
// the table is idempotent and its removal leaves nothing.
import { closeRtnl, ensureBridge, ensureVeth, removeBridge } from '../../src/dataplane';
import { addSpoofElements, antispoofDropped, ensureAntispoof, listSpoofElements, removeAntispoof, removeSpoofElements } from '../../src/dataplane/antispoof';
import { portElements } from '../../src/network/antispoof';
import { vethNames } from '../../src/network/names';
import { addNetns, deleteNetns, inNetns, sh, suffix, trySh, tryInNetns } from '../helpers/netns';

interface Ctr {
  ns: string;
  endpointId: string;
  ip: string;
  ip6: string;
  mac: string;
}

// Each negative check is a ping that waits out its 1 s deadline: a test holds several.
jest.setTimeout(30_000);

const BRIDGE = `vxb-${suffix(4)}`;

function neighMac(ns: string, ip: string): string {
  return /lladdr (\S+)/.exec(inNetns(ns, 'ip', ['neigh', 'show', ip]))?.[1] ?? '';
}

function pings(from: Ctr, ip: string): boolean {
  return tryInNetns(from.ns, 'busybox', ['ping', '-c', '1', '-W', '1', ip]);
}

/** A positive check right after a change: the first packet may wait on ARP, so up to 3 tries. */
function pingsSoon(from: Ctr, ip: string): boolean {
  for (let i = 0; i < 3; i++) if (pings(from, ip)) return true;
  return false;
}

describe('src/dataplane/antispoof.ts (kernel)', () => {
  const ctrs: Ctr[] = [];

  async function container(i: number): Promise<Ctr> {
    const endpointId = `${suffix(8)}${'0'.repeat(56)}`;
    const c: Ctr = { ns: addNetns('vxt-as'), endpointId, ip: `10.66.0.${i + 10}`, ip6: `fd66::${i + 10}`, mac: `02:42:0a:42:00:${(i + 10).toString(16).padStart(2, '0')}` };
    const names = vethNames(endpointId);
    // As Join does: entries first, then the veth.
    await addSpoofElements(portElements(endpointId, { mac: c.mac, ipv4: `${c.ip}/24`, ipv6: `${c.ip6}/64` }));
    await ensureVeth({ hostName: names.host, peerName: names.peer, mtu: 1500, peerMac: c.mac, bridge: BRIDGE });
    sh('ip', ['link', 'set', names.peer, 'netns', c.ns]);
    inNetns(c.ns, 'ip', ['link', 'set', 'lo', 'up']);
    inNetns(c.ns, 'ip', ['addr', 'add', `${c.ip}/24`, 'dev', names.peer]);
    inNetns(c.ns, 'ip', ['addr', 'add', `${c.ip6}/64`, 'dev', names.peer, 'nodad']);
    inNetns(c.ns, 'ip', ['link', 'set', names.peer, 'up']);
    ctrs.push(c);
    return c;
  }

  beforeAll(async () => {
    // bridge-nf is not needed for the bridge family's own hook.
    await ensureBridge({ name: BRIDGE, mtu: 1500, mac: '02:76:78:00:42:00', addresses: [] });
    expect(await ensureAntispoof({ dryRun: false })).toEqual(['table bridge vxnet-antispoof: created']);
  });

  afterAll(async () => {
    for (const c of ctrs) deleteNetns(c.ns);
    await removeBridge(BRIDGE).catch(() => undefined);
    await removeAntispoof();
    closeRtnl();
  });

  it('is idempotent: a second ensure changes nothing, a changed chain is rewritten', async () => {
    expect(await ensureAntispoof({ dryRun: false })).toEqual([]);
    sh('nft', ['flush', 'chain', 'bridge', 'vxnet-antispoof', 'port']);
    expect(await ensureAntispoof({ dryRun: true })).toEqual(['table bridge vxnet-antispoof: rewrote chain port']);
    expect(await ensureAntispoof({ dryRun: false })).toEqual(['table bridge vxnet-antispoof: rewrote chain port']);
    expect(await ensureAntispoof({ dryRun: false })).toEqual([]);
  });

  it('honest containers reach each other over IPv4 and IPv6 (ARP, ND, link-local)', async () => {
    const [a, b] = [await container(0), await container(1)];
    expect(pings(a, b.ip)).toBe(true);
    expect(tryInNetns(a.ns, 'busybox', ['ping6', '-c', '1', '-W', '2', b.ip6])).toBe(true);
    expect(neighMac(a.ns, b.ip)).toBe(b.mac);
    expect(neighMac(a.ns, b.ip6)).toBe(b.mac);
    const elements = await listSpoofElements();
    expect(elements.filter((e) => e.port === vethNames(a.endpointId).host)).toHaveLength(6);
  });

  it("a container that takes another's IP, then its MAC, reaches nothing and poisons no cache; drops are counted", async () => {
    const [a, b, x] = [ctrs[0], ctrs[1], await container(2)];
    expect(pings(x, a.ip)).toBe(true);
    const before = (await antispoofDropped()) ?? 0;
    const dev = vethNames(x.endpointId).peer;
    pings(a, b.ip); // a's entry for b is fresh; wait out the ARP locktime
    await new Promise((r) => setTimeout(r, 1200));
    inNetns(x.ns, 'ip', ['addr', 'flush', 'dev', dev]);
    inNetns(x.ns, 'ip', ['addr', 'add', `${b.ip}/24`, 'dev', dev]);
    trySh('ip', ['netns', 'exec', x.ns, 'busybox', 'arping', '-U', '-c', '2', '-I', dev, '-s', b.ip, b.ip]);
    expect(pings(x, a.ip)).toBe(false);
    expect(neighMac(a.ns, b.ip)).toBe(b.mac);
    inNetns(x.ns, 'ip', ['link', 'set', dev, 'address', b.mac]);
    expect(pings(x, a.ip)).toBe(false);
    expect(pings(a, b.ip)).toBe(true);
    expect(neighMac(a.ns, b.ip)).toBe(b.mac);
    expect((await antispoofDropped()) ?? 0).toBeGreaterThan(before);
  });

  it('a port without entries drops everything (fail closed); removal is idempotent', async () => {
    const [a, b] = ctrs;
    const els = portElements(b.endpointId, { mac: b.mac, ipv4: `${b.ip}/24`, ipv6: `${b.ip6}/64` });
    await removeSpoofElements(els);
    await removeSpoofElements(els);
    expect((await listSpoofElements()).some((e) => e.port === vethNames(b.endpointId).host)).toBe(false);
    inNetns(b.ns, 'ip', ['neigh', 'flush', 'all']);
    expect(pings(b, a.ip)).toBe(false);
    await addSpoofElements(els);
    expect(pingsSoon(b, a.ip)).toBe(true);
  });

  it('Join puts a removed table back before adding its entries', async () => {
    const [a, b] = ctrs;
    const els = portElements(b.endpointId, { mac: b.mac, ipv4: `${b.ip}/24`, ipv6: `${b.ip6}/64` });
    const aEls = portElements(a.endpointId, { mac: a.mac, ipv4: `${a.ip}/24`, ipv6: `${a.ip6}/64` });
    await removeAntispoof();
    await addSpoofElements(els);
    await addSpoofElements(aEls);
    const listed = (await listSpoofElements()).map((e) => e.port);
    expect(listed).toContain(vethNames(b.endpointId).host);
    expect(pingsSoon(b, a.ip)).toBe(true);
  });

  it('removing the table leaves nothing, twice', async () => {
    await removeAntispoof();
    await removeAntispoof();
    expect(sh('nft', ['list', 'tables'])).not.toContain('vxnet-antispoof');
    expect(await listSpoofElements()).toEqual([]);
    expect(await antispoofDropped()).toBeNull();
  });
});

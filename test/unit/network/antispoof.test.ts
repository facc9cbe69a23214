import { elementDiff, expectedElements, linkLocalOf, portElements, syncAntispoof, SpoofTable } from '../../../src/network/antispoof';
import type { SpoofElement } from '../../../src/dataplane/antispoof';

const EP = '8ef52212cc'.padEnd(64, 'a');
const PORT = 'vxe-8ef52212cc';

describe('src/network/antispoof.ts', () => {
  describe('linkLocalOf', () => {
    it.each([
      // The kernel's own choice for these MACs (addr_gen_mode eui64): `ip -6 addr` on a veth with that MAC.
      ['02:42:0a:00:00:02', 'fe80::42:aff:fe00:2'],
      ['00:11:22:33:44:55', 'fe80::211:22ff:fe33:4455'],
      ['AA:BB:CC:DD:EE:FF', 'fe80::a8bb:ccff:fedd:eeff'],
    ])('%s → %s', (mac, ll) => {
      expect(linkLocalOf(mac)).toBe(ll);
    });
  });

  describe('portElements', () => {
    it('IPv4 endpoint: its MAC with its address for IP and ARP, and the link-local address for IPv6 and ND', () => {
      expect(portElements(EP, { mac: '02:42:0A:05:00:07', ipv4: '10.5.0.7/24', ipv6: null })).toEqual([
        { set: 'v4', port: PORT, mac: '02:42:0a:05:00:07', ip: '10.5.0.7' },
        { set: 'arp4', port: PORT, mac: '02:42:0a:05:00:07', ip: '10.5.0.7' },
        { set: 'v6', port: PORT, mac: '02:42:0a:05:00:07', ip: 'fe80::42:aff:fe05:7' },
        { set: 'nd6', port: PORT, mac: '02:42:0a:05:00:07', ip: 'fe80::42:aff:fe05:7' },
      ]);
    });

    it('dual-stack endpoint: the IPv6 address in canonical form (as nft prints it back) for IPv6 and ND', () => {
      const els = portElements(EP, { mac: '02:42:0a:05:00:07', ipv4: '10.5.0.7/24', ipv6: 'fd00:0:0::0007/64' });
      expect(els.filter((e) => e.set === 'v6').map((e) => e.ip)).toEqual(['fe80::42:aff:fe05:7', 'fd00::7']);
      expect(els.filter((e) => e.set === 'nd6').map((e) => e.ip)).toEqual(['fe80::42:aff:fe05:7', 'fd00::7']);
      expect(els.every((e) => e.port === PORT && e.mac === '02:42:0a:05:00:07')).toBe(true);
    });

    it('IPv6-only endpoint: no IPv4 or ARP entries', () => {
      const els = portElements(EP, { mac: '02:43:01:02:03:04', ipv4: null, ipv6: 'fd00::9/64' });
      expect(els.map((e) => e.set).sort()).toEqual(['nd6', 'nd6', 'v6', 'v6']);
    });
  });

  it('expectedElements covers every endpoint of the host', () => {
    const rec = (ip: string) => ({ networkId: 'n', host: 'h', vtep: null, mac: `02:42:0a:00:00:0${ip.slice(-1)}`, ipv4: `${ip}/24`, ipv6: null });
    const els = expectedElements({ endpoints: [{ lnet: 'a', endpointId: 'a'.repeat(64), rec: rec('10.0.0.2') }, { lnet: 'b', endpointId: 'b'.repeat(64), rec: rec('10.0.0.3') }] });
    expect(new Set(els.map((e) => e.port))).toEqual(new Set(['vxe-aaaaaaaaaa', 'vxe-bbbbbbbbbb']));
    expect(els).toHaveLength(8);
  });

  it('elementDiff: adds what is missing, removes what nothing wants, leaves the rest', () => {
    const a: SpoofElement = { set: 'v4', port: 'vxe-a', mac: '02:42:0a:00:00:02', ip: '10.0.0.2' };
    const b: SpoofElement = { ...a, port: 'vxe-b', ip: '10.0.0.3' };
    const c: SpoofElement = { ...a, set: 'arp4' };
    expect(elementDiff([a, c], [a, b])).toEqual({ add: [c], remove: [b] });
    expect(elementDiff([a], [a])).toEqual({ add: [], remove: [] });
  });

  describe('syncAntispoof', () => {
    function fakeTable(initial: SpoofElement[]): SpoofTable & { els: SpoofElement[]; ensured: boolean[] } {
      const t = {
        els: [...initial],
        ensured: [] as boolean[],
        async ensureAntispoof(opts: { dryRun: boolean }) {
          t.ensured.push(opts.dryRun);
          return [];
        },
        // A set: adding what is there changes nothing, as in the kernel.
        async addSpoofElements(e: SpoofElement[]) {
          for (const x of e) if (!t.els.some((y) => JSON.stringify(y) === JSON.stringify(x))) t.els.push(x);
        },
        async removeSpoofElements(e: SpoofElement[]) {
          const gone = new Set(e.map((x) => JSON.stringify(x)));
          t.els = t.els.filter((x) => !gone.has(JSON.stringify(x)));
        },
        async listSpoofElements() {
          return [...t.els];
        },
      };
      return t;
    }
    const live = { lnet: 'n', endpointId: EP, rec: { networkId: 'n', host: 'h', vtep: null, mac: '02:42:0a:00:00:02', ipv4: '10.0.0.2/24', ipv6: null } };
    const stale: SpoofElement = { set: 'v4', port: 'vxe-deadbeef00', mac: '02:42:0a:00:00:09', ip: '10.0.0.9' };

    it('brings the kernel to the store: entries of gone endpoints out, missing ones in', async () => {
      const t = fakeTable([stale]);
      const changes = await syncAntispoof(t, async () => [live], false);
      expect(t.els).toEqual(portElements(EP, live.rec));
      expect(changes).toContain('- v4 vxe-deadbeef00 02:42:0a:00:00:09 10.0.0.9');
      expect(changes).toContain(`+ v4 ${PORT} 02:42:0a:00:00:02 10.0.0.2`);
      expect(await syncAntispoof(t, async () => [live], false)).toEqual([]);
    });

    it('a dry run says the same and changes nothing', async () => {
      const t = fakeTable([stale]);
      const changes = await syncAntispoof(t, async () => [live], true);
      expect(changes).toHaveLength(5);
      expect(t.els).toEqual([stale]);
      expect(t.ensured).toEqual([true]);
    });

    it('reads the store after listing the kernel, so a Join meanwhile keeps its entries', async () => {
      const t = fakeTable([]);
      // The Join lands between the listing and the store read: its record is in the read.
      const joining = portElements(EP, live.rec);
      const read = async () => {
        await t.addSpoofElements(joining);
        return [live];
      };
      await syncAntispoof(t, read, false);
      expect(t.els.filter((e) => e.port === PORT)).toHaveLength(joining.length);
    });
  });
});

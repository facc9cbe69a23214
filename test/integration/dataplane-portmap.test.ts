// vxnet's nat chains for published ports and its host port reservations, in the test's private
// netns, read back with `iptables -t nat -S` and by binding the ports again.
import { VxnetError } from '../../src/errors';
import { addPortRules, ensurePortChains, listPortRuleOwners, removePortRules, removePortRulesOf, removePortmap, reservePort } from '../../src/dataplane';
import type { PortRules } from '../../src/dataplane';
import { sh } from '../helpers/netns';

const EP = 'a1'.repeat(32);
const EP2 = 'b2'.repeat(32);

function nat(): string[] {
  return sh('iptables', ['-w', '-t', 'nat', '-S']).split('\n').filter((l) => l.startsWith('-'));
}

const rules = (endpointId: string, hostPort: number): PortRules => ({
  endpointId,
  containerIp: '10.77.0.2',
  bridge: 'vxb-300',
  subnet: '10.77.0.0/24',
  bindings: [
    { proto: 'tcp', hostIp: '0.0.0.0', hostPort, containerPort: 80 },
    { proto: 'udp', hostIp: '127.0.0.1', hostPort, containerPort: 53 },
  ],
});

afterAll(async () => {
  await removePortmap();
});

describe('src/dataplane/portmap', () => {
  it('creates its chains and jumps once, however often it is asked', async () => {
    await ensurePortChains();
    const once = nat();
    await ensurePortChains();
    expect(nat()).toEqual(once);
    expect(once).toEqual(expect.arrayContaining([
      '-N VXNET-DNAT',
      '-N VXNET-PORTS-POSTROUTING',
      '-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment vxnet -j VXNET-DNAT',
      '-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment vxnet -j VXNET-DNAT',
      '-A POSTROUTING -m comment --comment vxnet -j VXNET-PORTS-POSTROUTING',
      '-A VXNET-PORTS-POSTROUTING -s 127.0.0.0/8 -o vxb-+ -m comment --comment vxnet-ports -j MASQUERADE',
    ]));
  });

  it('adds one DNAT per binding and one hairpin rule per endpoint, tagged, and removes exactly those', async () => {
    await ensurePortChains();
    await addPortRules(rules(EP, 8080));
    await addPortRules(rules(EP2, 8081));
    const mine = nat().filter((l) => l.includes(`vxnet-ports:${EP}`));
    expect(mine).toEqual([
      `-A VXNET-DNAT -p tcp -m tcp --dport 8080 -m comment --comment "vxnet-ports:${EP}" -j DNAT --to-destination 10.77.0.2:80`,
      `-A VXNET-DNAT -d 127.0.0.1/32 -p udp -m udp --dport 8080 -m comment --comment "vxnet-ports:${EP}" -j DNAT --to-destination 10.77.0.2:53`,
      `-A VXNET-PORTS-POSTROUTING -s 10.77.0.0/24 -d 10.77.0.2/32 -o vxb-300 -m conntrack --ctstate DNAT -m comment --comment "vxnet-ports:${EP}" -j MASQUERADE`,
    ]);
    expect(await listPortRuleOwners()).toEqual(new Map([[EP, 3], [EP2, 3]]));
    await removePortRules(rules(EP, 8080));
    expect(await listPortRuleOwners()).toEqual(new Map([[EP2, 3]]));
    // Already gone: the by-record removal fails and falls back to the tag, which finds nothing.
    await removePortRules(rules(EP, 8080));
    // A rule deleted by hand: the rest of the endpoint's rules still go.
    sh('iptables', ['-w', '-t', 'nat', '-D', 'VXNET-DNAT', '-p', 'tcp', '-m', 'tcp', '--dport', '8081', '-m', 'comment', '--comment', `vxnet-ports:${EP2}`, '-j', 'DNAT', '--to-destination', '10.77.0.2:80']);
    await removePortRules(rules(EP2, 8081));
    expect(await listPortRuleOwners()).toEqual(new Map());
  });

  it('removes rules of orphans by their tag', async () => {
    await ensurePortChains();
    await addPortRules(rules(EP, 8082));
    await removePortRulesOf([EP2]);
    expect((await listPortRuleOwners()).get(EP)).toBe(3);
    await removePortRulesOf([EP, EP2]);
    expect(await listPortRuleOwners()).toEqual(new Map());
  });

  it.each([
    [{ ...rules(EP, 1), containerIp: '10.0.0.1; reboot' }, /invalid container address/],
    [{ ...rules(EP, 1), bridge: 'vxb-300 -j ACCEPT' }, /invalid interface name/],
    [{ ...rules(EP, 1), subnet: '10.0.0.0' }, /invalid subnet/],
    [{ ...rules('UPPER'.repeat(4), 1) }, /invalid endpoint id/],
    [{ ...rules(EP, 1), bindings: [{ proto: 'tcp' as const, hostIp: 'x', hostPort: 1, containerPort: 1 }] }, /invalid host address/],
  ])('refuses names it would not pass to iptables %#', async (r, msg) => {
    const before = nat();
    await expect(addPortRules(r)).rejects.toThrow(msg);
    expect(nat()).toEqual(before);
  });

  it('reserves a host port so no one else can bind it, and gives it back', async () => {
    const tcp = await reservePort('tcp', '0.0.0.0', 18555);
    expect(tcp).not.toBeNull();
    expect(await reservePort('tcp', '0.0.0.0', 18555)).toBeNull();
    expect(await reservePort('tcp', '127.0.0.1', 18555)).toBeNull();
    const udp = await reservePort('udp', '127.0.0.1', 18555);
    expect(udp).not.toBeNull();
    expect(await reservePort('udp', '0.0.0.0', 18555)).toBeNull();
    await tcp!.close();
    await udp!.close();
    const again = await reservePort('tcp', '0.0.0.0', 18555);
    expect(again).not.toBeNull();
    await again!.close();
  });

  it('refuses an address that is not the host\'s, naming it', async () => {
    const err = await reservePort('tcp', '192.0.2.77', 18556).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VxnetError);
    expect((err as VxnetError).code).toBe('VXNET_ERR_BAD_REQUEST');
    expect((err as Error).message).toMatch(/192\.0\.2\.77 is not an address of this host/);
  });

  it('removes its chains and jumps', async () => {
    await ensurePortChains();
    await removePortmap();
    await removePortmap();
    // Its own chains, jumps and rules only: VXNET-MASQ belongs to firewall.ts and may be there.
    expect(nat().filter((l) => /VXNET-DNAT|VXNET-PORTS|vxnet-ports/.test(l))).toEqual([]);
  });
});

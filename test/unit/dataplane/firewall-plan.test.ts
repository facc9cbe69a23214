// The pure part of src/dataplane/firewall.ts: what iptables-restore gets for a given `iptables -S`.
// The same plans run against the kernel in test/integration/dataplane-firewall.test.ts.
import { isolationRules, masqRules, parseTable, planTable } from '../../../src/dataplane/firewall';
import { bridgeEntries } from '../../../src/dataplane/firewall-sets';

const DOCKER = ['-P FORWARD DROP', '-N DOCKER-USER', '-N DOCKER', '-A FORWARD -j DOCKER-USER', '-A FORWARD -o docker0 -j DOCKER', '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT'];
const OURS = ['-N VXNET-ISOLATION', ...isolationRules().map((r) => `-A VXNET-ISOLATION ${r}`)];
const JUMP = '-A FORWARD -m comment --comment vxnet -j VXNET-ISOLATION';

function plan(lines: string[], table: 'filter' | 'nat' = 'filter'): ReturnType<typeof planTable> {
  return planTable(parseTable(lines.join('\n')), table);
}

describe('src/dataplane/firewall.ts planTable', () => {
  it('creates the chain and puts the jump right after DOCKER-USER', () => {
    const p = plan(DOCKER);
    expect(p.lines[0]).toBe(':VXNET-ISOLATION - [0:0]');
    expect(p.lines.slice(1, 1 + isolationRules().length)).toEqual(isolationRules().map((r) => `-A VXNET-ISOLATION ${r}`));
    expect(p.lines.at(-1)).toBe('-I FORWARD 2 -m comment --comment vxnet -j VXNET-ISOLATION');
  });

  it('changes nothing when everything is in place', () => {
    const lines = [...DOCKER.slice(0, 4), ...OURS, JUMP, ...DOCKER.slice(4)];
    expect(plan(lines)).toEqual({ lines: [], changes: [] });
  });

  it('moves a jump that Docker pushed down (dockerd restart) and removes a duplicate', () => {
    const lines = ['-P FORWARD DROP', ...OURS, JUMP, '-A FORWARD -j DOCKER-ISOLATION-STAGE-1', '-A FORWARD -j DOCKER-USER', JUMP];
    // Restarted dockerd inserted its jumps at the top: ours is 1st and 4th, DOCKER-USER 3rd.
    expect(plan(lines).lines).toEqual(['-D FORWARD 4', '-D FORWARD 1', '-I FORWARD 3 -m comment --comment vxnet -j VXNET-ISOLATION']);
  });

  it('puts the jump first when there is no DOCKER-USER (dockerd --iptables=false)', () => {
    expect(plan(['-P FORWARD ACCEPT']).lines.at(-1)).toBe('-I FORWARD 1 -m comment --comment vxnet -j VXNET-ISOLATION');
  });

  it('upgrades from per-bridge rules: rewrites the chain, removes VXNET-FORWARD and its jump', () => {
    const old = [
      ...DOCKER.slice(0, 4),
      '-N VXNET-ISOLATION',
      '-N VXNET-FORWARD',
      JUMP,
      ...DOCKER.slice(4),
      '-A FORWARD -m comment --comment vxnet -j VXNET-FORWARD',
      '-A VXNET-ISOLATION -i vxb-257 ! -o vxb-257 -m comment --comment vxnet -j DROP',
      '-A VXNET-FORWARD -i vxb-256 -o vxb-256 -m comment --comment vxnet -j ACCEPT',
    ];
    const p = plan(old);
    expect(p.lines).toEqual([
      ':VXNET-ISOLATION - [0:0]',
      ...isolationRules().map((r) => `-A VXNET-ISOLATION ${r}`),
      '-D FORWARD 5',
      '-D FORWARD 2',
      '-I FORWARD 2 -m comment --comment vxnet -j VXNET-ISOLATION',
      '-F VXNET-FORWARD',
      '-X VXNET-FORWARD',
    ]);
    expect(p.changes).toEqual(expect.arrayContaining([expect.stringMatching(/VXNET-FORWARD: removed with its 1 per-bridge rules/)]));
  });

  it('adds the masquerade chain and its POSTROUTING jump in the nat table', () => {
    expect(plan(['-P POSTROUTING ACCEPT', '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE'], 'nat').lines).toEqual([
      ':VXNET-MASQ - [0:0]',
      ...masqRules().map((r) => `-A VXNET-MASQ ${r}`),
      '-A POSTROUTING -m comment --comment vxnet -j VXNET-MASQ',
    ]);
  });

  it('keeps the rule count constant: no rule names a bridge', () => {
    expect([...isolationRules(), ...masqRules()].filter((r) => /vxb-\d/.test(r))).toEqual([]);
  });
});

describe('src/dataplane/firewall-sets.ts bridgeEntries', () => {
  it.each([
    [{ subnet: '10.1.0.0/24', internal: false, masquerade: true }, ['vxnet-egress 10.1.0.0/24,vxb-256', 'vxnet-masq 10.1.0.0/24']],
    [{ subnet: '10.1.0.0/24', internal: false, masquerade: false }, ['vxnet-egress 10.1.0.0/24,vxb-256']],
    [{ subnet: '10.1.0.0/24', internal: true, masquerade: true }, []],
    [{ subnet: null, internal: false, masquerade: true }, []],
    [{ subnet: '10.1.0.7/32', internal: false, masquerade: false }, ['vxnet-egress 10.1.0.7,vxb-256']],
  ])('gives %j these entries', (opts, want) => {
    expect(bridgeEntries('vxb-256', opts).map((e) => `${e.set} ${e.member}`)).toEqual(want);
  });

  it.each(['10.1.0.0/24\nflush', '10.1.0.0', '300.1.0.0/24', 'fd00::/64', '10.1.0.0/33'])('refuses the subnet %j', (subnet) => {
    expect(() => bridgeEntries('vxb-256', { subnet, internal: false, masquerade: true })).toThrow(/invalid IPv4 subnet/);
  });

  it.each(['-j', 'a b', 'x;reboot', '', 'averyveryverylongname', 'vxb-1,x'])('refuses the interface name %j', (name) => {
    expect(() => bridgeEntries(name, { subnet: '10.1.0.0/24', internal: false, masquerade: true })).toThrow(/invalid interface name/);
  });
});

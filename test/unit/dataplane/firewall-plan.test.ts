// The pure part of src/dataplane/firewall.ts: what iptables-restore gets for a given `iptables -S`.
// The same plans run against the kernel in test/integration/dataplane-firewall.test.ts.
import { isolationRules, masqRules, parseTable, planTable } from '../../../src/dataplane/firewall';
import { bridgeEntries } from '../../../src/dataplane/firewall-sets';

const DOCKER = ['-P FORWARD DROP', '-N DOCKER-USER', '-N DOCKER', '-A FORWARD -j DOCKER-USER', '-A FORWARD -o docker0 -j DOCKER', '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT', '-A DOCKER-USER -j RETURN'];
const OURS = ['-N VXNET-ISOLATION', ...isolationRules().map((r) => `-A VXNET-ISOLATION ${r}`)];
const USER_JUMP = '-A DOCKER-USER -m comment --comment vxnet -j VXNET-ISOLATION';
const FORWARD_JUMP = '-A FORWARD -m comment --comment vxnet -j VXNET-ISOLATION';

function plan(lines: string[], table: 'filter' | 'nat' = 'filter'): ReturnType<typeof planTable> {
  return planTable(parseTable(lines.join('\n')), table);
}

describe('src/dataplane/firewall.ts planTable', () => {
  it("creates the chain and jumps to it from DOCKER-USER, before dockerd's RETURN", () => {
    const p = plan(DOCKER);
    expect(p.lines[0]).toBe(':VXNET-ISOLATION - [0:0]');
    expect(p.lines.slice(1, 1 + isolationRules().length)).toEqual(isolationRules().map((r) => `-A VXNET-ISOLATION ${r}`));
    expect(p.lines.at(-1)).toBe('-I DOCKER-USER 1 -m comment --comment vxnet -j VXNET-ISOLATION');
  });

  it('changes nothing when everything is in place, also after a rule a user inserted into DOCKER-USER', () => {
    expect(plan([...DOCKER.slice(0, -1), ...OURS, USER_JUMP, '-A DOCKER-USER -j RETURN'])).toEqual({ lines: [], changes: [] });
    expect(plan([...DOCKER.slice(0, -1), ...OURS, '-A DOCKER-USER -s 10.0.0.0/8 -j DROP', USER_JUMP, '-A DOCKER-USER -j RETURN'])).toEqual({ lines: [], changes: [] });
  });

  it('moves a FORWARD jump (driver started before dockerd) into DOCKER-USER, and drops duplicates', () => {
    const lines = [...DOCKER.slice(0, 3), FORWARD_JUMP, '-A FORWARD -j DOCKER-USER', '-A FORWARD -i br-1 ! -o br-1 -j ACCEPT', FORWARD_JUMP, ...OURS, '-A DOCKER-USER -j RETURN'];
    expect(plan(lines).lines).toEqual(['-D FORWARD 4', '-D FORWARD 1', '-I DOCKER-USER 1 -m comment --comment vxnet -j VXNET-ISOLATION']);
  });

  it('puts a jump that sits after the RETURN of DOCKER-USER before it', () => {
    const lines = [...DOCKER, USER_JUMP, ...OURS];
    expect(plan(lines).lines).toEqual(['-D DOCKER-USER 2', '-I DOCKER-USER 1 -m comment --comment vxnet -j VXNET-ISOLATION']);
  });

  it('puts the jump first in FORWARD when there is no DOCKER-USER (dockerd --iptables=false)', () => {
    expect(plan(['-P FORWARD ACCEPT']).lines.at(-1)).toBe('-I FORWARD 1 -m comment --comment vxnet -j VXNET-ISOLATION');
    expect(plan(['-P FORWARD ACCEPT', ...OURS, FORWARD_JUMP]).lines).toEqual([]);
  });

  it('upgrades from per-bridge rules: rewrites the chain, removes VXNET-FORWARD and its jump', () => {
    const old = [
      ...DOCKER.slice(0, 4),
      '-N VXNET-ISOLATION',
      '-N VXNET-FORWARD',
      FORWARD_JUMP,
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
      '-I DOCKER-USER 1 -m comment --comment vxnet -j VXNET-ISOLATION',
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

import { dockerResolverPorts, netnsDnsRules, ownRules, ownRulesFirst, restoreText } from '../../../src/dataplane/netns-dns';

// What iptables-nft-save printed in a dockerd 26.1 container namespace (ports are random per container).
const DOCKER_NAT = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER_OUTPUT - [0:0]
:DOCKER_POSTROUTING - [0:0]
-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT
-A POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:38813
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:51000
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 38813 -j SNAT --to-source :53
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 51000 -j SNAT --to-source :53
COMMIT
`;
const SPEC = { gateway: '10.93.0.1', containerIp: '10.93.0.5', port: 5354 };

describe('container namespace DNS rules', () => {
  it("reads Docker's resolver ports from the nat table", () => {
    expect(dockerResolverPorts(DOCKER_NAT)).toEqual({ udp: 51000, tcp: 38813 });
    expect(dockerResolverPorts('*nat\nCOMMIT\n')).toBeNull();
  });

  it('sends 127.0.0.11:53 to the gateway first, and what comes back to Docker\'s own ports', () => {
    const r = netnsDnsRules(SPEC, { udp: 51000, tcp: 38813 });
    expect(r.nat.filter((l) => l.startsWith('-I OUTPUT'))).toEqual([
      '-I OUTPUT 1 -d 127.0.0.11/32 -p udp -m udp --dport 53 -m comment --comment vxnet-dns -j DNAT --to-destination 10.93.0.1:5354',
      '-I OUTPUT 2 -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -m comment --comment vxnet-dns -j DNAT --to-destination 10.93.0.1:5354',
    ]);
    expect(r.nat).toContain('-A PREROUTING -s 10.93.0.1/32 -d 10.93.0.5/32 -p udp -m udp --dport 5354 -m comment --comment vxnet-dns -j DNAT --to-destination 127.0.0.11:51000');
    expect(r.nat).toContain('-A PREROUTING -s 10.93.0.1/32 -d 10.93.0.5/32 -p tcp -m tcp --dport 5354 -m comment --comment vxnet-dns -j DNAT --to-destination 127.0.0.11:38813');
    expect(r.nat).toContain('-A POSTROUTING -s 127.0.0.0/8 -d 10.93.0.1/32 -p udp -m udp --dport 5354 -m comment --comment vxnet-dns -j SNAT --to-source 10.93.0.5');
    expect(r.filter).toEqual(['-A INPUT ! -i lo -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment vxnet-dns -j DROP']);
  });

  it('refuses bad input, naming the bad part', () => {
    expect(() => netnsDnsRules({ ...SPEC, gateway: 'fe80::1' }, { udp: 1, tcp: 2 })).toThrow(/gateway "fe80::1"/);
    expect(() => netnsDnsRules({ ...SPEC, containerIp: '10.93.0.5; rm' }, { udp: 1, tcp: 2 })).toThrow(/container address/);
    expect(() => netnsDnsRules({ ...SPEC, port: 70000 }, { udp: 1, tcp: 2 })).toThrow(/port 70000/);
  });

  it('finds its own rules, tells whether they come first, and deletes them before adding', () => {
    const ours = '-A OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -m comment --comment vxnet-dns -j DNAT --to-destination 10.93.0.1:5354';
    const ours2 = ours.replace(/udp/g, 'tcp');
    const first = DOCKER_NAT.replace('-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT', `${ours}\n${ours2}\n-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT`);
    const below = DOCKER_NAT.replace('-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT', `-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\n${ours}\n${ours2}`);
    expect(ownRulesFirst(first)).toBe(true);
    expect(ownRulesFirst(below)).toBe(false);
    expect(ownRulesFirst(DOCKER_NAT)).toBe(false);
    expect(ownRules(first)).toEqual({ nat: [ours, ours2], filter: [] });
    expect(restoreText({ nat: [ours], filter: [] }, { nat: ['-I OUTPUT 1 x'], filter: [] })).toBe(`*nat\n${ours.replace('-A ', '-D ')}\n-I OUTPUT 1 x\nCOMMIT\n`);
    expect(restoreText({ nat: [], filter: [] }, { nat: [], filter: [] })).toBe('');
  });
});

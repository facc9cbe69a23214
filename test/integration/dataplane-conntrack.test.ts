// src/dataplane/conntrack.ts against the kernel's conntrack table of the test's private netns:
// two namespace "containers" A and B on veths, real flows (ICMP, IPv6 ICMP, UDP through a DNAT
// rule as a published port makes it), read back from /proc/net/nf_conntrack, independently of
// the netlink code under test.
import * as fs from 'node:fs';
import ipaddr from 'ipaddr.js';
import { closeConntrack, FILTER_ABOVE, forgetFlows } from '../../src/dataplane/conntrack';
import { closeReaper, forgetFlows as forgetFlowsInThread, reaperThreadRunning } from '../../src/dataplane/kernel-thread';
import { addNetns, deleteLinks, deleteNetns, inNetns, sh, suffix, trySh } from '../helpers/netns';

const TABLE = `vxt-ct-${suffix(4)}`;

interface Side {
  ns: string;
  link: string;
  ip: string;
  gw: string;
}

function entries(): string[] {
  return fs.readFileSync('/proc/net/nf_conntrack', 'utf8').split('\n').filter(Boolean);
}

/** Entries with ip on either side (the file spells IPv6 addresses out in full). */
function entriesWith(ip: string): string[] {
  const a = ipaddr.parse(ip);
  const text = a.kind() === 'ipv6' ? (a as ipaddr.IPv6).toNormalizedString().split(':').map((p) => p.padStart(4, '0')).join(':') : a.toString();
  return entries().filter((l) => l.includes(`=${text} `));
}

describe('src/dataplane/conntrack.ts (kernel)', () => {
  const sides: Side[] = [];
  const A6 = 'fd67:1::2';

  function side(n: number): Side {
    const s: Side = { ns: addNetns('vxt-ct'), link: `vxt-ct${n}-${suffix(4)}`, ip: `10.67.${n}.2`, gw: `10.67.${n}.1` };
    sides.push(s);
    sh('ip', ['link', 'add', s.link, 'type', 'veth', 'peer', 'name', `${s.link}p`]);
    sh('ip', ['link', 'set', `${s.link}p`, 'netns', s.ns]);
    sh('ip', ['addr', 'add', `${s.gw}/24`, 'dev', s.link]);
    sh('ip', ['link', 'set', s.link, 'up']);
    inNetns(s.ns, 'ip', ['addr', 'add', `${s.ip}/24`, 'dev', `${s.link}p`]);
    inNetns(s.ns, 'ip', ['link', 'set', `${s.link}p`, 'up']);
    inNetns(s.ns, 'ip', ['route', 'add', 'default', 'via', s.gw]);
    return s;
  }

  beforeAll(() => {
    // Conntrack tracks a namespace's packets only once a rule there needs it.
    sh('nft', ['add', 'table', 'inet', TABLE]);
    sh('nft', ['add', 'chain', 'inet', TABLE, 'pre', '{ type filter hook prerouting priority 0; policy accept; }']);
    sh('nft', ['add', 'rule', 'inet', TABLE, 'pre', 'ct', 'state', 'new', 'counter']);
    // A published port's rule: UDP to the host's 5353 goes to A's 53.
    sh('nft', ['add', 'chain', 'inet', TABLE, 'natpre', '{ type nat hook prerouting priority -100; policy accept; }']);
    const [a] = [side(1), side(2)];
    sh('nft', ['add', 'rule', 'inet', TABLE, 'natpre', 'udp', 'dport', '5353', 'dnat', 'ip', 'to', `${a.ip}:53`]);
    sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    sh('ip', ['addr', 'add', 'fd67:1::1/64', 'dev', a.link, 'nodad']);
    inNetns(a.ns, 'ip', ['addr', 'add', `${A6}/64`, 'dev', `${a.link}p`, 'nodad']);
  });

  afterAll(async () => {
    await closeReaper();
    closeConntrack();
    trySh('nft', ['delete', 'table', 'inet', TABLE]);
    for (const s of sides) {
      deleteLinks(s.link);
      deleteNetns(s.ns);
    }
  });

  // Infinity: one dump of the whole table, matched in the driver; 0: dumps the kernel filters;
  // the driver's way: the same function in the kernel thread (the build's worker), off the main thread.
  it.each([
    ['one dump matched here', Infinity, forgetFlows],
    ['dumps the kernel filters', 0, forgetFlows],
    ['in the kernel thread', FILTER_ABOVE, forgetFlowsInThread],
  ])('deletes every entry naming the address, in either direction and family, and nothing else (%s)', async (mode, filterAbove, forget) => {
    const [a, b] = sides;
    inNetns(a.ns, 'busybox', ['ping', '-c', '1', '-W', '1', a.gw]);
    inNetns(a.ns, 'busybox', ['ping', '-6', '-c', '1', '-W', '1', 'fd67:1::1']);
    inNetns(b.ns, 'busybox', ['ping', '-c', '1', '-W', '1', b.gw]);
    // B → the "host" port 5353, DNATed to A: A's address only in the reply direction.
    inNetns(b.ns, 'sh', ['-c', `echo x | socat -u - UDP:${b.gw}:5353`]);
    const published = entries().filter((l) => l.includes('dport=5353'));
    expect(published).toHaveLength(1);
    expect(published[0]).toContain(`src=${a.ip} dst=${b.ip}`);
    expect(entriesWith(a.ip).length).toBeGreaterThanOrEqual(2);
    expect(entriesWith(A6)).toHaveLength(1);
    const bOwn = entriesWith(b.ip).filter((l) => !l.includes('dport=5353'));
    expect(bOwn.length).toBeGreaterThanOrEqual(1); // B's pings, of this run and an earlier one

    expect(await forget([a.ip, A6], filterAbove)).toBe(3);
    expect(entriesWith(a.ip)).toEqual([]);
    expect(entriesWith(A6)).toEqual([]);
    expect(entriesWith(b.ip)).toEqual(bOwn);
    expect(await forget([a.ip, A6], filterAbove)).toBe(0);
    expect(reaperThreadRunning()).toBe(mode === 'in the kernel thread');
  });

  it('accepts addresses in any spelling and ignores what is not an address', async () => {
    const [a] = sides;
    inNetns(a.ns, 'busybox', ['ping', '-6', '-c', '1', '-W', '1', 'fd67:1::1']);
    expect(entriesWith(A6)).toHaveLength(1);
    expect(await forgetFlows(['fd67:1:0:0:0:0:0:2', 'not-an-ip', ''])).toBe(1);
    expect(entriesWith(A6)).toEqual([]);
    expect(await forgetFlows([])).toBe(0);
  });
});

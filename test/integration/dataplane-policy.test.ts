// The policy table (src/dataplane/policy-table.ts) in the test's private netns, with sets made by
// src/policy/resolve.ts from records, and namespace "containers" on a bridge (bridged frames reach
// the inet forward hook through br_netfilter, as on a Docker host). IPv6 rules: a container
// allows one peer's IPv6 address; that peer reaches it over IPv6, another does not, and neither
// over IPv4 (the rule names no IPv4 source); replies to the policed container's own connections
// pass; neighbour discovery keeps working. Also: a table of an earlier version (IPv6 egress set of
// another type) is rewritten in place, and what the kernel lists reads back as what was written.
import { execFileSync } from 'node:child_process';
import { closeRtnl, ensureBridge, ensureVeth, removeBridge } from '../../src/dataplane';
import { listPolicyElements, removePolicyTable, updatePolicySets, emptyPolicySets, replacePolicySets, policyDrops, POLICY_TABLE } from '../../src/dataplane/policy-table';
import { resolvePolicy } from '../../src/policy/resolve';
import type { EndpointRecord, NetworkRecord } from '../../src/network/records';
import { vethNames } from '../../src/network/names';
import { addNetns, deleteNetns, inNetns, sh, suffix, tryInNetns } from '../helpers/netns';

// Each negative check is a ping that waits out its 1 s deadline.
jest.setTimeout(30_000);

const BRIDGE = `vxb-${suffix(4)}`;
const NET: NetworkRecord = {
  lnet: 'n1',
  ipv4: { subnet: '10.77.0.0/24', gateway: '10.77.0.1', poolId: null },
  ipv6: { subnet: 'fd77::/64', gateway: 'fd77::1', poolId: null },
  mtu: 1500,
  internal: false,
  vni: 300,
};

interface Ctr {
  ns: string;
  ip: string;
  ip6: string;
  /** The interface inside the namespace. */
  dev: string;
}

function pings(from: Ctr, ip: string): boolean {
  return tryInNetns(from.ns, 'busybox', ['ping', '-c', '1', '-W', '1', ip]);
}

/** A positive check right after a change: the first packet may wait on ARP/ND, so up to 3 tries. */
function pingsSoon(from: Ctr, ip: string): boolean {
  for (let i = 0; i < 3; i++) if (pings(from, ip)) return true;
  return false;
}

function record(c: Ctr, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return { networkId: 'd1', host: 'h1', vtep: null, mac: '02:42:00:00:00:01', ipv4: `${c.ip}/24`, ipv6: `${c.ip6}/64`, ...extra };
}

describe('src/dataplane/policy-table.ts (kernel, IPv6 rules)', () => {
  const ctrs: Ctr[] = [];
  let nfCall6Before = '1';

  beforeAll(async () => {
    nfCall6Before = sh('sysctl', ['-n', 'net.bridge.bridge-nf-call-ip6tables']).trim();
    sh('sysctl', ['-qw', 'net.bridge.bridge-nf-call-ip6tables=1']);
    await ensureBridge({ name: BRIDGE, mtu: 1500, mac: '02:76:78:00:77:00', addresses: [] });
    for (let i = 0; i < 3; i++) {
      const names = vethNames(`${suffix(8)}${'0'.repeat(56)}`);
      const c: Ctr = { ns: addNetns('vxt-pol'), ip: `10.77.0.${i + 10}`, ip6: `fd77::${i + 10}`, dev: names.peer };
      ctrs.push(c);
      await ensureVeth({ hostName: names.host, peerName: names.peer, mtu: 1500, peerMac: `02:42:0a:4d:00:${(i + 10).toString(16).padStart(2, '0')}`, bridge: BRIDGE });
      sh('ip', ['link', 'set', names.peer, 'netns', c.ns]);
      inNetns(c.ns, 'ip', ['link', 'set', 'lo', 'up']);
      inNetns(c.ns, 'ip', ['addr', 'add', `${c.ip}/24`, 'dev', c.dev]);
      inNetns(c.ns, 'ip', ['addr', 'add', `${c.ip6}/64`, 'dev', c.dev, 'nodad']);
      inNetns(c.ns, 'ip', ['link', 'set', c.dev, 'up']);
    }
  });

  afterAll(async () => {
    for (const c of ctrs) deleteNetns(c.ns);
    await removeBridge(BRIDGE).catch(() => undefined);
    await removePolicyTable();
    sh('sysctl', ['-qw', `net.bridge.bridge-nf-call-ip6tables=${nfCall6Before}`]);
    closeRtnl();
  });

  it('rewrites a table of an earlier version in place (its IPv6 egress set had another type, it had no IPv6 drop counters)', async () => {
    // What the previous version wrote: allow_out6 as "ipv6_addr . ipv6_addr", used by a rule, and
    // no drop_out6 mirror of policed_out6.
    const old = [
      `table inet ${POLICY_TABLE} {`,
      '  set policed_out6 { type ipv6_addr; elements = { fd77::10 } }',
      '  set allow_out6 { type ipv6_addr . ipv6_addr; flags interval; elements = { fd77::10 . fd77::/64 } }',
      '  chain out_check6 { ip6 saddr . ip6 daddr @allow_out6 return; drop; }',
      '  chain forward { type filter hook forward priority filter; policy accept; ip6 saddr @policed_out6 jump out_check6; }',
      '}',
    ].join('\n');
    execFileSync('nft', ['-f', '-'], { input: old });
    // A start that finds it: from what the kernel holds to nothing (removing an element that the
    // new drop_out6 mirror never had must not fail the transaction).
    await updatePolicySets({ ...emptyPolicySets(), policedOut6: ['fd77::10'] }, emptyPolicySets(), true);
    const listing = sh('nft', ['list', 'table', 'inet', POLICY_TABLE]);
    expect(listing).toMatch(/set drop_in6 /);
    expect(listing).toMatch(/set drop_out6 /);
    expect(listing).not.toMatch(/set allow_out6 /);
    expect(listing).toMatch(/set allow6_in /);
    expect(listing).toMatch(/set allow6_out /);
    expect(await listPolicyElements()).toEqual(emptyPolicySets());
  });

  it('an IPv6 allow rule lets that peer in over IPv6 only; others are refused; replies and ND pass', async () => {
    const [a, b, c] = ctrs;
    // Before any rule, everyone reaches everyone.
    expect(pingsSoon(b, a.ip6)).toBe(true);
    expect(pingsSoon(c, a.ip6)).toBe(true);
    const plan = resolvePolicy({
      host: 'h1',
      networks: new Map([['n1', NET]]),
      endpoints: new Map([
        ['n1/ea', record(a, { allow: `[${b.ip6}/128]` })],
        ['n1/eb', record(b)],
        ['n1/ec', record(c)],
      ]),
      names: new Map(),
      pending: new Set(),
    });
    expect(plan.elements.allowIn6).toEqual([`${a.ip6} . ${b.ip6} . 0-255 . 0-65535`]);
    await replacePolicySets(plan.elements);
    // What the kernel lists reads back as what was written (ranges, IPv6 spelling).
    expect(await listPolicyElements()).toEqual(plan.elements);

    expect(pingsSoon(b, a.ip6)).toBe(true);
    const before = (await policyDrops())?.in.get(a.ip6) ?? 0;
    expect(pings(c, a.ip6)).toBe(false);
    // The refused IPv6 packet is counted for A's address, as IPv4 drops are (metrics by network).
    const drops = await policyDrops();
    expect(drops?.in.get(a.ip6)).toBeGreaterThan(before);
    expect(drops?.in.has(b.ip6)).toBe(false); // not policed: no counter
    // The rule names no IPv4 source: A is closed over IPv4.
    expect(pings(b, a.ip)).toBe(false);
    expect(pings(c, a.ip)).toBe(false);
    // A's own connections get their replies.
    expect(pingsSoon(a, c.ip6)).toBe(true);
    // Neighbour discovery is not "established": with the caches emptied, B still reaches A.
    for (const x of [a, b]) inNetns(x.ns, 'ip', ['-6', 'neigh', 'flush', 'all']);
    expect(pingsSoon(b, a.ip6)).toBe(true);
  });

  it('IPv6 egress rules: a policed source reaches its own subnet and the CIDRs it names, nothing else', async () => {
    const [a, b, c] = ctrs;
    // C also answers on fd78::10 (named by A's egress rule) and fd79::10 (not named), on-link for A.
    for (const extra of ['fd78::10/64', 'fd79::10/64']) inNetns(c.ns, 'ip', ['addr', 'add', extra, 'dev', c.dev, 'nodad']);
    for (const net of ['fd78::/64', 'fd79::/64']) inNetns(a.ns, 'ip', ['-6', 'route', 'add', net, 'dev', a.dev]);
    const plan = resolvePolicy({
      host: 'h1',
      networks: new Map([['n1', NET]]),
      endpoints: new Map([
        ['n1/ea', record(a, { egress: '[fd78::/64]' })],
        ['n1/eb', record(b)],
        ['n1/ec', record(c)],
      ]),
      names: new Map(),
      pending: new Set(),
    });
    await replacePolicySets(plan.elements);
    expect(await listPolicyElements()).toEqual(plan.elements);
    expect(pingsSoon(a, b.ip6)).toBe(true); // its own subnet
    expect(pingsSoon(a, 'fd78::10')).toBe(true); // named
    expect(pings(a, 'fd79::10')).toBe(false); // not named
    expect(pingsSoon(a, b.ip)).toBe(true); // IPv4: its own subnet too
  });
});

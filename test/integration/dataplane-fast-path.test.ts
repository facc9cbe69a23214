// The fast path of src/dataplane/policy-table.ts (table `bridge vxnet-policy`) in the test's private
// netns: namespace "containers" on a vxnet-named bridge with br_netfilter on, as on a Docker host.
// What it must do: frames the bridge forwards between two unpoliced containers are not tracked
// (no conntrack entry); a flow with a policed end is tracked both ways, so the policy still
// refuses what its rules do not allow and a policed container's own connections get their
// replies; traffic to the gateway (routed: egress, NAT, published ports) stays tracked; with
// --fast-path off the hook has no rule and those frames are tracked again; and a
// fast path whose copy of a policed set differs from the policy's is reported as incomplete.
import * as fs from 'node:fs';
import { closeRtnl, ensureBridge, ensureVeth, removeBridge } from '../../src/dataplane';
import { listPolicyElements, removePolicyTable, replacePolicySets, emptyPolicySets, POLICY_TABLE } from '../../src/dataplane/policy-table';
import { resolvePolicy } from '../../src/policy/resolve';
import type { EndpointRecord, NetworkRecord } from '../../src/network/records';
import { vethNames } from '../../src/network/names';
import { addNetns, deleteNetns, inNetns, sh, suffix, tryInNetns } from '../helpers/netns';

// Each negative check is a ping that waits out its 1 s deadline.
jest.setTimeout(30_000);

const BRIDGE = `vxb-${suffix(4)}`;
const GATEWAY = '10.78.0.1';
const NET: NetworkRecord = {
  lnet: 'n1',
  ipv4: { subnet: '10.78.0.0/24', gateway: GATEWAY, poolId: null },
  ipv6: null,
  mtu: 1500,
  internal: false,
  vni: 301,
};

interface Ctr {
  ns: string;
  ip: string;
}

function pings(from: Ctr, ip: string): boolean {
  return tryInNetns(from.ns, 'busybox', ['ping', '-c', '1', '-W', '1', ip]);
}

function pingsSoon(from: Ctr, ip: string): boolean {
  for (let i = 0; i < 3; i++) if (pings(from, ip)) return true;
  return false;
}

/**
 * The ICMP conntrack entries of this netns between two addresses (either direction). There is no
 * conntrack tool to flush them (they time out after 30 s): every check uses a pair of addresses no
 * earlier check used.
 */
function tracked(a: string, b: string): number {
  const lines = fs.readFileSync('/proc/net/nf_conntrack', 'utf8').split('\n');
  return lines.filter((l) => / icmp /.test(l) && ((l.includes(`src=${a} dst=${b} `)) || l.includes(`src=${b} dst=${a} `))).length;
}

function record(c: Ctr, extra: Partial<EndpointRecord> = {}): EndpointRecord {
  return { networkId: 'd1', host: 'h1', vtep: null, mac: '02:42:00:00:00:01', ipv4: `${c.ip}/24`, ipv6: null, ...extra };
}

describe('src/dataplane/policy-table.ts fast path (kernel: conntrack skipped between unpoliced containers)', () => {
  const ctrs: Ctr[] = [];

  beforeAll(async () => {
    expect(sh('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables']).trim()).toBe('1');
    await ensureBridge({ name: BRIDGE, mtu: 1500, mac: '02:76:78:00:78:00', addresses: [`${GATEWAY}/24`] });
    for (let i = 0; i < 4; i++) {
      const names = vethNames(`${suffix(8)}${'0'.repeat(56)}`);
      const c: Ctr = { ns: addNetns('vxt-fp'), ip: `10.78.0.${i + 10}` };
      ctrs.push(c);
      await ensureVeth({ hostName: names.host, peerName: names.peer, mtu: 1500, peerMac: `02:42:0a:4e:00:${(i + 10).toString(16).padStart(2, '0')}`, bridge: BRIDGE });
      sh('ip', ['link', 'set', names.peer, 'netns', c.ns]);
      inNetns(c.ns, 'ip', ['link', 'set', 'lo', 'up']);
      inNetns(c.ns, 'ip', ['addr', 'add', `${c.ip}/24`, 'dev', names.peer]);
      inNetns(c.ns, 'ip', ['link', 'set', names.peer, 'up']);
    }
    await removePolicyTable();
    await replacePolicySets(emptyPolicySets());
  });

  afterAll(async () => {
    for (const c of ctrs) deleteNetns(c.ns);
    await removeBridge(BRIDGE).catch(() => undefined);
    await removePolicyTable();
    closeRtnl();
  });

  it('writes both tables; without policy, frames between two containers are not tracked, traffic to the gateway is', async () => {
    expect(sh('nft', ['list', 'table', 'bridge', POLICY_TABLE])).toMatch(/notrack/);
    expect(await listPolicyElements()).toEqual(emptyPolicySets());
    const [a, b] = ctrs;
    expect(pingsSoon(b, a.ip)).toBe(true);
    expect(tracked(b.ip, a.ip)).toBe(0);
    // To the bridge's own MAC: routed by the host, tracked as before (NAT and the firewall need it).
    expect(pingsSoon(b, GATEWAY)).toBe(true);
    expect(tracked(b.ip, GATEWAY)).toBe(1);
  });

  it('a policed container: its flows are tracked both ways, its rules hold, its own connections get replies', async () => {
    const [a, , c, d] = ctrs;
    // A admits D only. C is refused; A's own connection to C (unpoliced) gets its replies.
    const plan = resolvePolicy({
      host: 'h1',
      networks: new Map([['n1', NET]]),
      endpoints: new Map([
        ['n1/ea', record(a, { allow: `${d.ip}/32` })],
        ['n1/ec', record(c)],
        ['n1/ed', record(d)],
      ]),
      names: new Map(),
      pending: new Set(),
    });
    await replacePolicySets(plan.elements);
    expect(await listPolicyElements()).toEqual(plan.elements);
    expect(sh('nft', ['list', 'set', 'bridge', POLICY_TABLE, 'policed_in'])).toContain(a.ip);

    expect(pingsSoon(d, a.ip)).toBe(true);
    expect(tracked(d.ip, a.ip)).toBe(1);
    expect(pings(c, a.ip)).toBe(false);
    expect(pingsSoon(a, c.ip)).toBe(true);
    expect(tracked(a.ip, c.ip)).toBe(1);
  });

  it('--fast-path off: the hook has no rule, frames between two containers are tracked again; a table written the other way reads as incomplete', async () => {
    const [, b, c] = ctrs;
    await replacePolicySets(emptyPolicySets(), { fastPath: false });
    expect(sh('nft', ['list', 'table', 'bridge', POLICY_TABLE])).not.toMatch(/notrack/);
    expect(await listPolicyElements({ fastPath: false })).toEqual(emptyPolicySets());
    expect(await listPolicyElements({ fastPath: true })).toBeNull();
    expect(pingsSoon(b, c.ip)).toBe(true);
    expect(tracked(b.ip, c.ip)).toBe(1);
    await replacePolicySets(emptyPolicySets(), { fastPath: true });
    expect(await listPolicyElements({ fastPath: false })).toBeNull();
  });

  it('a fast path whose copy of a policed set differs from the policy\'s reads as incomplete (rewritten at the next pass)', async () => {
    const [a] = ctrs;
    await replacePolicySets({ ...emptyPolicySets(), policedIn: [a.ip] });
    expect(await listPolicyElements()).toEqual({ ...emptyPolicySets(), policedIn: [a.ip] });
    sh('nft', ['delete', 'element', 'bridge', POLICY_TABLE, 'policed_in', `{ ${a.ip} }`]);
    expect(await listPolicyElements()).toBeNull();
    sh('nft', ['delete', 'table', 'bridge', POLICY_TABLE]);
    expect(await listPolicyElements()).toBeNull();
  });
});

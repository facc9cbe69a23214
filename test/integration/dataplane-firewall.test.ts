// vxnet's firewall in the test's private netns: the constant chains and the ipsets read back
// with `iptables -S` / `ipset save`, and traffic between namespace "containers" on vxnet bridges,
// a stand-in for a Docker bridge and an "outside" namespace with no route to container subnets,
// with the FORWARD policy at DROP (dockerd) and at ACCEPT (dockerd --iptables=false).
// Rule and traffic tests share this file so they never run concurrently against one FORWARD chain.
import {
  closeRtnl,
  ensureBridge,
  ensureBridgeRules,
  ensureFdb,
  ensureFirewall,
  ensureVeth,
  listFirewallEntries,
  removeBridgeRules,
  removeFirewall,
  removeFirewallEntries,
} from '../../src/dataplane';
import { isolationRules, masqRules } from '../../src/dataplane/firewall';
import { addNetns, deleteLinks, deleteNetns, inNetns, sh, suffix, trySh, tryInNetns } from '../helpers/netns';

// Named like a Docker user network's bridge (br-<id>): vxnet's rules know Docker's bridges by name.
const FAKE_DOCKER_BRIDGE = 'br-vxtfake0';

function forward(): string[] {
  return sh('iptables', ['-w', '-S', 'FORWARD']).split('\n').filter((l) => l.startsWith('-A FORWARD'));
}

function chain(name: string, table = 'filter'): string[] {
  return sh('iptables', ['-w', '-t', table, '-S', name]).split('\n').filter((l) => l.startsWith(`-A ${name}`));
}

/** Every rule of both tables: what "constant" is measured on. */
function allRules(): string[] {
  return [...sh('iptables', ['-w', '-S']).split('\n'), ...sh('iptables', ['-w', '-t', 'nat', '-S']).split('\n')].filter((l) => l.startsWith('-A '));
}

function setMembers(set: string): string[] {
  if (!trySh('ipset', ['list', '-n', set])) return [];
  return sh('ipset', ['save', set]).split('\n').filter((l) => l.startsWith(`add ${set} `)).map((l) => l.split(' ')[2]).sort();
}

function positionOf(lines: string[], target: string): number {
  return lines.findIndex((l) => l.endsWith(`-j ${target}`));
}

const DOCKER_BRIDGE_RULES = [
  ['-o', FAKE_DOCKER_BRIDGE, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
  ['-i', FAKE_DOCKER_BRIDGE, '!', '-o', FAKE_DOCKER_BRIDGE, '-j', 'ACCEPT'],
];

/**
 * A stand-in for what dockerd does to FORWARD when it creates a bridge network: its rules for the
 * bridge inserted at the top, then its DOCKER-USER jump put back first.
 */
function addFakeDocker(): void {
  if (!trySh('iptables', ['-w', '-S', 'DOCKER-USER'])) {
    sh('iptables', ['-w', '-N', 'DOCKER-USER']);
    sh('iptables', ['-w', '-A', 'DOCKER-USER', '-j', 'RETURN']);
  }
  for (const rule of DOCKER_BRIDGE_RULES) sh('iptables', ['-w', '-I', 'FORWARD', '1', ...rule]);
  while (trySh('iptables', ['-w', '-D', 'FORWARD', '-j', 'DOCKER-USER']));
  sh('iptables', ['-w', '-I', 'FORWARD', '1', '-j', 'DOCKER-USER']);
}

function removeFakeDocker(): void {
  while (trySh('iptables', ['-w', '-D', 'FORWARD', '-j', 'DOCKER-USER']));
  for (const rule of DOCKER_BRIDGE_RULES) while (trySh('iptables', ['-w', '-D', 'FORWARD', ...rule]));
  // vxnet's own jump may sit in DOCKER-USER: removeFirewall (afterEach) takes it; flush anyway.
  trySh('iptables', ['-w', '-F', 'DOCKER-USER']);
  trySh('iptables', ['-w', '-X', 'DOCKER-USER']);
}

function dockerUser(): string[] {
  return chain('DOCKER-USER');
}

/** What vxnet before the constant rules left on a host: one rule per bridge, two chains. */
function addOldVersionRules(): void {
  sh('iptables', ['-w', '-N', 'VXNET-FORWARD']);
  sh('iptables', ['-w', '-N', 'VXNET-ISOLATION']);
  sh('iptables', ['-w', '-A', 'FORWARD', '-m', 'comment', '--comment', 'vxnet', '-j', 'VXNET-FORWARD']);
  sh('iptables', ['-w', '-I', 'FORWARD', '2', '-m', 'comment', '--comment', 'vxnet', '-j', 'VXNET-ISOLATION']);
  for (const br of ['vxb-256', 'vxb-257', 'vxb-258']) {
    sh('iptables', ['-w', '-A', 'VXNET-FORWARD', '-i', br, '-o', br, '-m', 'comment', '--comment', 'vxnet', '-j', 'ACCEPT']);
  }
  sh('iptables', ['-w', '-A', 'VXNET-ISOLATION', '-i', 'vxb-257', '!', '-o', 'vxb-257', '-m', 'comment', '--comment', 'vxnet', '-j', 'DROP']);
  sh('iptables', ['-w', '-A', 'VXNET-ISOLATION', '!', '-i', 'vxb-257', '-o', 'vxb-257', '-m', 'comment', '--comment', 'vxnet', '-j', 'DROP']);
}

const OPEN = { internal: false, masquerade: true };

afterAll(async () => {
  removeFakeDocker();
  await removeFirewall();
  closeRtnl();
});

describe('src/dataplane/firewall', () => {
  // Start from tables without vxnet's chains, whatever an earlier test file in this namespace left.
  beforeAll(async () => {
    await removeFirewall();
  });
  afterEach(async () => {
    await removeFirewall();
    removeFakeDocker();
  });

  it('creates the chains, the jumps and the sets; a second ensure changes nothing', async () => {
    addFakeDocker();
    const changes = await ensureFirewall();
    expect(changes.length).toBeGreaterThan(0);
    // Jumped to from DOCKER-USER (before its RETURN), which dockerd keeps first in FORWARD.
    expect(dockerUser()).toEqual(['-A DOCKER-USER -m comment --comment vxnet -j VXNET-ISOLATION', '-A DOCKER-USER -j RETURN']);
    expect(forward().filter((l) => l.includes('VXNET'))).toEqual([]);
    // iptables prints them exactly as firewall.ts writes them: the comparison that makes ensure idempotent.
    expect(chain('VXNET-ISOLATION')).toEqual(isolationRules().map((r) => `-A VXNET-ISOLATION ${r}`));
    expect(chain('VXNET-MASQ', 'nat')).toEqual(masqRules().map((r) => `-A VXNET-MASQ ${r}`));
    expect(chain('POSTROUTING', 'nat')).toContain('-A POSTROUTING -m comment --comment vxnet -j VXNET-MASQ');
    expect(sh('ipset', ['list', '-n']).split('\n')).toEqual(expect.arrayContaining(['vxnet-egress', 'vxnet-masq']));
    const before = allRules();
    expect(await ensureFirewall()).toEqual([]);
    expect(allRules()).toEqual(before);
  });

  it('keeps the number of rules constant with 1 and with 200 networks', async () => {
    await ensureFirewall();
    await ensureBridgeRules('vxb-256', { subnet: '10.70.0.0/24', ...OPEN });
    const one = allRules();
    for (let i = 1; i < 200; i++) {
      await ensureBridgeRules(`vxb-${256 + i}`, { subnet: `10.70.${i}.0/24`, internal: i % 3 === 0, masquerade: i % 2 === 0 });
    }
    expect(allRules()).toEqual(one);
    expect(setMembers('vxnet-egress')).toHaveLength(200 - 66);
    expect(setMembers('vxnet-masq')).toContain('10.70.0.0/24');
    expect(await listFirewallEntries()).toHaveLength(setMembers('vxnet-egress').length + setMembers('vxnet-masq').length);
    // 200 ipset writes: seconds on a loaded 2-core machine, more than jest's default 5 s. A limit
    // on how long the test may run, not a speed assertion (bench:many measures that).
  }, 120_000);

  it('ensureBridgeRules is idempotent and follows the options; removeBridgeRules resolves when there is nothing', async () => {
    await ensureFirewall();
    await ensureBridgeRules('vxb-300', { subnet: '10.71.0.0/24', ...OPEN });
    await ensureBridgeRules('vxb-300', { subnet: '10.71.0.0/24', ...OPEN });
    expect(setMembers('vxnet-egress')).toEqual(['10.71.0.0/24,vxb-300']);
    expect(setMembers('vxnet-masq')).toEqual(['10.71.0.0/24']);
    await ensureBridgeRules('vxb-300', { subnet: '10.71.0.0/24', internal: false, masquerade: false });
    expect(setMembers('vxnet-masq')).toEqual([]);
    await ensureBridgeRules('vxb-300', { subnet: '10.71.0.0/24', internal: true, masquerade: true });
    expect(setMembers('vxnet-egress')).toEqual([]);
    await ensureBridgeRules('vxb-300', { subnet: '10.71.0.0/24', ...OPEN });
    await removeBridgeRules('vxb-300', '10.71.0.0/24');
    expect([...setMembers('vxnet-egress'), ...setMembers('vxnet-masq')]).toEqual([]);
    await expect(removeBridgeRules('vxb-300', '10.71.0.0/24')).resolves.toBeUndefined();
    await expect(removeBridgeRules('vxb-300', null)).resolves.toBeUndefined();
  });

  it('puts everything back when the sets are gone (a Join after someone flushed the firewall)', async () => {
    await ensureFirewall();
    await removeFirewall();
    await ensureBridgeRules('vxb-301', { subnet: '10.72.0.0/24', ...OPEN });
    expect(setMembers('vxnet-egress')).toEqual(['10.72.0.0/24,vxb-301']);
    expect(chain('VXNET-ISOLATION')).toHaveLength(isolationRules().length);
  });

  it('jumps first from FORWARD without dockerd, and moves into DOCKER-USER once dockerd made it', async () => {
    await ensureFirewall();
    expect(positionOf(forward(), 'VXNET-ISOLATION')).toBe(0);
    addFakeDocker(); // dockerd starts: its rules now sit above vxnet's jump
    expect(positionOf(forward(), 'VXNET-ISOLATION')).toBeGreaterThan(positionOf(forward(), 'DOCKER-USER'));
    expect(await ensureFirewall()).toEqual([expect.stringMatching(/DOCKER-USER: jump to VXNET-ISOLATION put before its RETURN/)]);
    expect(forward().filter((l) => l.includes('VXNET'))).toEqual([]);
    expect(dockerUser()[0]).toBe('-A DOCKER-USER -m comment --comment vxnet -j VXNET-ISOLATION');
    addFakeDocker(); // another bridge network: dockerd inserts more rules at the top of FORWARD
    expect(await ensureFirewall()).toEqual([]);
  });

  it('upgrades from the per-bridge rules of an earlier vxnet in one pass', async () => {
    addFakeDocker();
    addOldVersionRules();
    const changes = await ensureFirewall();
    expect(changes).toEqual(expect.arrayContaining([expect.stringMatching(/VXNET-FORWARD: removed with its 3 per-bridge rules/), expect.stringMatching(/rewrote 2 rules as/)]));
    expect(trySh('iptables', ['-w', '-S', 'VXNET-FORWARD'])).toBe(false);
    expect(allRules().filter((l) => /vxb-\d/.test(l))).toEqual([]);
    expect(chain('VXNET-ISOLATION')).toEqual(isolationRules().map((r) => `-A VXNET-ISOLATION ${r}`));
    expect(forward().filter((l) => l.includes('VXNET'))).toEqual([]);
    expect(dockerUser().filter((l) => l.includes('VXNET'))).toEqual(['-A DOCKER-USER -m comment --comment vxnet -j VXNET-ISOLATION']);
    expect(await ensureFirewall()).toEqual([]);
  });

  it('dry run reports without changing', async () => {
    expect(await ensureFirewall({ dryRun: true })).toEqual(expect.arrayContaining([expect.stringMatching(/VXNET-ISOLATION: created/)]));
    expect(trySh('iptables', ['-w', '-S', 'VXNET-ISOLATION'])).toBe(false);
  });

  it('lists and removes entries; concurrent calls leave one copy', async () => {
    await ensureFirewall();
    await Promise.all([1, 2, 3, 4].map(() => ensureBridgeRules('vxb-302', { subnet: '10.73.0.0/24', ...OPEN })));
    const entries = await listFirewallEntries();
    expect(entries.map((e) => `${e.set} ${e.member}`).sort()).toEqual(['vxnet-egress 10.73.0.0/24,vxb-302', 'vxnet-masq 10.73.0.0/24']);
    await removeFirewallEntries(entries);
    expect(await listFirewallEntries()).toEqual([]);
    await expect(removeFirewallEntries([{ set: 'vxnet-masq', member: '10.0.0.0/8\ndestroy' }])).rejects.toThrow(/invalid firewall entry/);
  });

  it('removeFirewall removes the jumps, the chains and the sets', async () => {
    await ensureFirewall();
    await removeFirewall();
    expect(allRules().filter((l) => l.includes('VXNET'))).toEqual([]);
    expect(trySh('iptables', ['-w', '-S', 'VXNET-ISOLATION'])).toBe(false);
    expect(trySh('ipset', ['list', '-n', 'vxnet-egress'])).toBe(false);
    await expect(removeFirewall()).resolves.toBeUndefined();
  });
});

describe('src/dataplane/firewall traffic (bridge-nf-call-iptables=1)', () => {
  const s = suffix(5);
  // Two vxnet networks, a Docker-like bridge and an "outside" link with no route back to any of them.
  const brA = `vxb-${s}a`;
  const brB = `vxb-${s}b`;
  const dockerBr = FAKE_DOCKER_BRIDGE;
  const outsideLink = `vxto${s}`;
  const namespaces: string[] = [];
  const ns: Record<'a1' | 'a2' | 'b1' | 'd1' | 'out', string> = { a1: '', a2: '', b1: '', d1: '', out: '' };
  let policyBefore = 'ACCEPT';
  let nfCallBefore = '0';
  let forwardingBefore = '0';

  function ping(from: string, ip: string): boolean {
    return tryInNetns(from, 'busybox', ['ping', '-c', '1', '-W', '1', ip]);
  }

  async function container(netns: string, tag: string, ip: string, mac: string, bridge: string, gw: string): Promise<void> {
    const host = `vxe-${s}${tag}`;
    const peer = `vxc-${s}${tag}`;
    await ensureVeth({ hostName: host, peerName: peer, mtu: 1450, peerMac: mac, bridge });
    await ensureFdb({ dev: host, mac, master: true });
    sh('ip', ['link', 'set', peer, 'netns', netns]);
    inNetns(netns, 'ip', ['link', 'set', 'lo', 'up']);
    inNetns(netns, 'ip', ['addr', 'add', ip, 'dev', peer]);
    inNetns(netns, 'ip', ['link', 'set', peer, 'up']);
    inNetns(netns, 'ip', ['route', 'add', 'default', 'via', gw]);
  }

  beforeAll(async () => {
    policyBefore = /-P FORWARD (\S+)/.exec(sh('iptables', ['-w', '-S', 'FORWARD']))?.[1] ?? 'ACCEPT';
    nfCallBefore = sh('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables']).trim();
    forwardingBefore = sh('sysctl', ['-n', 'net.ipv4.ip_forward']).trim();
    sh('sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    for (const k of Object.keys(ns) as Array<keyof typeof ns>) {
      ns[k] = addNetns(`vxt-${k}`);
      namespaces.push(ns[k]);
    }
    await ensureBridge({ name: brA, mtu: 1450, mac: '02:42:0a:50:00:01', addresses: ['10.80.0.1/24'] });
    await ensureBridge({ name: brB, mtu: 1450, mac: '02:42:0a:52:00:01', addresses: ['10.82.0.1/24'] });
    await ensureBridge({ name: dockerBr, mtu: 1450, mac: '02:42:0a:51:00:01', addresses: ['10.81.0.1/24'] });
    await container(ns.a1, 'a1', '10.80.0.2/24', '02:42:0a:50:00:02', brA, '10.80.0.1');
    await container(ns.a2, 'a2', '10.80.0.3/24', '02:42:0a:50:00:03', brA, '10.80.0.1');
    await container(ns.b1, 'b1', '10.82.0.2/24', '02:42:0a:52:00:02', brB, '10.82.0.1');
    await container(ns.d1, 'd1', '10.81.0.2/24', '02:42:0a:51:00:02', dockerBr, '10.81.0.1');
    // The outside: its own subnet only, no default route, nothing knows 10.80.0.0/24 there.
    sh('ip', ['link', 'add', outsideLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.out]);
    sh('ip', ['addr', 'add', '192.0.2.1/24', 'dev', outsideLink]);
    sh('ip', ['link', 'set', outsideLink, 'up']);
    inNetns(ns.out, 'ip', ['addr', 'add', '192.0.2.2/24', 'dev', 'eth0']);
    inNetns(ns.out, 'ip', ['link', 'set', 'eth0', 'up']);
    inNetns(ns.out, 'ip', ['link', 'set', 'lo', 'up']);
    addFakeDocker();
    await ensureFirewall();
    await ensureBridgeRules(brA, { subnet: '10.80.0.0/24', ...OPEN });
    await ensureBridgeRules(brB, { subnet: '10.82.0.0/24', ...OPEN });
  });

  afterAll(async () => {
    for (const n of namespaces) deleteNetns(n);
    deleteLinks(...['a1', 'a2', 'b1', 'd1'].map((t) => `vxe-${s}${t}`), outsideLink, brA, brB, dockerBr);
    removeFakeDocker();
    await removeFirewall();
    sh('iptables', ['-w', '-P', 'FORWARD', policyBefore]);
    sh('sysctl', ['-qw', `net.bridge.bridge-nf-call-iptables=${nfCallBefore}`]);
    sh('sysctl', ['-qw', `net.ipv4.ip_forward=${forwardingBefore}`]);
  });

  describe.each(['DROP', 'ACCEPT'])('FORWARD policy %s', (policy) => {
    beforeAll(async () => {
      sh('iptables', ['-w', '-P', 'FORWARD', policy]);
      await ensureBridgeRules(brA, { subnet: '10.80.0.0/24', ...OPEN });
    });

    it('passes traffic within a network, also after dockerd inserted rules for another bridge network at the top', () => {
      addFakeDocker();
      expect(ping(ns.a1, '10.80.0.3')).toBe(true);
      expect(ping(ns.a2, '10.80.0.2')).toBe(true);
    });

    it('reaches the outside with the host address as source (the outside has no route back otherwise)', () => {
      expect(ping(ns.a1, '192.0.2.2')).toBe(true);
      expect(tryInNetns(ns.out, 'ip', ['route', 'get', '10.80.0.2'])).toBe(false);
    });

    it('keeps two vxnet networks apart, both ways', () => {
      expect(ping(ns.a1, '10.82.0.2')).toBe(false);
      expect(ping(ns.b1, '10.80.0.2')).toBe(false);
    });

    it("keeps a Docker bridge's containers and vxnet's apart, both ways, despite Docker's accept rules", () => {
      expect(ping(ns.d1, '10.80.0.2')).toBe(false);
      expect(ping(ns.a1, '10.81.0.2')).toBe(false);
    });

    it('lets nothing from outside in', () => {
      inNetns(ns.out, 'ip', ['route', 'add', '10.80.0.0/24', 'via', '192.0.2.1']);
      try {
        expect(ping(ns.out, '10.80.0.2')).toBe(false);
      } finally {
        inNetns(ns.out, 'ip', ['route', 'del', '10.80.0.0/24', 'via', '192.0.2.1']);
      }
    });

    it('without masquerade: egress with the real address (answered only where the outside routes back)', async () => {
      await ensureBridgeRules(brA, { subnet: '10.80.0.0/24', internal: false, masquerade: false });
      expect(ping(ns.a1, '192.0.2.2')).toBe(false);
      inNetns(ns.out, 'ip', ['route', 'add', '10.80.0.0/24', 'via', '192.0.2.1']);
      try {
        expect(ping(ns.a1, '192.0.2.2')).toBe(true);
      } finally {
        inNetns(ns.out, 'ip', ['route', 'del', '10.80.0.0/24', 'via', '192.0.2.1']);
        await ensureBridgeRules(brA, { subnet: '10.80.0.0/24', ...OPEN });
      }
    });

    it('internal: no egress, traffic within the network still passes', async () => {
      await ensureBridgeRules(brA, { subnet: '10.80.0.0/24', internal: true, masquerade: true });
      try {
        expect(ping(ns.a1, '192.0.2.2')).toBe(false);
        expect(ping(ns.a1, '10.80.0.3')).toBe(true);
        expect(ping(ns.d1, '10.80.0.2')).toBe(false);
      } finally {
        await ensureBridgeRules(brA, { subnet: '10.80.0.0/24', ...OPEN });
      }
    });

    it('a spoofed source gets no egress', () => {
      // a1 claims b's subnet as its source: not the pair (subnet, bridge) the egress set holds.
      inNetns(ns.a1, 'ip', ['addr', 'add', '10.82.0.99/32', 'dev', `vxc-${s}a1`]);
      try {
        expect(tryInNetns(ns.a1, 'busybox', ['ping', '-c', '1', '-W', '1', '-I', '10.82.0.99', '192.0.2.2'])).toBe(false);
      } finally {
        inNetns(ns.a1, 'ip', ['addr', 'del', '10.82.0.99/32', 'dev', `vxc-${s}a1`]);
      }
    });
  });

  it('drops traffic within a network once vxnet is gone (FORWARD DROP): the rules were what let it through', async () => {
    sh('iptables', ['-w', '-P', 'FORWARD', 'DROP']);
    await removeFirewall();
    expect(ping(ns.a1, '10.80.0.3')).toBe(false);
  });
});

// iptables chains and rules in the test's private netns (read back with `iptables -S`), and
// traffic between two namespace "containers" on one bridge with FORWARD policy DROP and
// bridge-nf-call-iptables=1, as dockerd leaves a real host. Traffic and ordering tests share
// this file so they never run concurrently against the one FORWARD chain.
import { VxnetError } from '../../src/errors';
import {
  closeRtnl,
  ensureBridge,
  ensureBridgeRules,
  ensureFdb,
  ensureVeth,
  listRuleBridges,
  removeBridgeRules,
  removeFirewall,
} from '../../src/dataplane';
import { addNetns, deleteLinks, deleteNetns, inNetns, sh, suffix, trySh, tryInNetns } from '../helpers/netns';

const FAKE_DOCKER_BRIDGE = 'vxtdocker0';

function forward(): string[] {
  return sh('iptables', ['-w', '-S', 'FORWARD']).split('\n').filter((l) => l.startsWith('-A FORWARD'));
}

function chain(name: string): string[] {
  return sh('iptables', ['-w', '-S', name]).split('\n').filter((l) => l.startsWith(`-A ${name}`));
}

function positionOf(lines: string[], target: string): number {
  return lines.findIndex((l) => l.endsWith(`-j ${target}`));
}

/** A stand-in for what dockerd puts in FORWARD: DOCKER-USER first, then docker0's accept rules. */
function addFakeDocker(): void {
  sh('iptables', ['-w', '-N', 'DOCKER-USER']);
  sh('iptables', ['-w', '-A', 'DOCKER-USER', '-j', 'RETURN']);
  sh('iptables', ['-w', '-I', 'FORWARD', '1', '-j', 'DOCKER-USER']);
  sh('iptables', ['-w', '-A', 'FORWARD', '-o', FAKE_DOCKER_BRIDGE, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
  sh('iptables', ['-w', '-A', 'FORWARD', '-i', FAKE_DOCKER_BRIDGE, '!', '-o', FAKE_DOCKER_BRIDGE, '-j', 'ACCEPT']);
}

function removeFakeDocker(): void {
  while (trySh('iptables', ['-w', '-D', 'FORWARD', '-j', 'DOCKER-USER']));
  trySh('iptables', ['-w', '-D', 'FORWARD', '-o', FAKE_DOCKER_BRIDGE, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
  trySh('iptables', ['-w', '-D', 'FORWARD', '-i', FAKE_DOCKER_BRIDGE, '!', '-o', FAKE_DOCKER_BRIDGE, '-j', 'ACCEPT']);
  trySh('iptables', ['-w', '-F', 'DOCKER-USER']);
  trySh('iptables', ['-w', '-X', 'DOCKER-USER']);
}

afterAll(async () => {
  removeFakeDocker();
  await removeFirewall();
  closeRtnl();
});

describe('src/dataplane/firewall', () => {
  let br: string;
  beforeEach(() => {
    br = `vxb-${suffix()}`;
  });
  afterEach(async () => {
    await removeBridgeRules(br);
    removeFakeDocker();
  });

  it('creates the chains, the jumps and an accept rule between the ports of the bridge', async () => {
    await ensureBridgeRules(br, { internal: false });
    const fwd = forward();
    expect(fwd).toContain('-A FORWARD -m comment --comment vxnet -j VXNET-FORWARD');
    expect(fwd).toContain('-A FORWARD -m comment --comment vxnet -j VXNET-ISOLATION');
    expect(positionOf(fwd, 'VXNET-FORWARD')).toBe(fwd.length - 1);
    expect(chain('VXNET-FORWARD')).toContain(`-A VXNET-FORWARD -i ${br} -o ${br} -m comment --comment vxnet -j ACCEPT`);
    expect(chain('VXNET-ISOLATION').filter((l) => l.includes(br))).toEqual([]);
  });

  it('is idempotent: ensuring twice adds nothing', async () => {
    await ensureBridgeRules(br, { internal: true });
    const before = [forward(), chain('VXNET-FORWARD'), chain('VXNET-ISOLATION')];
    await ensureBridgeRules(br, { internal: true });
    expect([forward(), chain('VXNET-FORWARD'), chain('VXNET-ISOLATION')]).toEqual(before);
  });

  it('drops traffic entering or leaving an internal bridge, except between its own ports', async () => {
    await ensureBridgeRules(br, { internal: true });
    const iso = chain('VXNET-ISOLATION');
    expect(iso).toContain(`-A VXNET-ISOLATION -i ${br} ! -o ${br} -m comment --comment vxnet -j DROP`);
    expect(iso).toContain(`-A VXNET-ISOLATION ! -i ${br} -o ${br} -m comment --comment vxnet -j DROP`);
    await ensureBridgeRules(br, { internal: false });
    expect(chain('VXNET-ISOLATION').filter((l) => l.includes(br))).toEqual([]);
  });

  it('puts the isolation jump right after the DOCKER-USER jump, before Docker accept rules', async () => {
    addFakeDocker();
    await ensureBridgeRules(br, { internal: true });
    const fwd = forward();
    expect(positionOf(fwd, 'VXNET-ISOLATION')).toBe(positionOf(fwd, 'DOCKER-USER') + 1);
    expect(positionOf(fwd, 'VXNET-FORWARD')).toBeGreaterThan(positionOf(fwd, 'VXNET-ISOLATION'));
  });

  it('moves a misplaced isolation jump back after DOCKER-USER', async () => {
    await ensureBridgeRules(br, { internal: true });
    addFakeDocker();
    sh('iptables', ['-w', '-D', 'FORWARD', '-m', 'comment', '--comment', 'vxnet', '-j', 'VXNET-ISOLATION']);
    sh('iptables', ['-w', '-A', 'FORWARD', '-m', 'comment', '--comment', 'vxnet', '-j', 'VXNET-ISOLATION']);
    await ensureBridgeRules(br, { internal: true });
    const fwd = forward();
    expect(positionOf(fwd, 'VXNET-ISOLATION')).toBe(positionOf(fwd, 'DOCKER-USER') + 1);
    expect(fwd.filter((l) => l.endsWith('-j VXNET-ISOLATION'))).toHaveLength(1);
  });

  it('keeps the isolation jump first when there is no DOCKER-USER jump', async () => {
    await ensureBridgeRules(br, { internal: true });
    expect(positionOf(forward(), 'VXNET-ISOLATION')).toBe(0);
  });

  it('removeBridgeRules removes every rule of the bridge and resolves when there is none', async () => {
    await ensureBridgeRules(br, { internal: true });
    sh('iptables', ['-w', '-A', 'VXNET-FORWARD', '-i', br, '-o', br, '-m', 'comment', '--comment', 'vxnet', '-j', 'ACCEPT']);
    await removeBridgeRules(br);
    expect(chain('VXNET-FORWARD').filter((l) => l.includes(br))).toEqual([]);
    expect(chain('VXNET-ISOLATION').filter((l) => l.includes(br))).toEqual([]);
    await expect(removeBridgeRules(br)).resolves.toBeUndefined();
  });

  it('listRuleBridges names the bridges that have vxnet rules', async () => {
    const other = `vxb-${suffix()}`;
    try {
      await ensureBridgeRules(br, { internal: false });
      await ensureBridgeRules(other, { internal: true });
      const names = await listRuleBridges();
      expect(names).toEqual(expect.arrayContaining([br, other].sort()));
      await removeBridgeRules(other);
      expect(await listRuleBridges()).not.toContain(other);
    } finally {
      await removeBridgeRules(other);
    }
  });

  it('runs concurrent calls one at a time without duplicating rules', async () => {
    await Promise.all([1, 2, 3, 4].map(() => ensureBridgeRules(br, { internal: true })));
    expect(chain('VXNET-FORWARD').filter((l) => l.includes(br))).toHaveLength(1);
    expect(chain('VXNET-ISOLATION').filter((l) => l.includes(br))).toHaveLength(2);
    expect(forward().filter((l) => l.includes('VXNET-'))).toHaveLength(2);
  });

  it.each(['-j', 'a b', 'x;reboot', '', 'averyveryverylongname', '!eth0'])('refuses the interface name %j', async (name) => {
    const err = await ensureBridgeRules(name, { internal: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VxnetError);
    expect((err as VxnetError).code).toBe('VXNET_ERR_FIREWALL');
  });

  it('removeFirewall removes the jumps and the chains', async () => {
    await ensureBridgeRules(br, { internal: true });
    await removeFirewall();
    expect(forward().filter((l) => l.includes('VXNET-'))).toEqual([]);
    expect(trySh('iptables', ['-w', '-S', 'VXNET-FORWARD'])).toBe(false);
    expect(trySh('iptables', ['-w', '-S', 'VXNET-ISOLATION'])).toBe(false);
    await expect(removeFirewall()).resolves.toBeUndefined();
  });
});

describe('src/dataplane/firewall traffic (FORWARD policy DROP, bridge-nf-call-iptables=1)', () => {
  const s = suffix(6);
  const br = `vxb-${s}`;
  const dockerBr = FAKE_DOCKER_BRIDGE;
  const namespaces: string[] = [];
  let a: string;
  let b: string;
  let outside: string;
  let policyBefore = 'ACCEPT';
  let nfCallBefore = '0';
  let forwardingBefore = '0';

  function ping(from: string, ip: string): boolean {
    return tryInNetns(from, 'busybox', ['ping', '-c', '1', '-W', '1', ip]);
  }

  async function container(ns: string, tag: string, ip: string, mac: string, bridge: string, gw: string): Promise<void> {
    const host = `vxe-${s}${tag}`;
    const peer = `vxc-${s}${tag}`;
    await ensureVeth({ hostName: host, peerName: peer, mtu: 1450, peerMac: mac, bridge });
    // Pinned as a static entry on its port, as the domain does on Join: frames must still be forwarded to it.
    await ensureFdb({ dev: host, mac, master: true });
    sh('ip', ['link', 'set', peer, 'netns', ns]);
    inNetns(ns, 'ip', ['link', 'set', 'lo', 'up']);
    inNetns(ns, 'ip', ['addr', 'add', ip, 'dev', peer]);
    inNetns(ns, 'ip', ['link', 'set', peer, 'up']);
    inNetns(ns, 'ip', ['route', 'add', 'default', 'via', gw]);
  }

  beforeAll(async () => {
    policyBefore = /-P FORWARD (\S+)/.exec(sh('iptables', ['-w', '-S', 'FORWARD']))?.[1] ?? 'ACCEPT';
    nfCallBefore = sh('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables']).trim();
    forwardingBefore = sh('sysctl', ['-n', 'net.ipv4.ip_forward']).trim();
    sh('iptables', ['-w', '-P', 'FORWARD', 'DROP']);
    sh('sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    a = addNetns('vxt-a');
    b = addNetns('vxt-b');
    outside = addNetns('vxt-o');
    namespaces.push(a, b, outside);
    await ensureBridge({ name: br, mtu: 1450, mac: '02:42:0a:50:00:01', addresses: ['10.80.0.1/24'] });
    await ensureBridge({ name: dockerBr, mtu: 1450, mac: '02:42:0a:51:00:01', addresses: ['10.81.0.1/24'] });
    await container(a, 'a', '10.80.0.2/24', '02:42:0a:50:00:02', br, '10.80.0.1');
    await container(b, 'b', '10.80.0.3/24', '02:42:0a:50:00:03', br, '10.80.0.1');
    await container(outside, 'o', '10.81.0.2/24', '02:42:0a:51:00:02', dockerBr, '10.81.0.1');
    addFakeDocker();
  });

  afterAll(async () => {
    for (const ns of namespaces) deleteNetns(ns);
    deleteLinks(`vxe-${s}a`, `vxe-${s}b`, `vxe-${s}o`, br, dockerBr);
    removeFakeDocker();
    await removeBridgeRules(br);
    sh('iptables', ['-w', '-P', 'FORWARD', policyBefore]);
    sh('sysctl', ['-qw', `net.bridge.bridge-nf-call-iptables=${nfCallBefore}`]);
    sh('sysctl', ['-qw', `net.ipv4.ip_forward=${forwardingBefore}`]);
  });

  it('drops frames between two ports of the bridge without vxnet rules', () => {
    expect(ping(a, '10.80.0.3')).toBe(false);
  });

  it('passes them once ensureBridgeRules allows the bridge, and drops them again after removal', async () => {
    await ensureBridgeRules(br, { internal: false });
    expect(ping(a, '10.80.0.3')).toBe(true);
    expect(ping(b, '10.80.0.2')).toBe(true);
    await removeBridgeRules(br);
    expect(ping(a, '10.80.0.3')).toBe(false);
  });

  it("keeps containers of a Docker bridge out of an internal network despite Docker's accept rule", async () => {
    await ensureBridgeRules(br, { internal: false });
    // Not internal: Docker's `-i docker0 ! -o docker0 -j ACCEPT` and its conntrack rule let this through.
    expect(ping(outside, '10.80.0.2')).toBe(true);
    await ensureBridgeRules(br, { internal: true });
    expect(ping(outside, '10.80.0.2')).toBe(false);
    expect(ping(a, '10.81.0.2')).toBe(false);
    expect(ping(a, '10.80.0.3')).toBe(true);
  });
});

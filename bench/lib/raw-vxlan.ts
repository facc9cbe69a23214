// The reference overlay of the datapath benches, made by hand with `ip` and `bridge`: on each of
// two simulated hosts a bridge, a VXLAN device (nolearning, static FDB: what vxnet programs too)
// and one namespace standing in for a container on a veth. No daemon, no store, no rule of vxnet.
//
// Two placements, because that is where vxnet and Docker's overlay differ:
//   'host': bridge and VXLAN in the host's namespace, as vxnet's. With dockerd on the host every
//           bridged frame then walks br_netfilter: conntrack and dockerd's FORWARD chains (an
//           ACCEPT for this bridge is inserted first, as vxnet's own jump sits in DOCKER-USER);
//   'ns':   bridge in a namespace of its own, as Docker's overlay does it: the VXLAN device is
//           created in the host's namespace (its UDP socket stays there, on eth0) and then moved
//           into the bridge's namespace, where no rule and no conntrack hook exists.
import * as fs from 'node:fs';
import { Host, run, describeFailure } from '../../test/helpers/hosts';

export type RawPlacement = 'host' | 'ns';

export interface RawOverlay {
  placement: RawPlacement;
  vni: number;
  /** the "container" namespaces, one per host */
  netns: [string, string];
  ips: [string, string];
  mtu: number;
  /** the namespaces holding the bridges ('ns' placement), else the hosts' own */
  bridgeNetns: [string, string];
}

export interface RawSpec {
  placement: RawPlacement;
  vni: number;
  /** a short tag making every name of this overlay unique (≤ 4 characters) */
  tag: string;
  /** a /24 of the test's own, e.g. 10.233.0 */
  subnet24: string;
  mtu: number;
}

export async function sh(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  const r = await run(cmd, args, { timeoutMs });
  if (r.code !== 0) throw describeFailure(`${cmd} ${args.join(' ')}`, r);
  return r.stdout;
}

export async function deleteNetns(ns: string): Promise<void> {
  if (fs.existsSync(`/run/netns/${ns}`)) await run('ip', ['netns', 'del', ns]);
}

function names(spec: RawSpec) {
  return {
    bridge: `vxt-${spec.tag}br`,
    vxlan: `vxt-${spec.tag}vx`,
    veth: `vxt-${spec.tag}v0`,
    netns: [`vxt-${spec.tag}c1`, `vxt-${spec.tag}c2`] as [string, string],
    bridgeNetns: [`vxt-${spec.tag}b1`, `vxt-${spec.tag}b2`] as [string, string],
  };
}

const mac = (spec: RawSpec, i: number): string => `02:42:0a:${(spec.vni & 0xff).toString(16).padStart(2, '0')}:00:0${i + 1}`;

/** Builds the overlay between hosts[0] and hosts[1]; idempotent over leftovers of a killed run. */
export async function rawOverlayUp(hosts: [Host, Host], spec: RawSpec): Promise<RawOverlay> {
  const n = names(spec);
  const ips: [string, string] = [`${spec.subnet24}.1`, `${spec.subnet24}.2`];
  await rawOverlayDown(hosts, spec);
  for (let i = 0; i < 2; i++) {
    const host = hosts[i].name;
    const peer = hosts[1 - i];
    const ns = n.netns[i];
    // Where the bridge lives: the host itself, or a namespace of its own.
    const brNs = spec.placement === 'host' ? host : n.bridgeNetns[i];
    if (spec.placement === 'ns') await sh('ip', ['netns', 'add', brNs]);
    await sh('ip', ['netns', 'add', ns]);
    for (const x of [ns, ...(spec.placement === 'ns' ? [brNs] : [])]) {
      await sh('ip', ['netns', 'exec', x, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.all.disable_ipv6=1']);
    }
    await sh('ip', ['-n', brNs, 'link', 'add', n.bridge, 'type', 'bridge']);
    // Created in the host (the UDP socket binds there, next to eth0); moved afterwards if needed.
    await sh('ip', ['-n', host, 'link', 'add', n.vxlan, 'mtu', String(spec.mtu), 'type', 'vxlan', 'id', String(spec.vni), 'dstport', '4789', 'local', hosts[i].ip, 'dev', 'eth0', 'nolearning']);
    if (spec.placement === 'ns') await sh('ip', ['-n', host, 'link', 'set', n.vxlan, 'netns', brNs]);
    await sh('ip', ['-n', brNs, 'link', 'set', n.vxlan, 'master', n.bridge, 'up']);
    await sh('ip', ['-n', brNs, 'link', 'add', n.veth, 'mtu', String(spec.mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(spec.mtu), 'netns', ns]);
    await sh('ip', ['-n', brNs, 'link', 'set', n.veth, 'master', n.bridge, 'up']);
    await sh('ip', ['-n', brNs, 'link', 'set', n.bridge, 'up']);
    await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', mac(spec, i)]);
    await sh('ip', ['-n', ns, 'addr', 'add', `${ips[i]}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await sh('bridge', ['-n', brNs, 'fdb', 'append', '00:00:00:00:00:00', 'dev', n.vxlan, 'dst', peer.ip, 'self', 'permanent']);
    await sh('bridge', ['-n', brNs, 'fdb', 'add', mac(spec, 1 - i), 'dev', n.vxlan, 'dst', peer.ip, 'self', 'permanent']);
    if (spec.placement === 'host') {
      await hosts[i].execOk(['iptables', '-w', '-I', 'FORWARD', '1', '-i', n.bridge, '-o', n.bridge, '-j', 'ACCEPT']);
    }
  }
  return {
    placement: spec.placement,
    vni: spec.vni,
    netns: n.netns,
    ips,
    mtu: spec.mtu,
    bridgeNetns: spec.placement === 'ns' ? n.bridgeNetns : [hosts[0].name, hosts[1].name],
  };
}

/** Removes what rawOverlayUp made (by name), whether or not it was complete. */
export async function rawOverlayDown(hosts: [Host, Host], spec: RawSpec): Promise<void> {
  const n = names(spec);
  for (let i = 0; i < 2; i++) {
    const host = hosts[i].name;
    await deleteNetns(n.netns[i]);
    await deleteNetns(n.bridgeNetns[i]);
    for (const dev of [n.vxlan, n.bridge, n.veth]) await run('ip', ['-n', host, 'link', 'del', dev]);
    if (spec.placement === 'host') {
      for (let k = 0; k < 10 && (await hosts[i].exec(['iptables', '-w', '-D', 'FORWARD', '-i', n.bridge, '-o', n.bridge, '-j', 'ACCEPT'])).code === 0; k++) { /* every copy, bounded */ }
    }
  }
}

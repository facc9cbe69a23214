// The network's VXLAN device: one per network per host, a port of the network's bridge.
//
// Design (after flannel's vxlan backend, which moved from L2/L3-miss callouts to static
// entries): nothing is learned or discovered on the wire. The device has learning off and no
// multicast group; the driver watches the store and, for every remote endpoint, writes
//   - one FDB entry `MAC -> remote VTEP` on this device (fdb.ts),
//   - one permanent neighbour `IP -> MAC` (neigh.ts), which the device's `proxy` mode uses to
//     answer ARP/NDP locally instead of sending the request across hosts,
// and for every remote host one all-zero FDB entry `00:00:00:00:00:00 -> VTEP`, so broadcast
// and unknown unicast are copied to each host (head-end replication).
// Cost per remote host: 1 all-zero FDB entry; per remote endpoint: 1 FDB + 1 neighbour entry.
// No per-packet work in userspace, and a restart of vxnet loses nothing (entries live in the
// kernel until the device is deleted).
//
// On the bridge side the VXLAN port has learning off (remote MACs are installed by vxnet, a
// stale learned entry would shadow them, as EVPN setups also do) and neigh_suppress on, so
// ARP for the anycast gateway and for known endpoints is answered on this host and never
// sent over the tunnel.
//
// Some attributes cannot be changed on a live device (changelink refuses a new VNI, port or
// proxy setting, and a local address of another family); rather than track which, ensureVxlan
// compares what exists with what is wanted (vxlanMismatch) and rebuilds the device only when
// they differ. MTU, bridge and port flags are repaired in place.
import { ifla } from 'netlink';
import type { LinkInfo, VxlanSpec } from './types';
import {
  AF_BRIDGE,
  AF_INET,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_PROTINFO,
  attr,
  be16,
  bufferToIp,
  ifinfomsg,
  ipToBuffer,
  nest,
  u32,
  u8,
  str,
} from './nlmsg';
import { RTM, createLink, deleteLink, getRawLink, isErrno, kernelError, request, requireLink, setMaster, setMtu, setUp } from './rtnl';
import { vxError } from '../errors';

const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PROXY = 11;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_LOCAL6 = 17;
const IFLA_BRPORT_LEARNING = 8;
const IFLA_BRPORT_NEIGH_SUPPRESS = 32;

/** The properties of a VXLAN device that can only be set at creation. */
export interface VxlanAttrs {
  vni: number;
  port: number;
  local: string;
  /** ifindex of the underlay device, null when unbound. */
  link: number | null;
  learning: boolean;
  proxy: boolean;
}

export interface EnsureVxlanOptions {
  onRebuild?(reason: string): void;
}

/** Pure: a readable difference ("vni: 1 vs 2"), or null when the device fits. */
export function vxlanMismatch(want: VxlanAttrs, have: VxlanAttrs): string | null {
  const diffs: string[] = [];
  const keys: (keyof VxlanAttrs)[] = ['vni', 'port', 'local', 'link', 'learning', 'proxy'];
  for (const k of keys) {
    if (want[k] !== have[k]) diffs.push(`${k}: ${String(want[k])} vs ${String(have[k])}`);
  }
  return diffs.length ? diffs.join(', ') : null;
}

/** What the kernel reports for an existing VXLAN device. */
export function readVxlanAttrs(data: Buffer): VxlanAttrs {
  const v: ifla.Vxlan = ifla.parseVxlan(data);
  return {
    vni: v.id ?? 0,
    port: v.port ? v.port.readUInt16BE(0) : 0,
    local: bufferToIp(v.local ?? v.local6),
    link: v.link ? v.link : null,
    learning: (v.learning ?? 0) !== 0,
    proxy: (v.proxy ?? 0) !== 0,
  };
}

function wantedAttrs(spec: VxlanSpec, underlay: LinkInfo | null): VxlanAttrs {
  return {
    vni: spec.vni,
    port: spec.port,
    local: bufferToIp(ipToBuffer(spec.local).bytes),
    link: underlay ? underlay.index : null,
    learning: false,
    proxy: true,
  };
}

function vxlanBody(spec: VxlanSpec, want: VxlanAttrs, bridge: LinkInfo): Buffer[] {
  const local = ipToBuffer(spec.local);
  const data = [
    attr(IFLA_VXLAN_ID, u32(want.vni)),
    attr(local.family === AF_INET ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, local.bytes),
    attr(IFLA_VXLAN_PORT, be16(want.port)),
    attr(IFLA_VXLAN_LEARNING, u8(0)),
    attr(IFLA_VXLAN_PROXY, u8(1)),
  ];
  // Bound to the underlay, the device's MTU is checked against it; unbound it comes up at 1500 on a 1500 underlay and full frames are lost.
  if (want.link !== null) data.push(attr(IFLA_VXLAN_LINK, u32(want.link)));
  return [
    attr(IFLA_IFNAME, str(spec.name)),
    attr(IFLA_MTU, u32(spec.mtu)),
    attr(IFLA_MASTER, u32(bridge.index)),
    nest(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, str('vxlan')), nest(IFLA_INFO_DATA, data)]),
  ];
}

async function createVxlan(spec: VxlanSpec, want: VxlanAttrs, bridge: LinkInfo): Promise<void> {
  try {
    await createLink(vxlanBody(spec, want, bridge));
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw kernelError(err, 'create', `vxlan ${spec.name}`);
    if (await getRawLink(spec.name)) return; // created concurrently
    // The name is free, so another device already has this VNI on this UDP port (e.g. Docker's swarm overlay).
    throw vxError('VXNET_ERR_VNI_TAKEN', `could not create vxlan ${spec.name}: VNI ${spec.vni} on UDP port ${spec.port} is used by another device on this host`, err);
  }
}

/** Bridge port flags through AF_BRIDGE RTM_SETLINK; IFLA_PROTINFO must carry NLA_F_NESTED. */
async function setPortFlags(link: LinkInfo, flags: Buffer[]): Promise<void> {
  await request(RTM.SETLINK, Buffer.concat([ifinfomsg({ family: AF_BRIDGE, index: link.index }), nest(IFLA_PROTINFO, flags)]));
}

async function configurePort(link: LinkInfo): Promise<void> {
  const learningOff = attr(IFLA_BRPORT_LEARNING, u8(0));
  try {
    await setPortFlags(link, [learningOff, attr(IFLA_BRPORT_NEIGH_SUPPRESS, u8(1))]);
    return;
  } catch (err) {
    // Kernels before 4.15 lack neigh_suppress; learning off still matters.
    if (!isErrno(err, 'EINVAL', 'EOPNOTSUPP')) throw kernelError(err, 'set bridge port flags on', `vxlan ${link.name}`, link.name);
  }
  try {
    await setPortFlags(link, [learningOff]);
  } catch (err) {
    throw kernelError(err, 'turn off learning on', `vxlan ${link.name}`, link.name);
  }
}

/**
 * Creates the VXLAN device on the bridge, or checks the existing one: rebuilt when its
 * VNI/port/local/underlay/learning/proxy differ, else MTU, bridge and port flags repaired.
 * `onRebuild` hears the difference that caused a rebuild (the caller logs it).
 */
export async function ensureVxlan(spec: VxlanSpec, opts: EnsureVxlanOptions = {}): Promise<void> {
  const bridge = await requireLink(spec.bridge);
  const underlay = spec.underlay ? await requireLink(spec.underlay) : null;
  const want = wantedAttrs(spec, underlay);
  let rebuilt: string | null = null;
  const existing = await getRawLink(spec.name);
  if (existing) {
    const data = existing.linkinfo?.kind === 'vxlan' ? existing.linkinfo.data : undefined;
    rebuilt = data ? vxlanMismatch(want, readVxlanAttrs(data)) : `kind: vxlan vs ${existing.info.kind ?? 'none'}`;
    if (rebuilt) {
      opts.onRebuild?.(rebuilt);
      await deleteLink(spec.name);
    }
  }
  if (!existing || rebuilt) await createVxlan(spec, want, bridge);
  const link = await requireLink(spec.name);
  await setMtu(link, spec.mtu);
  await setMaster(link, bridge);
  await configurePort(link);
  await setUp(link);
}

/** Deletes the device (and with it every FDB entry on it); resolves when it is already gone. */
export async function removeVxlan(name: string): Promise<void> {
  await deleteLink(name);
}

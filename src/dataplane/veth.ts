// The veth pair of one endpoint: the host end sits on the bridge, the peer is handed to
// dockerd in Join, which moves it into the container (vxnet never enters that netns).
import type { LinkInfo, VethSpec } from './types';
import { IFLA_ADDRESS, IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_MASTER, IFLA_MTU, attr, ifinfomsg, macToBuffer, nest, str, u32 } from './nlmsg';
import { drainReaper, reapLink } from './kernel-thread';
import { createLink, deleteLink, getLinkByName, isErrno, kernelError, requireLink, setMac, setMaster, setMtu, setUp } from './rtnl';

/** VETH_INFO_PEER carries a whole struct ifinfomsg before the peer's attributes: not a plain nest. */
const VETH_INFO_PEER = 1;

function vethBody(spec: VethSpec, bridge: LinkInfo): Buffer[] {
  const peer = Buffer.concat([
    ifinfomsg({}),
    attr(IFLA_IFNAME, str(spec.peerName)),
    // Docker ignores the network's MTU option: the container's eth0 keeps the veth's MTU.
    attr(IFLA_MTU, u32(spec.mtu)),
    attr(IFLA_ADDRESS, macToBuffer(spec.peerMac)),
  ]);
  return [
    attr(IFLA_IFNAME, str(spec.hostName)),
    attr(IFLA_MTU, u32(spec.mtu)),
    attr(IFLA_MASTER, u32(bridge.index)),
    nest(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, str('veth')), nest(IFLA_INFO_DATA, [attr(VETH_INFO_PEER, peer)])]),
  ];
}

async function createVeth(spec: VethSpec, bridge: LinkInfo): Promise<void> {
  try {
    await createLink(vethBody(spec, bridge));
    return;
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw kernelError(err, 'create', `veth ${spec.hostName}`);
  }
  // EEXIST with no host end: a stale link holds the peer's name (a pair whose host end was renamed or lost). Clear it once.
  if (await getLinkByName(spec.hostName)) return;
  await deleteLink(spec.peerName);
  try {
    await createLink(vethBody(spec, bridge));
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return;
    throw kernelError(err, 'create', `veth ${spec.hostName}`);
  }
}

/**
 * Creates the pair (both ends at `mtu`, the peer with `peerMac`, left down) or repairs an
 * existing one (retried Join): MTU, bridge, MAC of the peer while it is still in this netns.
 */
export async function ensureVeth(spec: VethSpec): Promise<void> {
  const bridge = await requireLink(spec.bridge);
  let host = await getLinkByName(spec.hostName);
  if (host && host.kind !== 'veth') {
    await deleteLink(spec.hostName);
    host = null;
  }
  if (!host) await createVeth(spec, bridge);
  host = await requireLink(spec.hostName);
  await setMtu(host, spec.mtu);
  await setMaster(host, bridge);
  await setUp(host);
  // Absent once dockerd has moved it into the container; nothing to repair then.
  const peer = await getLinkByName(spec.peerName);
  if (peer && peer.kind === 'veth') {
    await setMtu(peer, spec.mtu);
    await setMac(peer, spec.peerMac);
  }
}

/** Deletes the pair through its host end; resolves when it is already gone. */
export async function removeVeth(name: string): Promise<void> {
  await deleteLink(name);
}


/**
 * Hands the pair to the kernel thread and resolves at once (DeleteEndpoint answers without
 * waiting ~20 ms for the kernel; see kernel-thread.ts). A failure is reported to onReapFailure.
 */
export function releaseVeth(name: string): Promise<void> {
  void reapLink(name);
  return Promise.resolve();
}

/** Waits until every released pair is gone (before a bridge is removed, and at stop). */
export function drainReleasedVeths(): Promise<void> {
  return drainReaper();
}

// Permanent neighbour (ARP/NDP) entries: `IP -> MAC` for remote endpoints, so the VXLAN
// device answers ARP itself (proxy) and nothing is flooded across hosts to resolve them.
import { FlagsNew, rt } from 'netlink';
import { AF_INET, AF_INET6, AF_UNSPEC, NDA_DST, NDA_IFINDEX, NDA_LLADDR, NUD_PERMANENT, attr, bufferToIp, bufferToMac, ipToBuffer, macToBuffer, ndmsg, u32 } from './nlmsg';
import { RTM, dump, getLinkByName, isErrno, kernelError, request, requireLink } from './rtnl';

export interface NeighSpec {
  dev: string;
  ip: string;
  mac: string;
}

export interface NeighEntry {
  ip: string;
  mac: string;
  permanent: boolean;
}

/** Adds or replaces the entry (replace: a re-used IP gets its new MAC in place). */
export async function ensureNeigh(spec: NeighSpec): Promise<void> {
  const dev = await requireLink(spec.dev);
  const ip = ipToBuffer(spec.ip);
  const msg = Buffer.concat([
    ndmsg({ family: ip.family, index: dev.index, state: NUD_PERMANENT, flags: 0 }),
    attr(NDA_DST, ip.bytes),
    attr(NDA_LLADDR, macToBuffer(spec.mac)),
  ]);
  try {
    await request(RTM.NEWNEIGH, msg, FlagsNew.CREATE | FlagsNew.REPLACE);
  } catch (err) {
    throw kernelError(err, 'add', `neighbour ${spec.ip} ${spec.mac} on ${spec.dev}`, spec.dev);
  }
}

/** Removes the entry for `ip`; resolves when it or its device is gone. */
export async function removeNeigh(spec: { dev: string; ip: string }): Promise<void> {
  const dev = await getLinkByName(spec.dev);
  if (!dev) return;
  const ip = ipToBuffer(spec.ip);
  try {
    await request(RTM.DELNEIGH, Buffer.concat([ndmsg({ family: ip.family, index: dev.index, state: 0, flags: 0 }), attr(NDA_DST, ip.bytes)]));
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENODEV')) return;
    throw kernelError(err, 'remove', `neighbour ${spec.ip} on ${spec.dev}`, spec.dev);
  }
}

/** IPv4 and IPv6 neighbour entries of `dev`. */
export async function listNeigh(dev: string): Promise<NeighEntry[]> {
  const link = await requireLink(dev);
  let msgs: rt.Message[];
  try {
    // NDA_IFINDEX: the kernel dumps only this device's entries (neigh_valid_dump_req reads it in
    // strict and legacy mode alike), not every link's (~7 per vxnet network, mostly IPv6 multicast).
    msgs = await dump(RTM.GETNEIGH, Buffer.concat([ndmsg({ family: AF_UNSPEC, index: 0, state: 0, flags: 0 }), attr(NDA_IFINDEX, u32(link.index))]));
  } catch (err) {
    throw kernelError(err, 'list', `neighbours of ${dev}`, dev);
  }
  // An AF_UNSPEC dump also walks the AF_BRIDGE FDB: keep IP families only. NOARP-only entries
  // are the kernel's own multicast mappings (ff02::16 -> 33:33:00:00:00:16); `ip neigh` hides them too.
  return msgs
    .filter((m): m is rt.NeighborMessage =>
      m.kind === 'neighbor' && (m.data.family === AF_INET || m.data.family === AF_INET6) && m.data.ifindex === link.index)
    .filter((m) => m.data.state?.permanent === true || m.data.state?.noarp !== true)
    .map((m) => ({ ip: bufferToIp(m.attrs.dst), mac: bufferToMac(m.attrs.lladdr), permanent: m.data.state?.permanent === true }));
}

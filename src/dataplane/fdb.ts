// Forwarding database entries (AF_BRIDGE neighbours), on two kinds of device:
// - the VXLAN device (NTF_SELF): `MAC -> remote VTEP` unicast entries, plus one all-zero
//   MAC entry per remote VTEP for broadcast/unknown/multicast (head-end replication);
// - a bridge port (NTF_MASTER): a container's MAC pinned to its veth, so a stale learned
//   entry can never send its frames elsewhere after the address moved hosts.
import { FlagsNew, rt } from 'netlink';
import {
  AF_BRIDGE,
  NDA_DST,
  NDA_LLADDR,
  NTF_MASTER,
  NTF_SELF,
  NUD_NOARP,
  NUD_PERMANENT,
  NUD_REACHABLE,
  attr,
  bufferToIp,
  bufferToMac,
  ifinfomsg,
  ipToBuffer,
  macToBuffer,
  ndmsg,
} from './nlmsg';
import { RTM, dump, getLinkByName, isErrno, kernelError, request, requireLink } from './rtnl';

export const ZERO_MAC = '00:00:00:00:00:00';

export interface FdbSpec {
  /** VXLAN device (self entries) or bridge port (`master: true`). */
  dev: string;
  mac: string;
  /** Remote VTEP address; only for entries on a VXLAN device. */
  dst?: string;
  /** Entry in the bridge's FDB for this port (`bridge fdb add … master static`). */
  master?: boolean;
}

export type FdbState = 'permanent' | 'static' | 'dynamic';

export interface FdbEntry {
  mac: string;
  dst: string | null;
  master: boolean;
  self: boolean;
  state: FdbState;
}

/**
 * In the bridge's own FDB NUD_PERMANENT means "local": frames for that MAC are delivered to
 * the host, not forwarded to the port. A static port entry is NUD_NOARP (plus NUD_REACHABLE,
 * as iproute2 sends for `static`). The VXLAN driver requires NUD_PERMANENT or NUD_REACHABLE,
 * and skips NUD_PERMANENT|NUD_NOARP entries when ageing.
 */
function stateFor(spec: FdbSpec): number {
  return spec.master ? NUD_NOARP | NUD_REACHABLE : NUD_PERMANENT | NUD_NOARP;
}

function body(spec: FdbSpec, index: number): Buffer {
  const parts = [
    ndmsg({ family: AF_BRIDGE, index, state: stateFor(spec), flags: spec.master ? NTF_MASTER : NTF_SELF }),
    attr(NDA_LLADDR, macToBuffer(spec.mac)),
  ];
  if (spec.dst !== undefined && !spec.master) parts.push(attr(NDA_DST, ipToBuffer(spec.dst).bytes));
  return Buffer.concat(parts);
}

function describe(spec: FdbSpec): string {
  return `fdb entry ${spec.mac}${spec.dst ? ` dst ${spec.dst}` : ''} on ${spec.dev}`;
}

/**
 * Adds or updates one entry. All-zero MAC entries are appended (one per remote VTEP, they
 * coexist; adding an existing one is a no-op); a unicast MAC is replaced, so a MAC that moved
 * to another VTEP or port is rewritten in place.
 */
export async function ensureFdb(spec: FdbSpec): Promise<void> {
  const dev = await requireLink(spec.dev);
  const zero = spec.mac.toLowerCase() === ZERO_MAC;
  const flags = FlagsNew.CREATE | (zero && !spec.master ? FlagsNew.APPEND : FlagsNew.REPLACE);
  try {
    await request(RTM.NEWNEIGH, body(spec, dev.index), flags);
  } catch (err) {
    throw kernelError(err, 'add', describe(spec), spec.dev);
  }
}

/** Removes one entry (for an all-zero MAC, only the VTEP `dst`); resolves when it or its device is gone. */
export async function removeFdb(spec: FdbSpec): Promise<void> {
  const dev = await getLinkByName(spec.dev);
  if (!dev) return;
  try {
    await request(RTM.DELNEIGH, body(spec, dev.index));
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENODEV')) return;
    throw kernelError(err, 'remove', describe(spec), spec.dev);
  }
}

function stateName(s: rt.NeighborState | undefined): FdbState {
  if (s?.permanent) return 'permanent';
  if (s?.noarp) return 'static';
  return 'dynamic';
}

/** FDB entries of `dev` (self and master), as the kernel reports them. */
export async function listFdb(dev: string): Promise<FdbEntry[]> {
  const link = await requireLink(dev);
  let msgs: rt.Message[];
  try {
    // Only this device's entries, from the kernel: outside strict mode (this socket's) a request
    // the size of an ifinfomsg is read as one, and its ifi_index picks the bridge port
    // (valid_fdb_dump_legacy, what `bridge fdb show dev X` relies on); an ndmsg-sized request
    // gets every device's FDB, ~13 entries per vxnet network (measured with 40), which made each
    // peer pass cost more with every network on the host.
    msgs = await dump(RTM.GETNEIGH, ifinfomsg({ family: AF_BRIDGE, index: link.index }));
  } catch (err) {
    throw kernelError(err, 'list', `fdb of ${dev}`, dev);
  }
  return msgs
    .filter((m): m is rt.NeighborMessage => m.kind === 'neighbor' && m.data.family === AF_BRIDGE && m.data.ifindex === link.index)
    .map((m) => ({
      mac: bufferToMac(m.attrs.lladdr),
      dst: bufferToIp(m.attrs.dst) || null,
      // The bridge reports its entries with NDA_MASTER (the bridge's ifindex), not NTF_MASTER.
      master: m.attrs.master !== undefined || m.data.flags?.master === true,
      self: m.data.flags?.self === true,
      state: stateName(m.data.state),
    }));
}

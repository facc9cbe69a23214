// The network's Linux bridge: one per network per host, holding the anycast gateway address.
import type { BridgeSpec, LinkInfo } from './types';
import { ensureAddrs } from './addr';
import { IFLA_ADDRESS, IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_MTU, attr, ifinfomsg, macToBuffer, nest, str, u32 } from './nlmsg';
import { RTM, createLink, deleteLink, getLinkByName, isErrno, kernelError, request, requireLink, setMac, setMtu, setUp } from './rtnl';

const IFLA_BR_AGEING_TIME = 4;
const IFLA_BR_STP_STATE = 5;
/** The kernel's default FDB ageing, 300 s, in USER_HZ (centiseconds). */
const BRIDGE_AGEING_CS = 30000;
const STP_DISABLED = 0;

/** No STP: it would hold new ports in "listening" for the forward delay (15 s) after each Join. */
function bridgeLinkinfo(): Buffer {
  return nest(IFLA_LINKINFO, [
    attr(IFLA_INFO_KIND, str('bridge')),
    nest(IFLA_INFO_DATA, [attr(IFLA_BR_STP_STATE, u32(STP_DISABLED)), attr(IFLA_BR_AGEING_TIME, u32(BRIDGE_AGEING_CS))]),
  ]);
}

async function createBridge(spec: BridgeSpec): Promise<void> {
  try {
    await createLink([
      attr(IFLA_IFNAME, str(spec.name)),
      attr(IFLA_MTU, u32(spec.mtu)),
      // Pinned, or the bridge takes the lowest MAC among its ports and changes as they come and go.
      attr(IFLA_ADDRESS, macToBuffer(spec.mac)),
      bridgeLinkinfo(),
    ]);
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return; // created concurrently: the checks below fix it up
    throw kernelError(err, 'create', `bridge ${spec.name}`);
  }
}

async function configureBridge(link: LinkInfo): Promise<void> {
  try {
    await request(RTM.NEWLINK, Buffer.concat([ifinfomsg({ index: link.index }), bridgeLinkinfo()]));
  } catch (err) {
    throw kernelError(err, 'configure', `bridge ${link.name}`, link.name);
  }
}

/** Creates the bridge or repairs what exists: kind, STP/ageing, MTU, MAC, exact address set, up. */
export async function ensureBridge(spec: BridgeSpec): Promise<void> {
  let link = await getLinkByName(spec.name);
  if (link && link.kind !== 'bridge') {
    await deleteLink(spec.name);
    link = null;
  }
  if (!link) await createBridge(spec);
  link = await requireLink(spec.name);
  await configureBridge(link);
  await setMtu(link, spec.mtu);
  await setMac(link, spec.mac);
  await ensureAddrs(link, spec.addresses);
  await setUp(link);
}

/** Deletes the bridge (its ports are detached by the kernel); resolves when it is already gone. */
export async function removeBridge(name: string): Promise<void> {
  await deleteLink(name);
}

// This host's side of the tunnels: the VTEP address and the underlay interface whose MTU bounds
// every network's. Resolved once by `vxnet run` at start, and again by `vxnet doctor`, so both
// read the same settings the same way.
import type { Config } from './config';
import { vxError } from './errors';
import * as dataplane from './dataplane';
import { defaultRouteInterface } from './dataplane/routes';
import type { Vtep } from './network/network-driver';
import type { MtuBounds } from './network/options';

/** Bytes VXLAN adds around each frame: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/** Inner MTU when no default route tells the underlay's. */
export const FALLBACK_MTU = 1450;
/** Network MTU on a single host without a default route: Ethernet's. */
export const NO_TUNNEL_FALLBACK_MTU = 1500;
/**
 * Highest MTU of a network with no tunnel: the kernel's limit for bridges and veths
 * (ETH_MAX_MTU), the same that Docker's bridge driver accepts. Without a VTEP a network's frames
 * never leave this host's bridge, so no NIC bounds them: jumbo frames between containers on one
 * host are a real speed-up, and traffic that leaves through the host is routed, where the
 * kernel fragments or answers with "fragmentation needed" exactly as for Docker's bridge.
 */
export const MAX_LINK_MTU = 65535;

/** The interface whose MTU bounds the inner MTU: the VTEP's, else the default route's. */
export function underlayInterface(vtep: Vtep | null): string | null {
  return vtep?.iface ?? defaultRouteInterface();
}

/**
 * Pure: the MTU limits of networks. The 50 bytes of VXLAN are paid only where a tunnel can carry
 * the network (a VTEP): there the underlay bounds every network. Without one (embedded store, no
 * VTEP set) the default is the default-route interface's MTU, and the maximum is the kernel's.
 * VXNET_MTU, when set, is the default; it never lowers what a network may ask for.
 */
export function mtuLimits(configured: number | null, ifaceMtu: number | null, tunnel: boolean): MtuBounds {
  if (tunnel) {
    const ceiling = ifaceMtu !== null ? ifaceMtu - VXLAN_OVERHEAD : FALLBACK_MTU;
    const def = configured ?? ceiling;
    return { default: def, max: Math.max(ceiling, def) };
  }
  const def = configured ?? Math.min(ifaceMtu ?? NO_TUNNEL_FALLBACK_MTU, MAX_LINK_MTU);
  return { default: def, max: MAX_LINK_MTU };
}

/** The MTU limits on this host: the settings and the MTU of the underlay (or default-route) interface. */
export async function resolveMtuBounds(config: Config, vtep: Vtep | null): Promise<MtuBounds> {
  const iface = underlayInterface(vtep);
  const link = iface ? await dataplane.getLinkByName(iface) : null;
  return mtuLimits(config.mtu, link?.mtu ?? null, vtep !== null);
}

/** MTU of networks that set none: the setting, else the underlay's minus VXLAN (tunnel) or the interface's (no tunnel). */
export async function resolveDefaultMtu(config: Config, vtep: Vtep | null): Promise<number> {
  return (await resolveMtuBounds(config, vtep)).default;
}

/**
 * This host's tunnel endpoint. A single host with the embedded store needs none unless one is
 * configured; across hosts it is required: the setting, else the address of the named
 * interface, else of the default-route interface. Every refusal names the setting to change.
 */
export async function resolveVtep(config: Config): Promise<Vtep | null> {
  if (config.store === 'embedded' && !config.vtepIp && !config.vtepInterface) return null;
  const links = await dataplane.listLinks('');
  const addrsOf = async (name: string): Promise<string[]> => {
    const link = links.find((l) => l.name === name);
    return link ? (await dataplane.listAddrs(link)).filter((a) => a.family === 4).map((a) => a.cidr.split('/')[0]) : [];
  };
  if (config.vtepInterface && !links.some((l) => l.name === config.vtepInterface)) {
    const names = links.map((l) => l.name).join(', ');
    throw vxError('VXNET_ERR_BAD_CONFIG', `invalid setting --vtep-interface/VXNET_VTEP_INTERFACE: this host has no interface ${config.vtepInterface} (it has ${names})`);
  }
  if (config.vtepIp) {
    for (const l of links) {
      if ((await addrsOf(l.name)).includes(config.vtepIp)) return { ip: config.vtepIp, iface: config.vtepInterface ?? l.name };
    }
    throw vxError('VXNET_ERR_BAD_CONFIG', `invalid setting --vtep-ip/VXNET_VTEP_IP: no interface of this host has ${config.vtepIp}`);
  }
  const iface = config.vtepInterface ?? defaultRouteInterface();
  if (!iface) {
    throw vxError('VXNET_ERR_BAD_CONFIG', 'no VTEP address: set --vtep-ip/VXNET_VTEP_IP or --vtep-interface/VXNET_VTEP_INTERFACE (this host has no default route)');
  }
  const [ip] = await addrsOf(iface);
  if (ip) return { ip, iface };
  if (config.vtepInterface) throw vxError('VXNET_ERR_BAD_CONFIG', `invalid setting --vtep-interface/VXNET_VTEP_INTERFACE: ${iface} has no IPv4 address`);
  throw vxError('VXNET_ERR_BAD_CONFIG', `no VTEP address: the default-route interface ${iface} has no IPv4 address; set --vtep-ip/VXNET_VTEP_IP or --vtep-interface/VXNET_VTEP_INTERFACE`);
}

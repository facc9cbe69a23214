// This host's side of the tunnels: the VTEP address and the underlay interface whose MTU bounds
// every network's. Resolved once by `vxnet run` at start, and again by `vxnet doctor`, so both
// read the same settings the same way.
import type { Config } from './config';
import { vxError } from './errors';
import * as dataplane from './dataplane';
import { defaultRouteInterface } from './dataplane/routes';
import type { Vtep } from './network/network-driver';

/** Bytes VXLAN adds around each frame: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/** Inner MTU when no default route tells the underlay's. */
export const FALLBACK_MTU = 1450;

/** The interface whose MTU bounds the inner MTU: the VTEP's, else the default route's. */
export function underlayInterface(vtep: Vtep | null): string | null {
  return vtep?.iface ?? defaultRouteInterface();
}

/** Inner MTU: the setting, or the underlay's MTU minus what VXLAN adds. */
export async function resolveDefaultMtu(config: Config, vtep: Vtep | null): Promise<number> {
  if (config.mtu !== null) return config.mtu;
  const iface = underlayInterface(vtep);
  if (!iface) return FALLBACK_MTU;
  const link = await dataplane.getLinkByName(iface);
  return link ? link.mtu - VXLAN_OVERHEAD : FALLBACK_MTU;
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

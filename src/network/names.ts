// Kernel object names and MACs derived from IDs. Linux names are at most IFNAME_MAX (15)
// characters; every vxnet link starts with LINK_PREFIX so orphans can be found by name.
import { createHash } from 'node:crypto';
import { BRIDGE_PREFIX, IFNAME_MAX } from '../dataplane/types';

export { BRIDGE_PREFIX };
export const VXLAN_PREFIX = 'vxv-';
export const VETH_HOST_PREFIX = 'vxe-';
export const VETH_PEER_PREFIX = 'vxc-';
/** Characters of the EndpointID kept in veth names: 40 bits, collisions are not a practical concern. */
const ENDPOINT_ID_CHARS = 10;

export function bridgeName(vni: number): string {
  return checked(`${BRIDGE_PREFIX}${vni}`);
}

export function vxlanName(vni: number): string {
  return checked(`${VXLAN_PREFIX}${vni}`);
}

export function vethNames(endpointId: string): { host: string; peer: string } {
  const short = endpointId.slice(0, ENDPOINT_ID_CHARS);
  return { host: checked(`${VETH_HOST_PREFIX}${short}`), peer: checked(`${VETH_PEER_PREFIX}${short}`) };
}

/**
 * One bridge MAC per network, the same on every host: the anycast gateway then answers with
 * the same MAC wherever a container lives, so a container that moves keeps a valid ARP entry.
 * 02: locally administered; 76:78 = "vx".
 */
export function bridgeMac(vni: number): string {
  return formatMac([0x02, 0x76, 0x78, (vni >> 16) & 0xff, (vni >> 8) & 0xff, vni & 0xff]);
}

/**
 * A container MAC derived from its IPv4 address (02:42:<ip>, as Docker's overlay does). A reused
 * IP then comes back with the same MAC, so neighbours' ARP caches stay right (TESTING.md: with a
 * random MAC a reused IP was unreachable from other hosts for 20+ s). Without IPv4, derived from
 * the EndpointID.
 */
export function endpointMac(ipv4: string | null, endpointId: string): string {
  if (ipv4) {
    const octets = ipv4.split('/')[0].split('.').map(Number);
    return formatMac([0x02, 0x42, ...octets]);
  }
  const h = createHash('sha256').update(endpointId).digest();
  return formatMac([0x02, 0x43, h[0], h[1], h[2], h[3]]);
}

function formatMac(bytes: number[]): string {
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function checked(name: string): string {
  if (name.length > IFNAME_MAX) throw new Error(`interface name ${name} is longer than ${IFNAME_MAX} characters`);
  return name;
}

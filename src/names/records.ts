// names/<lnet>/<EndpointID>: the DNS names one container interface answers to on a vxnet
// network. Written by the endpoint's own host (the only one whose dockerd knows the names),
// deleted when the container stops or leaves the network, and by that host's resync after a
// restart. Every host watches the prefix into its NameTable.
import type { Keys } from '../store/json';

export interface NameRecord {
  host: string;
  containerId: string;
  /** Docker's name of the network on the writing host (for NAME.NETWORK). */
  network: string;
  /** Lower-case, without trailing dot: container name, aliases / DNSNames. */
  names: string[];
  /** Plain addresses (no prefix length), or null. */
  ipv4: string | null;
  ipv6: string | null;
  /**
   * The container's labels: policy rules (vxnet.allow, vxnet.egress) and what `label:K=V`
   * sources of other containers' rules match. Absent in records of earlier versions.
   */
  labels?: Record<string, string>;
}

export function namesPrefix(keys: Keys, lnet?: string): string {
  return lnet === undefined ? `${keys.prefix}names/` : `${keys.prefix}names/${lnet}/`;
}

export function nameKey(keys: Keys, lnet: string, endpointId: string): string {
  return `${namesPrefix(keys, lnet)}${endpointId}`;
}

/** [lnet, endpointId] of a names/ or endpoints/ key under its prefix, or null if malformed. */
export function splitKey(key: string, prefix: string): [string, string] | null {
  if (!key.startsWith(prefix)) return null;
  const parts = key.slice(prefix.length).split('/');
  return parts.length === 2 && parts[0] && parts[1] ? [parts[0], parts[1]] : null;
}

/** DNS names compare case-insensitively and may carry a trailing dot. */
export function normalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

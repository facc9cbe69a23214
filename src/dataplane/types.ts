// The contract between the network domain and the kernel. Every verb is idempotent:
// `ensure…` creates the object or checks that what exists fits (and repairs it),
// `remove…` resolves when the object is already gone.

/** Linux refuses interface names longer than this (IFNAMSIZ - 1). */
export const IFNAME_MAX = 15;

/** Every link vxnet creates starts with this, so orphans can be found and removed. */
export const LINK_PREFIX = 'vx';

/**
 * Every vxnet bridge is named `vxb-<VNI>`: the firewall matches them all with one wildcard
 * (`vxb-+`), which is what keeps its rule count independent of the number of networks.
 */
export const BRIDGE_PREFIX = 'vxb-';

export interface BridgeSpec {
  /** e.g. vxb-4097 */
  name: string;
  mtu: number;
  /** Pinned MAC: without it a bridge takes the lowest MAC among its ports and changes as ports come and go. */
  mac: string;
  /** Addresses in CIDR form, e.g. 10.1.0.1/24 (the anycast gateway). */
  addresses: string[];
}

export interface VethSpec {
  /** Host end, stays in the host netns attached to `bridge`, e.g. vxe-8ef52212ab */
  hostName: string;
  /** Container end, handed to dockerd in Join (SrcName), e.g. vxc-8ef52212ab */
  peerName: string;
  mtu: number;
  /** MAC of the container end. */
  peerMac: string;
  bridge: string;
}

export interface VxlanSpec {
  /** e.g. vxv-4097 */
  name: string;
  vni: number;
  /** UDP destination port, 4789 by default. */
  port: number;
  /** Local VTEP address. */
  local: string;
  /** Underlay device the tunnel is bound to (its MTU bounds ours). */
  underlay?: string;
  mtu: number;
  bridge: string;
}

export interface LinkInfo {
  name: string;
  index: number;
  kind: string | null;
  mtu: number;
  mac: string;
  up: boolean;
  /** ifindex of the bridge this link is attached to, if any. */
  master: number | null;
}

// What the network domain needs from the kernel. src/dataplane implements it for real
// (netlink + iptables); the domain depends only on this shape.
import type { BridgeSpec, VethSpec, VxlanSpec, LinkInfo } from '../dataplane/types';

export interface FdbSpec {
  dev: string;
  mac: string;
  dst?: string;
  master?: boolean;
}

export interface NeighSpec {
  dev: string;
  ip: string;
  mac: string;
}

export interface Dataplane {
  ensureBridge(spec: BridgeSpec): Promise<void>;
  removeBridge(name: string): Promise<void>;
  ensureVeth(spec: VethSpec): Promise<void>;
  removeVeth(name: string): Promise<void>;
  ensureVxlan(spec: VxlanSpec): Promise<void>;
  removeVxlan(name: string): Promise<void>;
  ensureFdb(spec: FdbSpec): Promise<void>;
  removeFdb(spec: FdbSpec): Promise<void>;
  ensureNeigh(spec: NeighSpec): Promise<void>;
  removeNeigh(spec: NeighSpec): Promise<void>;
  ensureBridgeRules(bridge: string, opts: { internal: boolean }): Promise<void>;
  removeBridgeRules(bridge: string): Promise<void>;
  listLinks(prefix: string): Promise<LinkInfo[]>;
}

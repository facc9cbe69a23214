// What the network domain needs from the kernel. src/dataplane implements it for real
// (netlink + iptables); the domain depends only on this shape.
import type { BridgeSpec, VethSpec, VxlanSpec, LinkInfo } from '../dataplane/types';
import type { BridgeRuleOptions, FirewallEntry } from '../dataplane/firewall-sets';
import type { SpoofElement } from '../dataplane/antispoof';

export interface FdbEntry {
  mac: string;
  dst: string | null;
  master: boolean;
  self: boolean;
}

export interface NeighEntry {
  ip: string;
  mac: string;
  permanent: boolean;
}

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
  /** Takes the pair away without waiting for the kernel's slow veth delete (DeleteEndpoint). */
  releaseVeth(name: string): Promise<void>;
  /** Resolves when every released pair is gone (before a bridge goes). */
  drainReleasedVeths(): Promise<void>;
  ensureVxlan(spec: VxlanSpec, opts?: { onRebuild?(reason: string): void }): Promise<void>;
  removeVxlan(name: string): Promise<void>;
  ensureFdb(spec: FdbSpec): Promise<void>;
  removeFdb(spec: FdbSpec): Promise<void>;
  listFdb(dev: string): Promise<FdbEntry[]>;
  ensureNeigh(spec: NeighSpec): Promise<void>;
  removeNeigh(spec: { dev: string; ip: string }): Promise<void>;
  listNeigh(dev: string): Promise<NeighEntry[]>;
  /** vxnet's constant chains, jumps and sets; returns what it changed (or would, dryRun). */
  ensureFirewall(opts: { dryRun: boolean }): Promise<string[]>;
  /** A network's set entries (egress, NAT): written with its bridge, not on every Join. */
  ensureBridgeRules(bridge: string, opts: BridgeRuleOptions): Promise<void>;
  removeBridgeRules(bridge: string, subnet: string | null): Promise<void>;
  listFirewallEntries(): Promise<FirewallEntry[]>;
  removeFirewallEntries(entries: FirewallEntry[]): Promise<void>;
  /** The anti-spoofing table (dataplane/antispoof.ts); returns what it changed (or would, dryRun). */
  ensureAntispoof(opts: { dryRun: boolean }): Promise<string[]>;
  addSpoofElements(elements: SpoofElement[]): Promise<void>;
  /** Idempotent: elements that are not there are fine. */
  removeSpoofElements(elements: SpoofElement[]): Promise<void>;
  listSpoofElements(): Promise<SpoofElement[]>;
  /** Deletes the host's conntrack entries naming one of these addresses; returns how many. */
  forgetFlows(addresses: string[]): Promise<number>;
  listLinks(prefix: string): Promise<LinkInfo[]>;
  /** One link by name (O(1) for the kernel and for us), null when there is none. */
  getLinkByName(name: string): Promise<LinkInfo | null>;
}

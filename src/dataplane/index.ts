// The dataplane's public surface: kernel objects through rtnetlink, firewall through iptables.
export { IFNAME_MAX, LINK_PREFIX } from './types';
export type { BridgeSpec, LinkInfo, VethSpec, VxlanSpec } from './types';
export { closeRtnl, getLinkByName, listLinks, setMtu, setUp } from './rtnl';
export { ensureBridge, removeBridge } from './bridge';
export { ensureVeth, removeVeth } from './veth';
export { ensureVxlan, removeVxlan, vxlanMismatch } from './vxlan';
export type { EnsureVxlanOptions, VxlanAttrs } from './vxlan';
export { ZERO_MAC, ensureFdb, listFdb, removeFdb } from './fdb';
export type { FdbEntry, FdbSpec, FdbState } from './fdb';
export { ensureNeigh, listNeigh, removeNeigh } from './neigh';
export type { NeighEntry, NeighSpec } from './neigh';
export { ensureAddrs, listAddrs } from './addr';
export type { AddrInfo } from './addr';
export { ensureFirewall, removeFirewall } from './firewall';
export { bridgeEntries, ensureBridgeRules, listFirewallEntries, removeBridgeRules, removeFirewallEntries } from './firewall-sets';
export type { BridgeRuleOptions, FirewallEntry } from './firewall-sets';

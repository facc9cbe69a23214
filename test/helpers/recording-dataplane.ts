// A Dataplane that records calls instead of touching the kernel: for unit tests of the protocol
// and validation layers only. The same flows run against the real kernel in test/integration.
import type { Dataplane } from '../../src/network/dataplane-port';
import type { LinkInfo } from '../../src/dataplane/types';
import type { SpoofElement } from '../../src/dataplane/antispoof';

export interface RecordingDataplane extends Dataplane {
  calls: string[];
  links: Map<string, LinkInfo>;
}

export function recordingDataplane(): RecordingDataplane {
  const calls: string[] = [];
  const links = new Map<string, LinkInfo>();
  const spoof = new Map<string, SpoofElement>();
  const link = (name: string, kind: string): void => {
    links.set(name, { name, index: links.size + 1, kind, mtu: 1500, mac: '', up: true, master: null });
  };
  return {
    calls,
    links,
    async ensureBridge(s) {
      calls.push(`ensureBridge ${s.name}`);
      link(s.name, 'bridge');
    },
    async removeBridge(n) {
      calls.push(`removeBridge ${n}`);
      links.delete(n);
    },
    async ensureVeth(s) {
      calls.push(`ensureVeth ${s.hostName}`);
      link(s.hostName, 'veth');
    },
    async removeVeth(n) {
      calls.push(`removeVeth ${n}`);
      links.delete(n);
    },
    async releaseVeth(n) {
      calls.push(`releaseVeth ${n}`);
      links.delete(n);
    },
    async drainReleasedVeths() {},
    async ensureVxlan(s) {
      calls.push(`ensureVxlan ${s.name}`);
      link(s.name, 'vxlan');
    },
    async removeVxlan(n) {
      calls.push(`removeVxlan ${n}`);
      links.delete(n);
    },
    async ensureFdb(s) {
      calls.push(`ensureFdb ${s.dev} ${s.mac}`);
    },
    async removeFdb(s) {
      calls.push(`removeFdb ${s.dev} ${s.mac}`);
    },
    async listFdb() {
      return [];
    },
    async listNeigh() {
      return [];
    },
    async ensureNeigh(s) {
      calls.push(`ensureNeigh ${s.dev} ${s.ip}`);
    },
    async removeNeigh(s) {
      calls.push(`removeNeigh ${s.dev} ${s.ip}`);
    },
    async ensureFirewall() {
      calls.push('ensureFirewall');
      return [];
    },
    async ensureBridgeRules(b) {
      calls.push(`ensureBridgeRules ${b}`);
    },
    async removeBridgeRules(b) {
      calls.push(`removeBridgeRules ${b}`);
    },
    async listFirewallEntries() {
      return [];
    },
    async removeFirewallEntries(entries) {
      calls.push(`removeFirewallEntries ${entries.length}`);
    },
    async ensureAntispoof() {
      calls.push('ensureAntispoof');
      return [];
    },
    async addSpoofElements(elements) {
      for (const e of elements) spoof.set(`${e.set} ${e.port} ${e.mac} ${e.ip}`, e);
      if (elements.length > 0) calls.push(`addSpoofElements ${elements[0].port}`);
    },
    async removeSpoofElements(elements) {
      for (const e of elements) spoof.delete(`${e.set} ${e.port} ${e.mac} ${e.ip}`);
      if (elements.length > 0) calls.push(`removeSpoofElements ${elements[0].port}`);
    },
    async listSpoofElements() {
      return [...spoof.values()];
    },
    async forgetFlows(addresses) {
      if (addresses.length > 0) calls.push(`forgetFlows ${addresses.join(' ')}`);
      return 0;
    },
    async getLinkByName(name) {
      return links.get(name) ?? null;
    },
    async listLinks(prefix) {
      return [...links.values()].filter((l) => l.name.startsWith(prefix));
    },
  };
}

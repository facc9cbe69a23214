// net.bridge.bridge-nf-call-iptables, for information: whether frames crossing a bridge pass
// iptables at all, i.e. whether the FORWARD check matters on this host.
import { ISOLATION_CHAIN } from '../dataplane/firewall';
import { Check, pass } from './check';
import type { DoctorContext } from './context';
import { readOrNull } from './files';

const BRIDGE_NF = '/proc/sys/net/bridge/bridge-nf-call-iptables';

/** Pure: what the sysctl's value means for vxnet's bridges. */
export function bridgeNfDetail(value: string | null): string {
  if (value === null) return 'br_netfilter is not loaded: bridged frames do not pass iptables';
  if (value.trim() === '1') return `net.bridge.bridge-nf-call-iptables=1: bridged frames pass iptables FORWARD (${ISOLATION_CHAIN} lets vxnet's through)`;
  return `net.bridge.bridge-nf-call-iptables=${value.trim()}: bridged frames do not pass iptables`;
}

export const bridgeNfCheck: Check<DoctorContext> = {
  name: 'bridge-nf',
  async run() {
    return pass(bridgeNfDetail(readOrNull(BRIDGE_NF)));
  },
};

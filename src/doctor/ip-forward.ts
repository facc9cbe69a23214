// net.ipv4.ip_forward: without it nothing is routed out of a vxnet network (egress) or into it
// (published ports); traffic within a network is bridged and does not need it. dockerd turns it
// on at start unless it runs with --ip-forward=false; vxnet leaves the host's setting alone.
import { Check, Verdict, pass, warn } from './check';
import type { DoctorContext } from './context';
import { readOrNull } from './files';

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

/** Pure: the verdict for the sysctl's value. */
export function ipForwardVerdict(value: string | null): Verdict {
  if (value?.trim() === '1') return pass('net.ipv4.ip_forward=1: containers reach outside their network (egress, published ports)');
  return warn(
    `net.ipv4.ip_forward=${value?.trim() ?? 'unknown'}: no egress and no published ports for vxnet networks (traffic within a network still works)`,
    'sysctl -w net.ipv4.ip_forward=1 (dockerd sets it unless started with --ip-forward=false)',
  );
}

export const ipForwardCheck: Check<DoctorContext> = {
  name: 'ip-forward',
  async run() {
    return ipForwardVerdict(readOrNull(IP_FORWARD));
  },
};

// Bridged traffic and iptables. dockerd sets the FORWARD policy to DROP and makes bridged
// frames pass iptables (bridge-nf-call-iptables=1): frames between two containers on a vxnet
// bridge are then dropped unless vxnet's VXNET-FORWARD chain, jumped to from FORWARD, lets them
// through. The driver adds both with the first network it builds.
import { FORWARD_CHAIN } from '../dataplane/firewall';
import { listLinks } from '../dataplane';
import { BRIDGE_PREFIX } from '../network/names';
import { Check, fail, pass, warn } from './check';
import type { DoctorContext } from './context';
import { lastLine, runCommand } from './exec';

const IPTABLES_MS = 4000;
/** iptables waits at most this long for the xtables lock (dockerd may hold it). */
const LOCK_WAIT_S = '3';

export interface ForwardState {
  policy: string | null;
  chain: boolean;
  jump: boolean;
}

/** Pure: what `iptables -S` (filter table) says about FORWARD and vxnet's chain. */
export function parseForward(rules: string): ForwardState {
  const lines = rules.split('\n').map((l) => l.trim());
  const policy = lines.map((l) => /^-P FORWARD (\S+)/.exec(l)?.[1]).find((p) => p !== undefined) ?? null;
  return {
    policy,
    chain: lines.includes(`-N ${FORWARD_CHAIN}`),
    jump: lines.some((l) => l.startsWith('-A FORWARD ') && /\s-j (\S+)\s*$/.exec(l)?.[1] === FORWARD_CHAIN),
  };
}

export const forwardCheck: Check<DoctorContext> = {
  name: 'forward',
  timeoutFix: 'iptables is stuck (the xtables lock?): look for a hung iptables process',
  async run(ctx) {
    const r = await runCommand('iptables', ['-w', LOCK_WAIT_S, '-S'], IPTABLES_MS);
    if (!r) return fail('iptables is not installed: vxnet cannot allow traffic across its bridges', 'apt-get install iptables');
    if (r.code !== 0) return fail(`iptables -S failed: ${lastLine(r)}`, 'run vxnet doctor as root');
    const fw = parseForward(r.stdout);
    if (fw.policy !== 'DROP') return pass(`FORWARD policy ${fw.policy ?? 'unknown'}: frames across vxnet bridges are not dropped`);
    if (fw.chain && fw.jump) return pass(`FORWARD policy DROP; ${FORWARD_CHAIN} is in place and jumped to`);
    const missing = fw.chain ? `FORWARD does not jump to ${FORWARD_CHAIN}` : `no ${FORWARD_CHAIN} chain`;
    const bridges = (await listLinks(BRIDGE_PREFIX)).map((l) => l.name);
    if (bridges.length > 0) {
      return fail(
        `FORWARD policy DROP and ${missing}, yet vxnet bridges exist (${bridges.join(', ')}): traffic between their containers is dropped`,
        'start a container on each vxnet network (every Join puts the rules back)',
      );
    }
    if (!(await ctx.driver()).answers) {
      return warn(`FORWARD policy DROP and ${missing}; the driver is not running`, `start vxnet: it adds ${FORWARD_CHAIN} with its first network`);
    }
    return pass(`FORWARD policy DROP; vxnet adds ${FORWARD_CHAIN} with its first network (none here yet)`);
  },
};

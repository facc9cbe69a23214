// vxnet's firewall (src/dataplane/firewall.ts): FORWARD jumps to VXNET-ISOLATION, a constant
// chain that decides every packet entering or leaving a vxnet bridge (same network, replies and
// published ports, egress, isolation from other networks). Without it, on a host where dockerd
// set the FORWARD policy to DROP, containers of one network cannot talk; on a host with policy
// ACCEPT, networks are not isolated. The driver puts it in place at start and on every reconcile.
import { ISOLATION_CHAIN, LEGACY_FORWARD_CHAIN, isolationRules, parseTable } from '../dataplane/firewall';
import { listLinks } from '../dataplane';
import { BRIDGE_PREFIX } from '../network/names';
import { Check, fail, pass, warn } from './check';
import type { DoctorContext } from './context';
import { lastLine, runCommand } from './exec';

const IPTABLES_MS = 4000;
/** iptables waits at most this long for the xtables lock (dockerd may hold it). */
const LOCK_WAIT_S = '3';
const RECONCILE_FIX = 'run `vxnet reconcile` (or restart the driver): it puts the chain back';

export interface ForwardState {
  policy: string | null;
  chain: boolean;
  jump: boolean;
  /** The chain holds exactly the rules this version writes. */
  complete: boolean;
  /** The per-bridge chain of an earlier vxnet is still there. */
  legacy: boolean;
}

/** Pure: what `iptables -S` (filter table) says about FORWARD and vxnet's chain. */
export function parseForward(rules: string): ForwardState {
  const view = parseTable(rules);
  const policy = rules.split('\n').map((l) => /^-P FORWARD (\S+)/.exec(l.trim())?.[1]).find((p) => p !== undefined) ?? null;
  return {
    policy,
    chain: view.chains.has(ISOLATION_CHAIN),
    // From DOCKER-USER (dockerd's chains) or FORWARD (none): see firewall.ts.
    jump: ['FORWARD', 'DOCKER-USER'].some((c) => (view.rules.get(c) ?? []).some((r) => /(?:^|\s)-j (\S+)\s*$/.exec(r)?.[1] === ISOLATION_CHAIN)),
    complete: JSON.stringify(view.rules.get(ISOLATION_CHAIN) ?? []) === JSON.stringify(isolationRules()),
    legacy: view.chains.has(LEGACY_FORWARD_CHAIN),
  };
}

function problem(fw: ForwardState): string | null {
  if (!fw.chain) return `no ${ISOLATION_CHAIN} chain`;
  if (!fw.jump) return `neither FORWARD nor DOCKER-USER jumps to ${ISOLATION_CHAIN}`;
  if (!fw.complete) return `${ISOLATION_CHAIN} does not hold vxnet's ${isolationRules().length} rules`;
  if (fw.legacy) return `the per-bridge chain ${LEGACY_FORWARD_CHAIN} of an earlier vxnet is still there`;
  return null;
}

export const forwardCheck: Check<DoctorContext> = {
  name: 'forward',
  timeoutFix: 'iptables is stuck (the xtables lock?): look for a hung iptables process',
  async run(ctx) {
    const r = await runCommand('iptables', ['-w', LOCK_WAIT_S, '-S'], IPTABLES_MS);
    if (!r) return fail('iptables is not installed: vxnet cannot allow or isolate traffic across its bridges', 'apt-get install iptables ipset');
    if (r.code !== 0) return fail(`iptables -S failed: ${lastLine(r)}`, 'run vxnet doctor as root');
    const fw = parseForward(r.stdout);
    const policy = `FORWARD policy ${fw.policy ?? 'unknown'}`;
    const missing = problem(fw);
    if (!missing) return pass(`${policy}; ${ISOLATION_CHAIN} (${isolationRules().length} rules, whatever the number of networks) is in place and jumped to`);
    const bridges = (await listLinks(BRIDGE_PREFIX)).map((l) => l.name);
    const effect = fw.policy === 'DROP' ? 'traffic between their containers is dropped' : 'their networks are not isolated';
    if (bridges.length > 0) {
      const shown = bridges.length > 5 ? `${bridges.slice(0, 5).join(', ')}, … (${bridges.length})` : bridges.join(', ');
      return fail(`${policy} and ${missing}, yet vxnet bridges exist (${shown}): ${effect}`, RECONCILE_FIX);
    }
    if (!(await ctx.driver()).answers) {
      return warn(`${policy} and ${missing}; the driver is not running`, `start vxnet: it adds ${ISOLATION_CHAIN} when it starts`);
    }
    return fail(`${policy} and ${missing}, though the driver is running`, RECONCILE_FIX);
  },
};

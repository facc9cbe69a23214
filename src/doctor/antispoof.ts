// The anti-spoofing table (src/dataplane/antispoof.ts): every frame from a container's bridge port
// must carry its own MAC and IP. Without the table, a container with NET_RAW/NET_ADMIN can take
// over another's address and poison its peers' ARP caches; with the table but without a port's
// entries, that container is cut off (fail closed). The driver writes it at start and on every
// reconcile.
import { ANTISPOOF_FAMILY, ANTISPOOF_TABLE, chainRules, parseChains } from '../dataplane/antispoof';
import { listLinks } from '../dataplane';
import { VETH_HOST_PREFIX } from '../network/names';
import { Check, fail, pass, warn } from './check';
import type { DoctorContext } from './context';
import { lastLine, runCommand } from './exec';

const NFT_MS = 4000;
const TABLE = `${ANTISPOOF_FAMILY} ${ANTISPOOF_TABLE}`;
const RECONCILE_FIX = 'run `vxnet reconcile` (or restart the driver): it puts the table back';

/** Pure: what is wrong with the table `nft list table` printed (null: nothing). */
export function antispoofProblem(text: string): string | null {
  const chains = parseChains(text);
  const want = chainRules();
  for (const chain of ['prerouting', 'port'] as const) {
    if (!chains.has(chain)) return `table ${TABLE} has no chain ${chain}`;
    if (JSON.stringify(chains.get(chain)) !== JSON.stringify(want[chain])) return `chain ${chain} of table ${TABLE} does not hold vxnet's ${want[chain].length} rules`;
  }
  return null;
}

export const antispoofCheck: Check<DoctorContext> = {
  name: 'antispoof',
  timeoutFix: 'nft does not answer: look for a hung nft process',
  async run(ctx) {
    const r = await runCommand('nft', ['list', 'table', ANTISPOOF_FAMILY, ANTISPOOF_TABLE], NFT_MS);
    if (!r) return fail('nft is not installed: vxnet cannot stop containers from sending with other addresses', 'apt-get install nftables');
    const problem = r.code === 0 ? antispoofProblem(r.stdout) : /No such file or directory/.test(r.stderr) ? `no table ${TABLE}` : null;
    if (r.code !== 0 && problem === null) return fail(`nft list table failed: ${lastLine(r)}`, 'run vxnet doctor as root');
    if (!problem) return pass(`table ${TABLE} is in place: container ports accept only their own MAC and addresses`);
    const ports = (await listLinks(VETH_HOST_PREFIX)).length;
    if (ports > 0) return fail(`${problem}, yet ${ports} container port(s) exist: containers can spoof addresses`, RECONCILE_FIX);
    if (!(await ctx.driver()).answers) return warn(`${problem}; the driver is not running`, `start vxnet: it adds table ${TABLE} when it starts`);
    return fail(`${problem}, though the driver is running`, RECONCILE_FIX);
  },
};

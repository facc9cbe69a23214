// An "outside" machine on the simulated underlay (TESTING.md): a network namespace with a veth
// into the underlay bridge and an underlay address, no route to any container subnet. It is the
// only "outside" a test may use; it never reaches the machine's real network.
import { run, ExecResult, describeFailure } from './hosts';

const UNDERLAY_NS = 'vxt-ul';
const UNDERLAY_BRIDGE = 'br0';

export interface Outside {
  netns: string;
  ip: string;
  exec(cmd: string[], timeoutMs?: number): Promise<ExecResult>;
  down(): Promise<void>;
}

async function ip(args: string[]): Promise<void> {
  const r = await run('ip', args);
  if (r.code !== 0) throw describeFailure(`ip ${args.join(' ')}`, r);
}

/**
 * Creates netns `name` (vxt-…) with eth0 = `cidr` on the underlay (which must be up: a host made
 * by host.sh brings it). `link` names the underlay side (≤ 15 chars). Leftovers are removed first.
 */
export async function upOutside(name: string, cidr: string, link: string): Promise<Outside> {
  await run('ip', ['netns', 'del', name]);
  await run('ip', ['-n', UNDERLAY_NS, 'link', 'del', link]);
  await ip(['netns', 'add', name]);
  await ip(['-n', UNDERLAY_NS, 'link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
  await ip(['-n', UNDERLAY_NS, 'link', 'set', link, 'master', UNDERLAY_BRIDGE, 'up']);
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
  await ip(['-n', name, 'addr', 'add', cidr, 'dev', 'eth0']);
  await ip(['-n', name, 'link', 'set', 'eth0', 'up']);
  return {
    netns: name,
    ip: cidr.split('/')[0],
    exec: (cmd, timeoutMs = 30_000) => run('ip', ['netns', 'exec', name, ...cmd], { timeoutMs }),
    async down() {
      await run('ip', ['netns', 'del', name]);
      await run('ip', ['-n', UNDERLAY_NS, 'link', 'del', link]);
    },
  };
}

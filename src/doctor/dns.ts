// Whether vxnet's names across hosts can work here: Docker forwards names it does not know to
// the daemon's `dns` or else the host's resolv.conf servers, and vxnet can only intercept
// those queries when they leave through its bridge, i.e. when the server is not on loopback
// (Docker queries 127.0.0.53 & co. from the host's namespace, and 20.10 falls back to public
// resolvers when resolv.conf names only loopback servers).
import { Check, pass, warn } from './check';
import type { DoctorContext } from './context';
import { readOrNull } from './files';
import { DOCKER_FALLBACK_DNS, discoverUpstreams, interceptable, resolvConfServers } from '../names/upstreams';

/** systemd-resolved keeps the servers it really uses here. */
const RESOLVED_UPSTREAMS = '/run/systemd/resolve/resolv.conf';

export interface DnsFacts {
  namesOn: boolean;
  /** Upstreams vxnet would intercept (dockerd dns, or resolv.conf, plus VXNET_DNS_UPSTREAMS). */
  interceptable: string[];
  /** nameserver lines of the host's /etc/resolv.conf. */
  hostServers: string[];
  /** Non-loopback servers systemd-resolved uses, if it runs. */
  resolvedServers: string[];
}

/** Pure: the verdict for these facts. */
export function dnsVerdict(f: DnsFacts): ReturnType<typeof pass> {
  if (!f.namesOn) return pass('names across hosts are off (VXNET_NAMES=off, or swarm scope: swarm serves names)');
  if (f.interceptable.length > 0) return pass(`names across hosts: queries Docker forwards to ${f.interceptable.join(', ')} are answered by vxnet`);
  const suggest = f.resolvedServers.length > 0 ? f.resolvedServers.map((s) => `"${s}"`).join(', ') : '"<your LAN resolver>"';
  return warn(
    `the host resolves through loopback only (${f.hostServers.join(', ') || 'no nameserver'}) and dockerd has no dns setting: Docker queries it from the host's namespace, so vxnet cannot answer names of other hosts`,
    `give dockerd a non-loopback resolver: in /etc/docker/daemon.json set "dns": [${suggest}] (or dockerd --dns), then restart dockerd`,
  );
}

export const dnsCheck: Check<DoctorContext> = {
  name: 'names-dns',
  async run(ctx) {
    const hostServers = resolvConfServers(readOrNull('/etc/resolv.conf') ?? '');
    const upstreams = discoverUpstreams({ configured: ctx.config.dnsUpstreams });
    return dnsVerdict({
      namesOn: ctx.config.names,
      // dockerd 20.10's public fallback is interceptable, but 26.1 queries the loopback server
      // instead: for a loopback-only host the advice holds for both versions.
      interceptable: upstreams.filter((u) => !DOCKER_FALLBACK_DNS.includes(u) || ctx.config.dnsUpstreams.includes(u)),
      hostServers,
      resolvedServers: resolvConfServers(readOrNull(RESOLVED_UPSTREAMS) ?? '').filter(interceptable),
    });
  },
};

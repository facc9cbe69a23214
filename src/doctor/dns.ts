// How names across hosts reach the containers on this host. The main path needs nothing from
// the host: vxnet's rules in each container's namespace send its queries to vxnet before
// Docker's resolver. The second path (queries Docker forwards to its upstreams, intercepted on
// vxnet's bridges; used in the first moments after a container starts) works only when those
// upstreams are not on loopback: Docker queries 127.0.0.53 & co. from the host's namespace
// (26.1), and 20.10 falls back to public resolvers when resolv.conf names only loopback ones.
// Such a host is reported, with the setting that makes outside names and the second path work.
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
  /** VXNET_DNS_PORT: where the containers' queries go first. */
  frontPort: number;
}

/** Pure: the verdict for these facts. */
export function dnsVerdict(f: DnsFacts): ReturnType<typeof pass> {
  if (!f.namesOn) return pass('names across hosts are off (VXNET_NAMES=off, or swarm scope: swarm serves names)');
  const first = `names across hosts: containers' queries reach vxnet before Docker's resolver (port ${f.frontPort} on each vxnet gateway)`;
  if (f.interceptable.length > 0) return pass(`${first}; queries Docker forwards to ${f.interceptable.join(', ')} are answered by vxnet too`);
  const suggest = f.resolvedServers.length > 0 ? f.resolvedServers.map((s) => `"${s}"`).join(', ') : '"<your LAN resolver>"';
  return warn(
    `${first}; but the host resolves through loopback only (${f.hostServers.join(', ') || 'no nameserver'}) and dockerd has no dns setting: for outside names dockerd 26.1 queries it from the host's namespace and 20.10 falls back to 8.8.8.8/8.8.4.4, and in the first moments after a container starts only Docker's local names answer`,
    `to give containers a resolver they can reach and vxnet a second path: in /etc/docker/daemon.json set "dns": [${suggest}] (or dockerd --dns), then restart dockerd`,
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
      frontPort: ctx.config.dnsPort,
    });
  },
};

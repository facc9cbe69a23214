// Which resolvers this host's containers forward to, as Docker picks them: the daemon's `dns`
// (`--dns` on dockerd's command line or "dns" in daemon.json) if set, otherwise the host's
// /etc/resolv.conf; plus any per-container `--dns` (learned when containers start) and what
// VXNET_DNS_UPSTREAMS lists. Only IPv4, non-loopback servers can be intercepted: Docker queries
// a loopback server from the host's namespace, never through vxnet's bridge (`vxnet doctor`
// says what to set on such hosts).
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { isIPv4 } from 'node:net';

export function interceptable(ip: string): boolean {
  return isIPv4(ip) && !ip.startsWith('127.') && ip !== '0.0.0.0';
}

/** `nameserver` lines of a resolv.conf text. */
export function resolvConfServers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

/** `--dns X` / `--dns=X` of a dockerd command line (NUL-separated, as in /proc/PID/cmdline). */
export function dockerdDnsArgs(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--dns' && i + 1 < argv.length) out.push(argv[++i]);
    else if (argv[i].startsWith('--dns=')) out.push(argv[i].slice('--dns='.length));
  }
  return out;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** --dns of the dockerd processes in this network namespace (the host's own dockerd). */
function localDockerdDns(): string[] {
  let myNet: string;
  try {
    myNet = readlinkSync('/proc/self/ns/net');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'dockerd') continue;
      if (readlinkSync(`/proc/${pid}/ns/net`) !== myNet) continue;
      out.push(...dockerdDnsArgs(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')));
    } catch {
      /* the process ended meanwhile */
    }
  }
  return out;
}

function daemonJsonDns(path: string): string[] {
  try {
    const dns = (JSON.parse(readOr(path) || '{}') as { dns?: unknown }).dns;
    return Array.isArray(dns) ? dns.filter((d): d is string => typeof d === 'string') : [];
  } catch {
    return [];
  }
}

export interface UpstreamSources {
  configured: string[];
  resolvConf?: string;
  daemonJson?: string;
}

/**
 * What dockerd 20.10 gives containers when the host's resolv.conf names only loopback servers
 * (libnetwork's resolvconf defaults); 26.1 instead forwards to the loopback server from the
 * host's namespace, which vxnet cannot intercept.
 */
export const DOCKER_FALLBACK_DNS = ['8.8.8.8', '8.8.4.4'];

/** Pure: the servers Docker forwards to, from dockerd's dns setting or the host's resolv.conf. */
export function dockerUpstreams(daemonDns: string[], hostServers: string[]): string[] {
  if (daemonDns.length) return daemonDns;
  const usable = hostServers.filter(interceptable);
  return usable.length || hostServers.length === 0 ? usable : DOCKER_FALLBACK_DNS;
}

function configuredHere(src: Omit<UpstreamSources, 'configured'>): { daemon: string[]; host: string[] } {
  return {
    daemon: [...localDockerdDns(), ...daemonJsonDns(src.daemonJson ?? '/etc/docker/daemon.json')],
    host: resolvConfServers(readOr(src.resolvConf ?? '/etc/resolv.conf')),
  };
}

/**
 * The servers this host configures for containers without --dns, unfiltered: the daemon's dns,
 * else the host's resolv.conf (a loopback server among them means Docker treats this host
 * specially, version by version: the caller then leaves the container's names to Docker).
 */
export function configuredUpstreams(src: Omit<UpstreamSources, 'configured'> = {}): string[] {
  const { daemon, host } = configuredHere(src);
  return daemon.length ? daemon : host;
}

/** The servers Docker's resolver will forward to on this host, that vxnet can intercept. */
export function discoverUpstreams(src: UpstreamSources): string[] {
  const { daemon, host } = configuredHere(src);
  return [...new Set([...src.configured, ...dockerUpstreams(daemon, host)])].filter(interceptable);
}

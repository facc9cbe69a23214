// nat rules that turn vxnet into the resolver of its containers' forwarded queries.
//
// Docker's embedded resolver (127.0.0.11) forwards a name it does not know to the container's
// external servers from the container's namespace, so the query leaves through vxnet's bridge
// toward the server's real address. In the host's nat PREROUTING these rules catch exactly that
// traffic (in on a vxnet bridge, to a known upstream, udp/tcp 53) and REDIRECT it to a local
// port of vxnet's, one port per upstream (the port tells vxnet where to forward):
//   PREROUTING -j VXNET-DNS
//   VXNET-DNS: -i vxb-+ -d UPSTREAM -p udp --dport 53 -j REDIRECT --to-ports PORT   (and tcp)
// Traffic to other servers is left alone. The chain is rewritten as a whole whenever the set
// of upstreams changes, and removed when the driver stops (a dead vxnet must not swallow the
// containers' queries); after a crash the next start rewrites it.
import { execFile } from 'node:child_process';
import { isIPv4 } from 'node:net';
import { vxError } from '../errors';
import { BRIDGE_PREFIX } from '../network/names';

export const DNS_CHAIN = 'VXNET-DNS';
const NAT = ['-t', 'nat'];
const COMMENT = ['-m', 'comment', '--comment', 'vxnet'];
const JUMP = ['PREROUTING', ...COMMENT, '-j', DNS_CHAIN];
const EXIT_NOT_FOUND = 1;

export interface DnsRedirect {
  upstream: string;
  port: number;
}

function iptables(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile('iptables', ['-w', ...NAT, ...args], { encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (!err) return resolve({ code: 0, stderr });
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'number') return resolve({ code, stderr });
      reject(vxError('VXNET_ERR_FIREWALL', `could not run iptables: ${err.message}`, err));
    });
  });
}

async function must(args: string[], action: string): Promise<void> {
  const r = await iptables(args);
  if (r.code !== 0) throw vxError('VXNET_ERR_FIREWALL', `could not ${action}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

let queue: Promise<unknown> = Promise.resolve();
function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn);
  queue = next.catch(() => undefined);
  return next;
}

/** The rule arguments of one redirect (pure, unit-tested). */
export function redirectRules(r: DnsRedirect): string[][] {
  if (!isIPv4(r.upstream)) throw vxError('VXNET_ERR_FIREWALL', `refusing a DNS redirect for non-IPv4 upstream ${JSON.stringify(r.upstream)}`);
  if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535) throw vxError('VXNET_ERR_FIREWALL', `refusing a DNS redirect to port ${r.port}`);
  return (['udp', 'tcp'] as const).map((proto) => [
    '-i', `${BRIDGE_PREFIX}+`, '-d', `${r.upstream}/32`, '-p', proto, '--dport', '53', ...COMMENT, '-j', 'REDIRECT', '--to-ports', String(r.port),
  ]);
}

/** Makes VXNET-DNS hold exactly these redirects, and PREROUTING jump to it. */
export function syncDnsIntercept(redirects: DnsRedirect[]): Promise<void> {
  const rules = redirects.flatMap(redirectRules);
  return exclusive(async () => {
    const created = await iptables(['-N', DNS_CHAIN]);
    if (created.code !== 0 && created.code !== EXIT_NOT_FOUND) throw vxError('VXNET_ERR_FIREWALL', `could not create nat chain ${DNS_CHAIN}: ${created.stderr.trim()}`);
    await must(['-F', DNS_CHAIN], `flush nat chain ${DNS_CHAIN}`);
    for (const r of rules) await must(['-A', DNS_CHAIN, ...r], `add a DNS redirect to ${DNS_CHAIN}`);
    if ((await iptables(['-C', ...JUMP])).code !== 0) await must(['-A', ...JUMP], `jump from nat PREROUTING to ${DNS_CHAIN}`);
  });
}

/** Removes the jump and the chain; nothing to do when they are gone already. */
export function removeDnsIntercept(): Promise<void> {
  return exclusive(async () => {
    while ((await iptables(['-D', ...JUMP])).code === 0) {
      /* a jump added twice by a crash between -C and -A goes too */
    }
    await iptables(['-F', DNS_CHAIN]);
    await iptables(['-X', DNS_CHAIN]);
  });
}

// What a test host's dockerd and kernel say about containers and vxnet's links.
import type { Host } from './hosts';

/** A container's address (or MAC) on one network, as dockerd reports it. */
export function containerIp(host: Host, net: string, container: string, field: 'IPAddress' | 'MacAddress' = 'IPAddress'): Promise<string> {
  return host.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").${field}}}`, container]);
}

/** Names of the host's links that vxnet owns (vxb-, vxv-, vxe-, vxc-). */
export async function vxLinks(host: Host): Promise<string[]> {
  const out = await host.execOk(['ip', '-o', 'link', 'show']);
  return out
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter((n) => n.startsWith('vx'));
}

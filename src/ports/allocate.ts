// Which host ports to try, in order, for one request (pure). The kernel decides whether a port
// is really free (bind() on a reservation socket); this only orders the candidates and skips
// those vxnet itself already holds.
import { vxError } from '../errors';
import { ANY_IPV4, PortBinding, PortRequest } from './bindings';

export interface PortRange {
  min: number;
  max: number;
}

/**
 * Candidates for a request. Fixed port: that port. Range A-B: A..B in order (the first free one,
 * as Docker does). Any port (HostPort 0): the ephemeral range, starting at `cursor` and wrapping
 * around, so consecutive containers get consecutive ports instead of retrying the same busy ones
 * (dockerd's allocator also continues after the last port it gave).
 */
export function* candidatePorts(req: PortRequest, ephemeral: PortRange, cursor: number, held: readonly PortBinding[]): Generator<number> {
  // proto/port → addresses held on it: one lookup per candidate, however many ports are held.
  const byPort = new Map<string, string[]>();
  for (const h of held) {
    if (h.proto !== req.proto) continue;
    byPort.set(String(h.hostPort), [...(byPort.get(String(h.hostPort)) ?? []), h.hostIp]);
  }
  const taken = (port: number): boolean =>
    (byPort.get(String(port)) ?? []).some((ip) => ip === req.hostIp || ip === ANY_IPV4 || req.hostIp === ANY_IPV4);
  if (req.hostPort !== 0) {
    for (let p = req.hostPort; p <= req.hostPortEnd; p++) if (!taken(p)) yield p;
    return;
  }
  const size = ephemeral.max - ephemeral.min + 1;
  const start = cursor >= ephemeral.min && cursor <= ephemeral.max ? cursor : ephemeral.min;
  for (let i = 0; i < size; i++) {
    const p = ephemeral.min + ((start - ephemeral.min + i) % size);
    if (!taken(p)) yield p;
  }
}

/** Parses /proc/sys/net/ipv4/ip_local_port_range ("32768\t60999"). */
export function parsePortRange(text: string): PortRange {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  const min = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2]) : NaN;
  if (!(min >= 1 && max <= 65535 && min <= max)) throw vxError('VXNET_ERR_KERNEL', `invalid ephemeral port range ${JSON.stringify(text)}`);
  return { min, max };
}

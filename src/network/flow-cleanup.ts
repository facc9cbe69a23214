// A gone endpoint's flows leave the host's conntrack table (dataplane/conntrack.ts says why), in
// the background, in the dataplane's kernel thread: every dump walks the kernel's whole conntrack
// hash (13-16 ms on this 2-vCPU machine even when the table is empty) inside its syscalls, and
// DeleteEndpoint is on the path of every `docker rm` and `docker run --rm`. What must not happen is a cleanup deleting the fresh flows of the next
// container given the same address here: CreateEndpoint of an address waits for that address's
// cleanup (settled) before its container can send anything. Best effort, as in Docker: a failure
// is logged, and the entries time out by themselves.
import type { Logger } from '../log';
import type { Dataplane } from './dataplane-port';
import { canonicalIp } from './address-claims';

export class FlowCleanup {
  /** Canonical address -> the cleanup that covers it (the latest one). */
  private readonly pending = new Map<string, Promise<void>>();

  constructor(private readonly deps: { dataplane: Pick<Dataplane, 'forgetFlows'>; log: Logger }) {}

  /** Starts forgetting the flows of a gone endpoint's addresses (CIDR or bare). */
  start(endpointId: string, addresses: Array<string | null>): void {
    const ips = addresses.map((a) => canonicalIp(a)).filter((a): a is string => a !== null);
    if (ips.length === 0) return;
    const before = ips.map((ip) => this.pending.get(ip)).filter((p): p is Promise<void> => p !== undefined);
    // One after another for an address (gone, back and gone again): the map keeps the last.
    const forget = (): Promise<void> =>
      this.deps.dataplane.forgetFlows(ips).then(
        (n) => {
          if (n > 0) this.deps.log.debug({ endpoint: endpointId, flows: n }, 'conntrack entries removed');
        },
        (err: unknown) => this.deps.log.warn({ err, endpoint: endpointId, addresses: ips }, 'could not remove conntrack entries; they time out by themselves'),
      );
    const run = before.length ? Promise.all(before).then(forget) : forget();
    for (const ip of ips) this.pending.set(ip, run);
    void run.finally(() => {
      for (const ip of ips) if (this.pending.get(ip) === run) this.pending.delete(ip);
    });
  }

  /** Resolves once no cleanup of these addresses (canonical) is running. */
  async settled(ips: Array<string | null>): Promise<void> {
    await Promise.all(ips.map((ip) => (ip ? this.pending.get(ip) : undefined)));
  }

  /** Every cleanup started so far has ended (tests, the driver's stop). */
  async drain(): Promise<void> {
    await Promise.all(this.pending.values());
  }
}

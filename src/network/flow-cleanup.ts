// A gone endpoint's flows leave the host's conntrack table (dataplane/conntrack.ts says why), in
// the background, in the dataplane's kernel thread: every dump walks the kernel's whole conntrack
// hash (13-16 ms on this 2-vCPU machine even when the table is empty) inside its syscalls, and
// DeleteEndpoint is on the path of every `docker rm` and `docker run --rm`.
//
// One walk at a time, and the addresses of endpoints that go while a walk runs wait for the next
// one together: `docker compose down` or a CI job's teardown removes its containers at once, and
// ten of them then cost two walks, not ten (a dump matches any number of addresses).
//
// What must not happen is a cleanup deleting the fresh flows of the next container given the same
// address here: CreateEndpoint of an address waits for that address's cleanup (settled) before
// its container can send anything. Best effort, as in Docker: a failure is logged, and the
// entries time out by themselves.
import type { Logger } from '../log';
import type { Dataplane } from './dataplane-port';
import { canonicalIp } from './address-claims';

interface Walk {
  ips: Set<string>;
  done: Promise<void>;
}

export class FlowCleanup {
  /** Canonical addresses of gone endpoints waiting for the next walk, and those endpoints (the log). */
  private readonly queued = new Set<string>();
  private readonly queuedEndpoints = new Set<string>();
  private running: Walk | null = null;

  constructor(private readonly deps: { dataplane: Pick<Dataplane, 'forgetFlows'>; log: Logger }) {}

  /** Starts forgetting the flows of a gone endpoint's addresses (CIDR or bare). */
  start(endpointId: string, addresses: Array<string | null>): void {
    const ips = addresses.map((a) => canonicalIp(a)).filter((a): a is string => a !== null);
    if (ips.length === 0) return;
    for (const ip of ips) this.queued.add(ip);
    this.queuedEndpoints.add(endpointId);
    if (!this.running) this.walk();
  }

  private walk(): void {
    const ips = new Set(this.queued);
    const endpoints = [...this.queuedEndpoints];
    const addresses = [...ips];
    this.queued.clear();
    this.queuedEndpoints.clear();
    const done = this.deps.dataplane
      .forgetFlows(addresses)
      .then(
        (n) => {
          if (n > 0) this.deps.log.debug({ endpoints, flows: n }, 'conntrack entries removed');
        },
        (err: unknown) => this.deps.log.warn({ err, endpoints, addresses }, 'could not remove conntrack entries; they time out by themselves'),
      )
      .finally(() => {
        this.running = null;
        if (this.queued.size) this.walk();
      });
    this.running = { ips, done };
  }

  private covers(ip: string | null): boolean {
    return ip !== null && (this.queued.has(ip) || (this.running?.ips.has(ip) ?? false));
  }

  /** Resolves once no cleanup of these addresses (canonical) is queued or running. */
  async settled(ips: Array<string | null>): Promise<void> {
    while (this.running && ips.some((ip) => this.covers(ip))) await this.running.done;
  }

  /** Every cleanup started so far has ended (tests; the driver's stop drains the kernel thread). */
  async drain(): Promise<void> {
    while (this.running) await this.running.done;
  }
}

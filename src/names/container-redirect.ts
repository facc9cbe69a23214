// Sends each local container's DNS queries to vxnet first (rules in its namespace:
// dataplane/netns-dns.ts), so that vxnet answers the network's names — every address of an alias
// shared across hosts, in rotating order — and Docker's resolver gets everything else unchanged.
//
// Why here and not in Join: Join must not wait on dockerd, and Docker writes its own resolver
// rules into the namespace after Join (20.10 and 26.1 both insert their jump at the top of nat
// OUTPUT when the sandbox's resolver starts, which follows the driver's Join). The publisher
// sees every container start / network connect on dockerd's event stream, after Docker's rules
// exist, and hands the container here; vxnet's rules then go in above Docker's. Every later
// event of the container checks again (and puts vxnet's rules back on top if Docker re-inserted
// its jump). Work is one container at a time per container, never inside a plugin call.
//
// Until the rules are in (a few ms after `start`), Docker answers alone: local names, and
// names across hosts through the interception of its forwarded queries (dns-intercept.ts).
import type { Logger } from '../log';
import { ensureNetnsDns, removeNetnsDns } from '../dataplane/netns-dns';
import { KeyedLock } from '../network/keyed-lock';

/** Docker's rules may lag the event by a little: look again this often, this many times. */
const NO_DOCKER_RULES_RETRY_MS = 200;
const NO_DOCKER_RULES_TRIES = 5;

export interface RunningContainer {
  id: string;
  sandboxKey: string;
  /** The container's vxnet networks on this host that have a gateway, in Docker's order. */
  networks: Array<{ gateway: string; ip: string }>;
}

export class ContainerRedirects {
  private readonly lock = new KeyedLock();
  /** container id -> SandboxKey, for the clean stop. */
  private readonly placed = new Map<string, string>();
  private closed = false;

  constructor(
    private readonly port: number,
    private readonly log: Logger,
  ) {}

  /** Queries of this container go to vxnet on its first vxnet network with a gateway. */
  ensure(c: RunningContainer): Promise<void> {
    const first = c.networks[0];
    if (!first || !c.sandboxKey) return Promise.resolve();
    return this.lock.run(c.id, async () => {
      if (this.closed) return;
      try {
        let r = await ensureNetnsDns(c.sandboxKey, { gateway: first.gateway, containerIp: first.ip, port: this.port });
        for (let i = 1; r === 'no-docker-resolver' && i < NO_DOCKER_RULES_TRIES && !this.closed; i++) {
          await new Promise((res) => setTimeout(res, NO_DOCKER_RULES_RETRY_MS));
          r = await ensureNetnsDns(c.sandboxKey, { gateway: first.gateway, containerIp: first.ip, port: this.port });
        }
        if (r === 'no-docker-resolver') return void this.log.info({ container: c.id }, 'no Docker resolver rules in the container namespace; its names left to Docker');
        this.placed.set(c.id, c.sandboxKey);
        if (r === 'added') this.log.debug({ container: c.id, gateway: first.gateway }, 'container DNS redirected to vxnet');
      } catch (err) {
        // The namespace may be gone already (the container stopped meanwhile).
        this.log.debug({ err, container: c.id }, 'could not redirect the container DNS');
      }
    });
  }

  /** The container stopped: its namespace and rules are gone with it. */
  forget(id: string): void {
    this.placed.delete(id);
  }

  /** Clean stop: give every container's queries back to Docker alone. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.placed].map(([id, key]) =>
        this.lock.run(id, () => removeNetnsDns(key)).catch((err: unknown) => this.log.debug({ err, container: id }, 'could not remove the container DNS redirect')),
      ),
    );
    this.placed.clear();
  }
}

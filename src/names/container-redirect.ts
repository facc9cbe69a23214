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
import { interceptable } from './upstreams';

/** Docker's rules may lag the event by a little: look again this often, this many times. */
const NO_DOCKER_RULES_RETRY_MS = 200;
const NO_DOCKER_RULES_TRIES = 5;

export interface RunningContainer {
  id: string;
  sandboxKey: string;
  /** The container's vxnet networks on this host that have a gateway, in Docker's order. */
  networks: Array<{ gateway: string; ip: string }>;
  /** Its own `--dns` servers (empty: the daemon's or the host's, as Docker picks them). */
  dns: string[];
  /**
   * Docker's resolver may know names vxnet does not (another network, a --link), or would not
   * forward at all (internal network): every query vxnet does not answer goes to Docker.
   */
  dockerOnly: boolean;
}

/** Docker's resolver asks at most this many external servers (libnetwork's maxExtDNS). */
const MAX_EXT_DNS = 3;

/**
 * Where vxnet may send an outside name of this container itself, as Docker's resolver would
 * (same servers, same order), or null when only Docker may handle it. Pure.
 *
 * Why: handing such a name back to Docker put a second resolver hop on it (0.3-0.5 ms of each
 * outside lookup, measured with tcpdump); Docker would only forward it unchanged to these
 * servers. Which names qualify is decided per query (answer.ts: `direct`).
 */
export function directUpstreams(c: Pick<RunningContainer, 'dns' | 'dockerOnly'>, hostUpstreams: string[]): string[] | null {
  if (c.dockerOnly) return null;
  const servers = (c.dns.length ? c.dns : hostUpstreams).slice(0, MAX_EXT_DNS);
  // A loopback server is asked from the host by Docker (and skipped by 26.1 for some
  // containers): leave such hosts to Docker.
  return servers.length && servers.every(interceptable) ? servers : null;
}

export class ContainerRedirects {
  private readonly lock = new KeyedLock();
  /** container id -> SandboxKey (for the clean stop) and its address (the direct map's key). */
  private readonly placed = new Map<string, { key: string; ip: string }>();
  /** Address of a redirected container -> the servers vxnet may send its outside names to. */
  private readonly direct = new Map<string, string[]>();
  private closed = false;

  constructor(
    private readonly port: number,
    private readonly log: Logger,
    /** The servers Docker's resolver uses on this host for containers without --dns. */
    private readonly hostUpstreams: () => string[],
  ) {}

  /** For the front listener: where the outside names of the container at `ip` may go, or null. */
  directFor(ip: string): string[] | null {
    return this.direct.get(ip) ?? null;
  }

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
        const before = this.placed.get(c.id);
        this.placed.set(c.id, { key: c.sandboxKey, ip: first.ip });
        if (r === 'added') this.log.debug({ container: c.id, gateway: first.gateway }, 'container DNS redirected to vxnet');
        if (before && before.ip !== first.ip) this.direct.delete(before.ip);
        const servers = directUpstreams(c, this.hostUpstreams());
        if (servers) this.direct.set(first.ip, servers);
        else this.direct.delete(first.ip);
      } catch (err) {
        // The namespace may be gone already (the container stopped meanwhile).
        this.log.debug({ err, container: c.id }, 'could not redirect the container DNS');
      }
    });
  }

  /** The container stopped: its namespace and rules are gone with it. */
  forget(id: string): void {
    // Under the container's lock: an ensure still running for it finishes first.
    void this.lock.run(id, async () => {
      const was = this.placed.get(id);
      this.placed.delete(id);
      if (was) this.direct.delete(was.ip);
    });
  }

  /** Clean stop: give every container's queries back to Docker alone. */
  async close(): Promise<void> {
    this.closed = true;
    this.direct.clear();
    await Promise.all(
      [...this.placed].map(([id, { key }]) =>
        this.lock.run(id, () => removeNetnsDns(key)).catch((err: unknown) => this.log.debug({ err, container: id }, 'could not remove the container DNS redirect')),
      ),
    );
    this.placed.clear();
  }
}

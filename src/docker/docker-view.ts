// What the local dockerd believes exists, for reconcile: which of vxnet's Docker networks it
// still has, and which endpoints (containers) are attached to them. dockerd may be down or not
// up yet: then the answer is null, and reconcile deletes nothing on missing information.
import { existsSync } from 'node:fs';
import type Dockerode from 'dockerode';

/**
 * A dockerode client; the package is loaded at the first one, not at start. Loading it loads
 * docker-modem's ssh2 (for ssh:// daemons, which vxnet never uses) with its WebAssembly
 * poly1305: +3 MB of RSS and +16 MB of external memory in a process that never asks dockerd
 * anything, as on a host without a dockerd socket (callers check for the socket first).
 */
export function newDocker(opts: Dockerode.DockerOptions): Dockerode {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Docker = require('dockerode') as typeof Dockerode;
  return new Docker(opts);
}

/** dockerd answering slower than this is treated as not there (reconcile retries later). */
const DOCKER_TIMEOUT_MS = 5000;

export interface DockerView {
  /** NetworkIDs (of those asked about) that dockerd still has. */
  networks: Set<string>;
  /** EndpointIDs attached to those networks on this host. */
  endpoints: Set<string>;
}

export interface DockerClient {
  view(networkIds: string[]): Promise<DockerView | null>;
}

/** VXNET_DOCKER_HOST as a socket path (unix:// optional), or dockerd's default socket. */
export function dockerSocketPath(dockerHost: string | null): string {
  return dockerHost ? dockerHost.replace(/^unix:\/\//, '') : '/var/run/docker.sock';
}

export interface DockerVersion {
  version: string;
  apiVersion: string;
}

/** What dockerd says it is (`vxnet doctor`); rejects when it does not answer within timeoutMs. */
export async function dockerVersion(dockerHost: string | null, timeoutMs = DOCKER_TIMEOUT_MS): Promise<DockerVersion> {
  const v = await newDocker({ socketPath: dockerSocketPath(dockerHost), timeout: timeoutMs }).version();
  return { version: v.Version, apiVersion: v.ApiVersion };
}

export function dockerClient(dockerHost: string | null): DockerClient {
  const socketPath = dockerSocketPath(dockerHost);
  let docker: Dockerode | null = null;
  return {
    async view(networkIds) {
      const view: DockerView = { networks: new Set(), endpoints: new Set() };
      // No socket: the ping below could only fail (and would load dockerode for nothing).
      if (!docker && !existsSync(socketPath)) return null;
      docker ??= newDocker({ socketPath, timeout: DOCKER_TIMEOUT_MS });
      try {
        await docker.ping();
      } catch {
        return null;
      }
      for (const id of networkIds) {
        let info: { Id: string; Containers?: Record<string, { EndpointID?: string }> };
        try {
          info = (await docker.getNetwork(id).inspect()) as typeof info;
        } catch (err) {
          if ((err as { statusCode?: number }).statusCode === 404) continue; // gone
          return null; // unsure: decide nothing
        }
        view.networks.add(info.Id);
        for (const c of Object.values(info.Containers ?? {})) if (c.EndpointID) view.endpoints.add(c.EndpointID);
      }
      return view;
    },
  };
}

/**
 * Whether dockerd lists an endpoint on its network (policy's fail-closed scope, src/policy):
 * 'no-network' when dockerd does not have the network at all, 'unreachable' when it does not
 * answer (then nothing is concluded).
 */
export function endpointLookup(dockerHost: string | null): (networkId: string, endpointId: string) => Promise<'listed' | 'unlisted' | 'no-network' | 'unreachable'> {
  let docker: Dockerode | null = null;
  return async (networkId, endpointId) => {
    let info: { Containers?: Record<string, { EndpointID?: string }> };
    try {
      docker ??= newDocker({ socketPath: dockerSocketPath(dockerHost), timeout: DOCKER_TIMEOUT_MS });
      info = (await docker.getNetwork(networkId).inspect()) as typeof info;
    } catch (err) {
      return (err as { statusCode?: number }).statusCode === 404 ? 'no-network' : 'unreachable';
    }
    return Object.values(info.Containers ?? {}).some((c) => c.EndpointID === endpointId) ? 'listed' : 'unlisted';
  };
}

/** A dockerd to ask: a configured VXNET_DOCKER_HOST, or the default socket present (a host without Docker has none). */
export function dockerdPresent(dockerHost: string | null): boolean {
  return dockerHost !== null || existsSync(dockerSocketPath(null));
}

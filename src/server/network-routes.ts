// NetworkDriver.* (PROTOCOL.md §2). Handlers only translate between the wire and the domain.
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from './app';
import { poster } from './route';
import type { CreateEndpointRequest, CreateNetworkRequest, IpamData } from '../network/network-driver';
import { networkSchemas as s } from './schemas';

interface Ids {
  NetworkID: string;
  EndpointID: string;
}

export function registerNetworkRoutes(app: FastifyInstance, deps: AppDeps): void {
  const { driver, ports } = deps;
  const post = poster(app, 'NetworkDriver');

  post('GetCapabilities', null, async () => ({ Scope: deps.scope, ConnectivityScope: 'global' }));
  post<{ NetworkID: string; Options: Record<string, unknown>; IPv4Data?: IpamData[] | null; IPv6Data?: IpamData[] | null }>(
    'CreateNetwork',
    s.CreateNetwork,
    async (b) => {
      const req: CreateNetworkRequest = { NetworkID: b.NetworkID, Options: b.Options, IPv4Data: b.IPv4Data ?? [], IPv6Data: b.IPv6Data ?? [] };
      await driver.createNetwork(req);
      return {};
    },
  );
  post<{ NetworkID: string }>('DeleteNetwork', s.NetworkOnly, async (b) => {
    await driver.deleteNetwork(b.NetworkID);
    return {};
  });
  post<CreateEndpointRequest>('CreateEndpoint', s.CreateEndpoint, async (b) =>
    driver.createEndpoint({ ...b, Interface: b.Interface ?? null, Options: b.Options ?? {} }),
  );
  post<Ids>('DeleteEndpoint', s.Endpoint, async (b) => {
    // Revoke comes first when dockerd sends it; this covers one that was lost.
    await ports?.revoke(b.EndpointID);
    await driver.deleteEndpoint(b.NetworkID, b.EndpointID);
    return {};
  });
  post<Ids>('EndpointOperInfo', s.Endpoint, async (b) => ({ Value: await driver.endpointInfo(b.NetworkID, b.EndpointID) }));
  post<Ids>('Join', s.Join, async (b) => driver.join(b.NetworkID, b.EndpointID));
  post<Ids>('Leave', s.Endpoint, async (b) => {
    await driver.leave(b.NetworkID, b.EndpointID);
    // From dockerd 29 Revoke is sent only when the gateway role moves: a Leave ends the ports too.
    await ports?.revoke(b.EndpointID);
    return {};
  });
  // Sent after Join for the container's gateway endpoint, with the container's -p/-P in Options.
  post<Ids & { Options?: Record<string, unknown> | null }>('ProgramExternalConnectivity', s.ProgramExternalConnectivity, async (b) => {
    if (ports) await ports.program(b.NetworkID, b.EndpointID, b.Options);
    else await driver.requireEndpoint(b.NetworkID, b.EndpointID);
    return {};
  });
  post<Ids>('RevokeExternalConnectivity', s.Endpoint, async (b) => {
    await ports?.revoke(b.EndpointID);
    return {};
  });
  post<{ NetworkID: string; Options?: Record<string, string> | null }>('AllocateNetwork', s.AllocateNetwork, async (b) => ({
    // The options returned replace the user's -o on every worker: echo them (PROTOCOL.md §4).
    Options: b.Options ?? {},
  }));
  post<{ NetworkID: string }>('FreeNetwork', s.NetworkOnly, async () => ({}));
  post('DiscoverNew', s.Discover, async () => ({}));
  post('DiscoverDelete', s.Discover, async () => ({}));
  post('GwAllocCheck', s.GwAllocCheck, async () => ({ SkipIPv4: false, SkipIPv6: false }));
}

// The call sequences dockerd makes (PROTOCOL.md §4), for driving the plugin as dockerd would.
import { NET_ID, PluginApp } from './plugin-app';

const GW = { RequestAddressType: 'com.docker.network.gateway' };

export interface CreatedNetwork {
  networkId: string;
  poolId: string;
  gateway: string;
}

export async function createNetwork(
  p: PluginApp,
  opts: { networkId?: string; subnet?: string; ipRange?: string; gateway?: string; aux?: Record<string, string>; generic?: Record<string, string>; internal?: boolean } = {},
): Promise<CreatedNetwork> {
  const networkId = opts.networkId ?? NET_ID;
  const spaces = await ok(p, '/IpamDriver.GetDefaultAddressSpaces');
  const space = spaces.LocalDefaultAddressSpace as string;
  const pool = await ok(p, '/IpamDriver.RequestPool', { AddressSpace: space, Pool: opts.subnet ?? '', SubPool: opts.ipRange ?? '', Options: {}, V6: false });
  const poolId = pool.PoolID as string;
  const gw = await ok(p, '/IpamDriver.RequestAddress', { PoolID: poolId, Address: opts.gateway ?? '', Options: GW });
  const aux: Record<string, string> = {};
  for (const [name, ip] of Object.entries(opts.aux ?? {})) {
    const r = await ok(p, '/IpamDriver.RequestAddress', { PoolID: poolId, Address: ip, Options: null });
    aux[name] = r.Address as string;
  }
  const options: Record<string, unknown> = { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': opts.generic ?? {} };
  if (opts.internal) options['com.docker.network.internal'] = true;
  await ok(p, '/NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: options,
    IPv4Data: [{ AddressSpace: space, Pool: pool.Pool, Gateway: gw.Address, AuxAddresses: aux }],
    IPv6Data: [],
  });
  return { networkId, poolId, gateway: gw.Address as string };
}

export async function removeNetwork(p: PluginApp, net: CreatedNetwork, aux: string[] = []): Promise<void> {
  await ok(p, '/IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: net.gateway.split('/')[0] });
  for (const a of aux) await ok(p, '/IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: a });
  await ok(p, '/IpamDriver.ReleasePool', { PoolID: net.poolId });
  await ok(p, '/NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
}

export interface Container {
  endpointId: string;
  address: string;
  mac: string;
  join: Record<string, unknown>;
}

export async function runContainer(p: PluginApp, net: CreatedNetwork, endpointId: string, ip = ''): Promise<Container> {
  const addr = await ok(p, '/IpamDriver.RequestAddress', { PoolID: net.poolId, Address: ip, Options: null });
  const ce = await ok(p, '/NetworkDriver.CreateEndpoint', {
    NetworkID: net.networkId,
    EndpointID: endpointId,
    Interface: { Address: addr.Address, AddressIPv6: '', MacAddress: '' },
    Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] },
  });
  const join = await ok(p, '/NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: endpointId, SandboxKey: '/var/run/docker/netns/2e2749e3b70f', Options: {} });
  await ok(p, '/NetworkDriver.ProgramExternalConnectivity', { NetworkID: net.networkId, EndpointID: endpointId, Options: {} });
  const mac = ((ce.Interface as Record<string, string> | undefined)?.MacAddress ?? '') as string;
  return { endpointId, address: addr.Address as string, mac, join };
}

export async function stopContainer(p: PluginApp, net: CreatedNetwork, c: Container): Promise<void> {
  const ids = { NetworkID: net.networkId, EndpointID: c.endpointId };
  await ok(p, '/NetworkDriver.RevokeExternalConnectivity', ids);
  await ok(p, '/NetworkDriver.Leave', ids);
  await ok(p, '/NetworkDriver.DeleteEndpoint', ids);
  await ok(p, '/IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: c.address.split('/')[0] });
}

export async function ok(p: PluginApp, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const r = await p.call(path, body);
  if (r.status !== 200 || r.body.Err || r.body.Error) throw new Error(`${path} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

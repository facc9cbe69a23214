// A "container" without dockerd: a network namespace wired exactly the way dockerd wires one
// (PROTOCOL.md §3): IPAM RequestAddress, CreateEndpoint, Join, then move SrcName into the
// sandbox, rename it eth0, set the MAC, the address, bring it up, default route via Gateway.
// Teardown runs dockerd's stop sequence: Revoke, Leave, move back, DeleteEndpoint, ReleaseAddress.
import { randomBytes } from 'node:crypto';
import { run } from './hosts';
import { pluginOk } from './plugin-client';

export interface FakeNetwork {
  networkId: string;
  poolId: string;
  gateway: string;
}

export interface FakeContainer {
  netns: string;
  hostNetns: string;
  socket: string;
  net: FakeNetwork;
  endpointId: string;
  /** ip/len */
  address: string;
  mac: string;
  srcName: string;
}

export function newId(): string {
  return randomBytes(32).toString('hex');
}

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** `docker network create -d vxnet --ipam-driver vxnet --subnet S`, as the calls dockerd makes. */
export async function createFakeNetwork(socket: string, subnet: string, generic: Record<string, string> = {}): Promise<FakeNetwork> {
  const networkId = newId();
  const space = (await pluginOk(socket, 'IpamDriver.GetDefaultAddressSpaces')).LocalDefaultAddressSpace as string;
  const pool = await pluginOk(socket, 'IpamDriver.RequestPool', { AddressSpace: space, Pool: subnet, SubPool: '', Options: {}, V6: false });
  const gw = await pluginOk(socket, 'IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
  await pluginOk(socket, 'NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': generic },
    IPv4Data: [{ AddressSpace: space, Pool: pool.Pool, Gateway: gw.Address }],
    IPv6Data: [],
  });
  return { networkId, poolId: pool.PoolID as string, gateway: gw.Address as string };
}

export async function removeFakeNetwork(socket: string, net: FakeNetwork): Promise<void> {
  await pluginOk(socket, 'IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: net.gateway.split('/')[0] });
  await pluginOk(socket, 'IpamDriver.ReleasePool', { PoolID: net.poolId });
  await pluginOk(socket, 'NetworkDriver.DeleteNetwork', { NetworkID: net.networkId });
}

/** Starts a fake container in a host (hostNetns: the host's netns name, socket: its driver socket). */
export async function startFakeContainer(
  hostNetns: string,
  socket: string,
  net: FakeNetwork,
  name: string,
  ip = '',
  /** CreateEndpoint Options: endpoint driver options (e.g. vxnet.allow), as `--driver-opt` sends them. */
  options: Record<string, unknown> = {},
): Promise<FakeContainer> {
  const endpointId = newId();
  const addr = await pluginOk(socket, 'IpamDriver.RequestAddress', { PoolID: net.poolId, Address: ip, Options: null });
  const address = addr.Address as string;
  const ce = await pluginOk(socket, 'NetworkDriver.CreateEndpoint', {
    NetworkID: net.networkId,
    EndpointID: endpointId,
    Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
    Options: options,
  });
  const mac = (ce.Interface as { MacAddress: string }).MacAddress;
  const join = await pluginOk(socket, 'NetworkDriver.Join', { NetworkID: net.networkId, EndpointID: endpointId, SandboxKey: `/run/netns/${name}`, Options: {} });
  const srcName = (join.InterfaceName as { SrcName: string }).SrcName;
  await sh('ip', ['netns', 'add', name]);
  // IPv4-only endpoint: no IPv6 link-local chatter from the container (dockerd disables IPv6 in
  // containers whose networks have none), so tests can count what crosses the tunnel.
  await sh('ip', ['netns', 'exec', name, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.all.disable_ipv6=1']);
  await sh('ip', ['-n', hostNetns, 'link', 'set', srcName, 'netns', name]);
  await sh('ip', ['-n', name, 'link', 'set', srcName, 'name', 'eth0']);
  await sh('ip', ['-n', name, 'link', 'set', 'eth0', 'address', mac]);
  await sh('ip', ['-n', name, 'addr', 'add', address, 'dev', 'eth0']);
  await sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  await sh('ip', ['-n', name, 'link', 'set', 'eth0', 'up']);
  if (typeof join.Gateway === 'string') await sh('ip', ['-n', name, 'route', 'add', 'default', 'via', join.Gateway]);
  await pluginOk(socket, 'NetworkDriver.ProgramExternalConnectivity', { NetworkID: net.networkId, EndpointID: endpointId, Options: {} });
  return { netns: name, hostNetns, socket, net, endpointId, address, mac, srcName };
}

export async function stopFakeContainer(c: FakeContainer): Promise<void> {
  const ids = { NetworkID: c.net.networkId, EndpointID: c.endpointId };
  await pluginOk(c.socket, 'NetworkDriver.RevokeExternalConnectivity', ids);
  await pluginOk(c.socket, 'NetworkDriver.Leave', ids);
  // dockerd renames the interface back and returns it to the host before DeleteEndpoint.
  await run('ip', ['-n', c.netns, 'link', 'set', 'eth0', 'down']);
  await run('ip', ['-n', c.netns, 'link', 'set', 'eth0', 'name', c.srcName]);
  await run('ip', ['-n', c.netns, 'link', 'set', c.srcName, 'netns', c.hostNetns]);
  await run('ip', ['netns', 'del', c.netns]);
  await pluginOk(c.socket, 'NetworkDriver.DeleteEndpoint', ids);
  await pluginOk(c.socket, 'IpamDriver.ReleaseAddress', { PoolID: c.net.poolId, Address: c.address.split('/')[0] });
}

/** Pings from a fake container; true when at least one reply came back. */
export async function pingFrom(c: FakeContainer, ip: string, count = 1): Promise<boolean> {
  const r = await run('ip', ['netns', 'exec', c.netns, 'busybox', 'ping', '-c', String(count), '-W', '2', ip], { timeoutMs: 20_000 });
  return r.code === 0;
}

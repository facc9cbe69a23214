// The MTU a network may have: VXLAN's 50 bytes only where a tunnel can carry the network.
import { mtuLimits, MAX_LINK_MTU } from '../../src/underlay';
import { resolveNetworkOptions } from '../../src/network/options';

describe('src/underlay.ts mtuLimits', () => {
  it.each([
    // configured, interface MTU, tunnel → default, max
    ['tunnel over a 1500 underlay', null, 1500, true, 1450, 1450],
    ['tunnel over a 1400 underlay', null, 1400, true, 1350, 1350],
    ['tunnel over a 9000 underlay', null, 9000, true, 8950, 8950],
    ['tunnel, no interface known', null, null, true, 1450, 1450],
    ['tunnel, VXNET_MTU below the underlay', 1300, 1500, true, 1300, 1450],
    ['single host on a 1500 NIC', null, 1500, false, 1500, MAX_LINK_MTU],
    ['single host on a 1400 NIC', null, 1400, false, 1400, MAX_LINK_MTU],
    ['single host without a default route', null, null, false, 1500, MAX_LINK_MTU],
    ['single host, VXNET_MTU 9000', 9000, 1500, false, 9000, MAX_LINK_MTU],
  ])('%s', (_name, configured, ifaceMtu, tunnel, def, max) => {
    expect(mtuLimits(configured, ifaceMtu, tunnel)).toEqual({ default: def, max });
  });
});

describe('src/network/options.ts MTU bounds', () => {
  const withMtu = (mtu: string, ipv6 = false): Record<string, unknown> => ({
    'com.docker.network.generic': { 'com.docker.network.driver.mtu': mtu },
    'com.docker.network.enable_ipv6': ipv6,
  });
  const single = mtuLimits(null, 1400, false);
  const tunnel = mtuLimits(null, 1400, true);

  it('takes the interface MTU itself, and jumbo frames, on a single host', () => {
    expect(resolveNetworkOptions({}, single).mtu).toBe(1400);
    expect(resolveNetworkOptions(withMtu('1400'), single).mtu).toBe(1400);
    expect(resolveNetworkOptions(withMtu('1500'), single).mtu).toBe(1500);
    expect(resolveNetworkOptions(withMtu('65535'), single).mtu).toBe(65535);
  });

  it('keeps room for VXLAN where there is a tunnel', () => {
    expect(resolveNetworkOptions({}, tunnel).mtu).toBe(1350);
    expect(resolveNetworkOptions(withMtu('1350'), tunnel).mtu).toBe(1350);
    expect(() => resolveNetworkOptions(withMtu('1400'), tunnel)).toThrow('option com.docker.network.driver.mtu=1400 is outside 576..1350');
  });

  it.each([
    ['65536', single, false, 'option com.docker.network.driver.mtu=65536 is outside 576..65535'],
    ['575', single, false, 'option com.docker.network.driver.mtu=575 is outside 576..65535'],
    ['1279', single, true, 'option com.docker.network.driver.mtu=1279 is outside 1280..65535'],
    ['15x', single, false, 'option com.docker.network.driver.mtu="15x" is not a whole number'],
  ])('refuses MTU %s', (mtu, bounds, ipv6, msg) => {
    expect(() => resolveNetworkOptions(withMtu(mtu, ipv6), bounds)).toThrow(msg);
  });
});

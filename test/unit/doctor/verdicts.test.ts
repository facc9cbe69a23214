// The pure parts of each doctor check: what a finding means and which fix goes with it.
import { mtuVerdict } from '../../../src/doctor/underlay';
import { moduleState, probeVerdict } from '../../../src/doctor/kernel';
import type { ProbeStep } from '../../../src/doctor/kernel-probe';
import { parseForward } from '../../../src/doctor/forward';
import { antispoofProblem } from '../../../src/doctor/antispoof';
import { chainRules } from '../../../src/dataplane/antispoof';
import { ipForwardVerdict } from '../../../src/doctor/ip-forward';
import { isolationRules } from '../../../src/dataplane/firewall';
import { bridgeNfDetail } from '../../../src/doctor/bridge-nf';
import { socketDirVerdict, socketVerdict } from '../../../src/doctor/socket';
import { latencySummary } from '../../../src/doctor/store';
import { dfPayload, pathVerdict, peerVteps, PathResult } from '../../../src/doctor/vtep-path';
import { parseRtt, pingCommand } from '../../../src/doctor/ping';
import { poolsVerdict } from '../../../src/doctor/pools';
import { readRoutes4 } from '../../../src/dataplane/routes';

describe('src/doctor/underlay.ts mtuVerdict', () => {
  const u = { vtep: { ip: '10.0.0.1', iface: 'eth1' }, iface: 'eth1', ifaceMtu: 1500, innerMtu: 1450 };

  it('passes when the underlay carries inner MTU + 50', () => {
    expect(mtuVerdict(u, true)).toMatchObject({ status: 'PASS', detail: 'eth1 MTU 1500 carries VXNET_MTU 1450 + 50 bytes of VXLAN' });
  });

  it('fails when it does not, saying what to lower or raise', () => {
    const v = mtuVerdict({ ...u, innerMtu: 1480 }, true);
    expect(v.status).toBe('FAIL');
    expect(v.detail).toBe('eth1 MTU 1500 is below VXNET_MTU 1480 + 50 = 1530: full-size frames would be dropped');
    expect(v.fix).toBe('lower VXNET_MTU to 1450, or raise the MTU of eth1 to 1530 (ip link set dev eth1 mtu 1530)');
  });

  it('warns when a VTEP has no interface to check against', () => {
    expect(mtuVerdict({ ...u, iface: null, ifaceMtu: null }, false)).toMatchObject({
      status: 'WARN',
      detail: expect.stringContaining('the fallback MTU 1450'),
    });
  });

  it('passes a single host: no tunnel, no overhead to carry', () => {
    expect(mtuVerdict({ vtep: null, iface: null, ifaceMtu: null, innerMtu: 1500 }, false)).toEqual({
      status: 'PASS',
      detail: 'single host (no VTEP): no VXLAN overhead; networks get MTU 1500 unless they set one',
    });
  });

  it('fails when the interface is gone', () => {
    expect(mtuVerdict({ ...u, ifaceMtu: null }, false).status).toBe('FAIL');
  });
});

describe('src/doctor/kernel.ts', () => {
  const ok = (object: ProbeStep['object'], action: ProbeStep['action'] = 'create'): ProbeStep => ({ object, action, error: null });

  it('passes when every object was created and deleted', () => {
    const steps = [ok('bridge'), ok('veth'), ok('vxlan'), ok('vxlan', 'delete'), ok('veth', 'delete'), ok('bridge', 'delete')];
    expect(probeVerdict(steps).status).toBe('PASS');
  });

  it.each([
    ['bridge', /modprobe bridge/],
    ['veth', /modprobe veth/],
    ['vxlan', /modprobe vxlan/],
  ] as const)('names the module to load when a %s cannot be created', (object, fix) => {
    const steps: ProbeStep[] = [{ object, action: 'create', error: 'EOPNOTSUPP: operation not supported' }];
    const v = probeVerdict(steps);
    expect(v.status).toBe('FAIL');
    expect(v.detail).toBe(`could not create a ${object} in a throwaway network namespace: EOPNOTSUPP: operation not supported`);
    expect(v.fix).toMatch(fix);
  });

  it('fails a probe that stopped early without an error', () => {
    expect(probeVerdict([ok('bridge')]).status).toBe('FAIL');
  });

  it('tells loaded, built-in and absent modules apart', () => {
    const proc = 'vxlan 147456 0 - Live 0x0\nbridge 311296 1 br_netfilter, Live 0x0\n';
    expect(moduleState('vxlan', proc, true)).toBe('loaded');
    expect(moduleState('veth', proc, true)).toBe('built in');
    expect(moduleState('veth', proc, false)).toBe('not loaded');
    expect(moduleState('vxlan', null, false)).toBe('built in');
  });
});

describe('src/doctor/forward.ts parseForward', () => {
  const chain = ['-N VXNET-ISOLATION', ...isolationRules().map((r) => `-A VXNET-ISOLATION ${r}`)];

  it('reads the policy, the chain, its rules and the jump', () => {
    const rules = ['-P INPUT ACCEPT', '-P FORWARD DROP', '-N DOCKER-USER', ...chain, '-A FORWARD -j DOCKER-USER',
      '-A FORWARD -m comment --comment vxnet -j VXNET-ISOLATION'].join('\n');
    expect(parseForward(rules)).toEqual({ policy: 'DROP', chain: true, jump: true, complete: true, legacy: false });
  });

  it('notices a chain nobody jumps to, a chain with other rules, an old per-bridge chain, and no chain at all', () => {
    expect(parseForward(['-P FORWARD DROP', ...chain].join('\n'))).toMatchObject({ chain: true, jump: false, complete: true });
    expect(parseForward('-P FORWARD ACCEPT\n-N VXNET-ISOLATION\n-A VXNET-ISOLATION -i vxb-9 ! -o vxb-9 -j DROP\n')).toMatchObject({ policy: 'ACCEPT', chain: true, complete: false });
    expect(parseForward('-N VXNET-FORWARD\n-A VXNET-FORWARD -i vxb-9 -o vxb-9 -j ACCEPT\n')).toMatchObject({ legacy: true, chain: false });
    expect(parseForward('')).toEqual({ policy: null, chain: false, jump: false, complete: false, legacy: false });
  });
});

describe('src/doctor/ip-forward.ts', () => {
  it.each([
    ['1\n', 'PASS'],
    ['0\n', 'WARN'],
    [null, 'WARN'],
  ])('judges ip_forward=%j', (value, status) => {
    expect(ipForwardVerdict(value).status).toBe(status);
  });
});

describe('src/doctor/bridge-nf.ts', () => {
  it.each([
    [null, /br_netfilter is not loaded/],
    ['1\n', /=1: bridged frames pass iptables FORWARD/],
    ['0\n', /=0: bridged frames do not pass iptables/],
  ])('explains %j', (value, text) => {
    expect(bridgeNfDetail(value)).toMatch(text);
  });
});

describe('src/doctor/socket.ts', () => {
  const answers = { answers: true, implements: ['NetworkDriver', 'IpamDriver'], error: null };

  it('accepts a root-owned directory only others cannot write', () => {
    expect(socketDirVerdict('/run/docker/plugins', { uid: 0, mode: 0o40755 }).status).toBe('PASS');
    expect(socketDirVerdict('/run/x', { uid: 0, mode: 0o40777 })).toMatchObject({ status: 'FAIL', fix: 'chmod go-w /run/x' });
    expect(socketDirVerdict('/run/x', { uid: 0, mode: 0o40775 }).status).toBe('FAIL');
    expect(socketDirVerdict('/run/x', { uid: 1000, mode: 0o40755 })).toMatchObject({ status: 'FAIL', fix: 'chown root /run/x' });
  });

  it.each([
    [0o140600, 'PASS'],
    [0o140660, 'PASS'],
    [0o140666, 'FAIL'],
    [0o140644, 'FAIL'],
  ])('socket mode %o: %s', (mode, status) => {
    expect(socketVerdict('/s', { uid: 0, mode, isSocket: true }, answers).status).toBe(status);
  });

  it('fails a socket nobody answers on, one that is not vxnet, and a file that is no socket', () => {
    const st = { uid: 0, mode: 0o140600, isSocket: true };
    expect(socketVerdict('/s', st, { answers: false, implements: [], error: 'ECONNREFUSED' })).toMatchObject({
      status: 'FAIL',
      detail: expect.stringContaining('ECONNREFUSED'),
      fix: 'start vxnet: it replaces a stale socket',
    });
    expect(socketVerdict('/s', st, { ...answers, implements: ['NetworkDriver'] }).detail).toContain('does not implement IpamDriver');
    expect(socketVerdict('/s', { ...st, isSocket: false }, answers).detail).toBe('/s exists and is not a socket');
    expect(socketVerdict('/s', { ...st, uid: 5 }, answers).status).toBe('FAIL');
  });
});

describe('src/doctor/store.ts latencySummary', () => {
  it('gives the median and the maximum', () => {
    expect(latencySummary([5, 1, 3, 2, 4])).toEqual({ p50: 3, max: 5 });
    expect(latencySummary([2, 1])).toEqual({ p50: 1, max: 2 });
    expect(latencySummary([])).toEqual({ p50: 0, max: 0 });
  });
});

describe('src/doctor/vtep-path.ts', () => {
  const iputils = { kind: 'iputils' as const, df: true };

  it('sizes the echo so its IPv4 packet is a full inner frame in VXLAN', () => {
    expect(dfPayload(1450)).toBe(1472);
    expect(dfPayload(1400)).toBe(1422);
  });

  it('probes only other hosts with a valid IPv4 VTEP', () => {
    const recs = [
      { host: 'me', rec: { vtep: '10.0.0.1', version: '1' } },
      { host: 'b', rec: { vtep: '10.0.0.3', version: '1' } },
      { host: 'a', rec: { vtep: '10.0.0.2', version: '1' } },
      { host: 'twin', rec: { vtep: '10.0.0.1', version: '1' } },
      { host: 'evil', rec: { vtep: '-f 10.0.0.9', version: '1' } },
      { host: 'v6', rec: { vtep: 'fd00::1', version: '1' } },
    ];
    expect(peerVteps(recs, 'me', '10.0.0.1')).toEqual([{ host: 'a', vtep: '10.0.0.2' }, { host: 'b', vtep: '10.0.0.3' }]);
  });

  const res = (host: string, state: PathResult['state'], ms: number | null = 0.2): PathResult => ({ host, vtep: `10.0.0.${host.length}`, state, ms });

  it('passes when every host answers the full-size echo', () => {
    const v = pathVerdict([res('a', 'ok'), res('bb', 'ok', null)], 1450, '10.0.0.1', iputils);
    expect(v).toEqual({ status: 'PASS', detail: '2 host(s) answer 1500-byte packets with DF set from 10.0.0.1: a 0.2 ms, bb ?' });
  });

  it('tells a path that is too small from a host that does not answer at all', () => {
    const small = pathVerdict([res('a', 'too-small'), res('bb', 'unreachable')], 1450, '10.0.0.1', iputils);
    expect(small.status).toBe('FAIL');
    expect(small.detail).toContain('a (10.0.0.1) answer small pings but not 1500-byte packets');
    expect(small.detail).toContain('no answer at all from bb (10.0.0.2)');
    expect(small.fix).toContain('lower VXNET_MTU');
    const gone = pathVerdict([res('bb', 'unreachable')], 1450, '10.0.0.1', iputils);
    expect(gone).toMatchObject({ status: 'FAIL', detail: 'no answer to ping from bb (10.0.0.2) (sent from 10.0.0.1)' });
  });

  it('says when busybox ping cannot be trusted to set DF', () => {
    expect(pathVerdict([res('a', 'ok')], 1450, '10.0.0.1', { kind: 'busybox', df: true }).detail).toContain('busybox ping');
    expect(pathVerdict([res('a', 'ok')], 1450, '10.0.0.1', { kind: 'busybox', df: false })).toMatchObject({ status: 'WARN', fix: expect.stringContaining('iputils-ping') });
  });
});

describe('src/doctor/ping.ts', () => {
  it('forces DF with iputils and names the source', () => {
    expect(pingCommand({ kind: 'iputils', df: true }, '10.0.0.2', 1472, '10.0.0.1')).toEqual(['ping', ['-n', '-M', 'do', '-c', '1', '-W', '1', '-s', '1472', '-I', '10.0.0.1', '10.0.0.2']]);
    expect(pingCommand({ kind: 'busybox', df: true }, '10.0.0.2', 56, null)).toEqual(['busybox', ['ping', '-c', '1', '-W', '1', '-s', '56', '10.0.0.2']]);
  });

  it('reads the round trip of both pings', () => {
    expect(parseRtt('64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.045 ms')).toBe(0.045);
    expect(parseRtt('1480 bytes from 10.0.0.2: seq=0 ttl=64 time=1.234 ms')).toBe(1.234);
    expect(parseRtt('no answer')).toBeNull();
  });
});

describe('src/doctor/pools.ts poolsVerdict', () => {
  // /proc/net/route as the kernel writes it: destination and mask little-endian hex.
  const routes = readRoutes4(
    [
      'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT',
      'eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0', // default via 192.168.0.1
      'eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0', // 192.168.0.0/24
      'vxb-256\t0000800A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0', // 10.128.0.0/24, vxnet's own
      'tun0\t0000840A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0', // 10.132.0.0/16 (a VPN)
    ].join('\n'),
  );
  const pools = [{ base: '10.128.0.0/9', size: 24 }];

  it('warns when a default pool overlaps a route, naming both and the fix', () => {
    expect(poolsVerdict(pools, routes)).toEqual({
      status: 'WARN',
      detail:
        '10.128.0.0/9 overlaps 10.132.0.0/16 (dev tun0): networks without --subnet skip those subnets here, but a subnet another host chooses may hide the route from containers on this host',
      fix: 'set VXNET_DEFAULT_POOLS (on every host) to a range no host routes, e.g. a part of 10.0.0.0/8 or 172.16.0.0/12 your network does not use',
    });
  });

  it('passes when only the default route and vxnet\'s own bridges cover the pools', () => {
    expect(poolsVerdict(pools, routes.filter((r) => r.iface !== 'tun0'))).toEqual({
      status: 'PASS',
      detail: 'default pools 10.128.0.0/9:24 overlap no route of this host',
    });
  });
});

describe('src/doctor/antispoof.ts antispoofProblem', () => {
  const table = (port: string[]): string =>
    ['table bridge vxnet-antispoof {', '\tchain prerouting {', '\t\ttype filter hook prerouting priority filter; policy accept;', ...chainRules().prerouting.map((r) => `\t\t${r}`), '\t}', '\tchain port {', ...port.map((r) => `\t\t${r}`), '\t}', '}'].join('\n');
  it('accepts the table vxnet writes', () => {
    expect(antispoofProblem(table(chainRules().port))).toBeNull();
  });
  it('names a chain that lost rules', () => {
    expect(antispoofProblem(table(chainRules().port.slice(1)))).toBe("chain port of table bridge vxnet-antispoof does not hold vxnet's 7 rules");
  });
});

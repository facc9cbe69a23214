import { formatExplanation, formatPlan, formatStatus, table } from '../../../src/cli/status-format';
import type { StatusReport } from '../../../src/network/status';
import type { ReconcilePlan } from '../../../src/network/reconcile';

function plan(changes: Partial<ReconcilePlan> = {}): ReconcilePlan {
  return { dockerdAnswered: true, staleNetworks: [], staleEndpoints: [], firewall: [], antispoof: [], repairNetworks: [], stalePorts: [], repairPorts: [], orphanPortRules: [], orphanLinks: [], orphanRules: [], orphanAddresses: [], policy: [], ...changes };
}

const REPORT: StatusReport = {
  self: { host: 'h1', vtep: '172.31.0.1', store: 'etcd', version: '0.1.0' },
  hosts: [
    { host: 'h1', vtep: '172.31.0.1', lease: 'alive', deadSince: null, releaseClaimedBy: null, endpoints: 2 },
    { host: 'host-two', vtep: null, lease: 'gone', deadSince: '2025-01-02T03:04:05.000Z', releaseClaimedBy: 'h1', endpoints: 1 },
  ],
  networks: [
    { network: 'backend', vni: 257, subnets: ['10.6.0.0/24', 'fd00::/64'], mtu: 1450, internal: true, endpoints: { h1: 0 } },
    { network: 'subnet-10.5.0.0-24', vni: 256, subnets: ['10.5.0.0/24'], mtu: 1400, internal: false, endpoints: { h1: 2, 'host-two': 1 } },
  ],
  peers: [{ lnet: 'subnet-10.5.0.0-24', vni: 256, fdb: 2, neigh: 1, vteps: 1 }],
  ports: [
    { endpoint: '8ef52212cccc', network: 'subnet-10.5.0.0-24', proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8080, containerIp: '10.5.0.2', containerPort: 80, reserved: true },
    { endpoint: '8ef52212cccc', network: 'subnet-10.5.0.0-24', proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, containerIp: '10.5.0.2', containerPort: 53, reserved: false },
  ],
  lastReconcile: { at: '2025-01-02T03:04:05.000Z', trigger: 'startup', plan: plan({ staleEndpoints: ['8ef52212cccc (10.5.0.9/24)'], orphanLinks: ['vxe-1', 'vxc-1'] }), error: null },
};

describe('src/cli/status-format.ts', () => {
  it('aligns columns to the widest cell and ends no line in spaces', () => {
    expect(table([['A', 'BB', 'C'], ['aaaa', 'b', 'cccc'], ['a', '', '']])).toEqual(['A     BB  C', 'aaaa  b   cccc', 'a']);
  });

  it('prints status as aligned tables', () => {
    expect(formatStatus(REPORT)).toBe(
      [
        'host     h1',
        'vtep     172.31.0.1',
        'store    etcd',
        'version  0.1.0',
        '',
        'HOSTS',
        'HOST      VTEP        LEASE  DEAD SINCE                                 ENDPOINTS',
        'h1        172.31.0.1  alive  -                                          2',
        'host-two  -           gone   2025-01-02T03:04:05.000Z (released by h1)  1',
        '',
        'NETWORKS',
        'NETWORK             VNI  SUBNETS                MTU   INTERNAL  ENDPOINTS PER HOST',
        'backend             257  10.6.0.0/24,fd00::/64  1450  yes       h1=0',
        'subnet-10.5.0.0-24  256  10.5.0.0/24            1400  no        h1=2 host-two=1',
        '',
        'PEERS PROGRAMMED HERE',
        'NETWORK             VNI  FDB  NEIGH  REMOTE VTEPS',
        'subnet-10.5.0.0-24  256  2    1      1',
        '',
        'PUBLISHED PORTS',
        'ENDPOINT      NETWORK             PROTO  HOST            CONTAINER    RESERVED',
        '8ef52212cccc  subnet-10.5.0.0-24  tcp    0.0.0.0:8080    10.5.0.2:80  yes',
        '8ef52212cccc  subnet-10.5.0.0-24  udp    127.0.0.1:5353  10.5.0.2:53  no (held by another process)',
        '',
        'LAST RECONCILE',
        '2025-01-02T03:04:05.000Z (startup): 3 changes',
        '  endpoints whose container is gone: 8ef52212cccc (10.5.0.9/24)',
        '  links nothing owns: vxe-1, vxc-1',
        '',
      ].join('\n'),
    );
  });

  it('lists the names this host serves and the intercepted upstreams, before the last reconcile', () => {
    const names = {
      upstreams: [{ upstream: '10.0.0.53', port: 5354 }],
      served: [{ lnet: 'L1', network: 'app', endpointId: 'e1', containerId: 'abcdef0123456789', names: ['web', 'api'], ipv4: '10.1.0.2', ipv6: null }],
    };
    const text = formatStatus({ ...REPORT, names });
    expect(text).toContain(['NAMES SERVED HERE', 'NETWORK  NAMES    IPV4      IPV6  CONTAINER', 'app      web,api  10.1.0.2  -     abcdef012345', '', 'DNS UPSTREAMS INTERCEPTED', 'UPSTREAM   LOCAL PORT', '10.0.0.53  5354', '', 'LAST RECONCILE'].join('\n'));
    expect(formatStatus({ ...REPORT, names: null })).not.toContain('NAMES SERVED HERE');
  });

  it('says whether frames between hosts skip the bridge, and which rule holds auto back, before the last reconcile', () => {
    expect(formatStatus({ ...REPORT, redirect: { state: 'redirecting', rules: [] } })).toContain('REDIRECT FAST PATH\non: frames between hosts skip the bridge\n\nLAST RECONCILE');
    expect(formatStatus({ ...REPORT, redirect: { state: 'unknown', rules: [] } })).toContain('REDIRECT FAST PATH\nauto: not checked yet (frames take the bridge)\n');
    const rules = ['iptables DOCKER-USER -s 10.0.0.0/8 -j DROP', 'nft inet filter forward (hook forward): 1 rules, policy accept'];
    expect(formatStatus({ ...REPORT, redirect: { state: 'suspended', rules } })).toContain("REDIRECT FAST PATH\nauto, suspended: 2 rules of someone else's see frames between hosts (iptables DOCKER-USER -s 10.0.0.0/8 -j DROP, …)\n");
    expect(formatStatus({ ...REPORT, redirect: { state: 'suspended', rules: rules.slice(0, 1) } })).toContain("auto, suspended: 1 rule of someone else's sees frames between hosts (iptables DOCKER-USER -s 10.0.0.0/8 -j DROP)\n");
    expect(formatStatus({ ...REPORT, redirect: null })).not.toContain('REDIRECT FAST PATH');
  });

  it('shows each local container\'s policy state and rules, and explains a decision', () => {
    const base = { lnet: 'n1', endpointId: 'e'.repeat(64), ip6: null, container: 'c1', isolatedNetwork: false, pending: false, error: null, allow: [], egress: [] };
    const out = formatStatus({
      ...REPORT,
      policy: [
        { ...base, ip: '10.5.0.2', names: ['db'], allow: [{ rule: 'api:5432', from: 'option', sources: ['10.5.0.3'] }], egress: [{ rule: '192.0.2.0/24:443', from: 'label' }] },
        { ...base, ip: '10.5.0.4', names: ['web'], pending: true },
        { ...base, ip: '10.5.0.5', names: [], error: 'label vxnet.allow: bad entry "x:0": port 0 is outside 1-65535' },
        { ...base, ip: '10.5.0.6', names: ['free'], allow: [{ rule: 'gone', from: 'label', sources: [] }], isolatedNetwork: true },
      ],
    });
    expect(out).toContain(
      [
        'POLICY OF LOCAL CONTAINERS',
        'NETWORK  CONTAINER     IPV4      STATE                                                                  ALLOW (FROM)                 EGRESS',
        'n1       db            10.5.0.2  allow rules only                                                       api:5432 (option: 10.5.0.3)  192.0.2.0/24:443 (label)',
        'n1       web           10.5.0.4  pending (closed until its labels are read)                             -                            -',
        'n1       eeeeeeeeeeee  10.5.0.5  closed: label vxnet.allow: bad entry "x:0": port 0 is outside 1-65535  -                            -',
        'n1       free          10.5.0.6  isolated network: allow rules only                                     gone (label: nobody now)     -',
      ].join('\n'),
    );
    expect(
      formatExplanation(
        { allowed: false, reason: 'network n1 is isolated (enable_icc=false) and db has no allow rule', rule: null, family: 4, from: { name: 'web', ip: '10.5.0.4' }, to: { name: 'db', ip: '10.5.0.2', host: 'h2', network: 'n1' } },
        '80/tcp',
      ),
    ).toBe('refused: web (10.5.0.4) -> db (10.5.0.2 on h2, network n1) port 80/tcp\n  network n1 is isolated (enable_icc=false) and db has no allow rule');
    expect(
      formatExplanation(
        { allowed: true, reason: 'db\'s rule "web:80" (label) allows it', rule: 'web:80', family: 6, from: { name: 'web', ip: 'fd00::4' }, to: { name: 'db', ip: 'fd00::2', host: 'h2', network: 'n1' } },
        '80/tcp',
      ),
    ).toBe('allowed: web (fd00::4) -> db (fd00::2 on h2, network n1) port 80/tcp over IPv6\n  db\'s rule "web:80" (label) allows it');
  });

  it('says so when there is nothing to show', () => {
    const empty: StatusReport = { self: { host: 'h1', vtep: null, store: 'embedded', version: '0.1.0' }, hosts: [], networks: [], peers: null, ports: [], lastReconcile: null };
    expect(formatStatus(empty)).toBe(
      [
        'host     h1',
        'vtep     - (single host)',
        'store    embedded',
        'version  0.1.0',
        '',
        'HOSTS',
        '(none)',
        '',
        'NETWORKS',
        '(none)',
        '',
        'PEERS PROGRAMMED HERE',
        '(none: single host without a VTEP)',
        '',
        'PUBLISHED PORTS',
        '(none)',
        '',
        'LAST RECONCILE',
        '(none yet)',
        '',
      ].join('\n'),
    );
    expect(formatStatus({ ...empty, peers: [] })).toContain('PEERS PROGRAMMED HERE\n(none)\n');
  });

  it.each([
    [{ at: 't', trigger: 'on-demand' as const, plan: plan(), error: null }, 't (on-demand): nothing to change\n'],
    [{ at: 't', trigger: 'startup' as const, plan: plan({ dockerdAnswered: false, orphanRules: ['vxnet-egress 10.9.0.0/24,vxb-9'] }), error: null }, 't (startup): 1 change (dockerd did not answer: only the kernel was checked)\n  firewall entries nothing owns: vxnet-egress 10.9.0.0/24,vxb-9\n'],
    [{ at: 't', trigger: 'startup' as const, plan: null, error: 'store down' }, 't (startup): failed: store down\n'],
  ])('sums up the last reconcile %#', (last, text) => {
    expect(formatStatus({ ...REPORT, lastReconcile: last })).toMatch(new RegExp(`LAST RECONCILE\\n${text.replace(/[()]/g, '\\$&')}$`));
  });

  it('prints a reconcile plan with every kind of change', () => {
    expect(formatPlan(plan({ orphanLinks: ['vxe-1', 'vxc-1'] }), true)).toBe(
      [
        'would change:',
        '  networks dockerd no longer has: none',
        '  endpoints whose container is gone: none',
        '  firewall chains put back in place: none',
        '  anti-spoofing table and entries synced with the store: none',
        '  networks whose devices are recreated: none',
        '  published ports of endpoints that are gone: none',
        '  published ports whose rules or reservations are recreated: none',
        '  port rules nothing owns: none',
        '  links nothing owns: vxe-1, vxc-1',
        '  firewall entries nothing owns: none',
        '  addresses no endpoint uses: none',
        '  policy set elements (vxnet-policy table): none',
        '',
      ].join('\n'),
    );
    expect(formatPlan(plan({ dockerdAnswered: false }), false)).toMatch(/^changed: \(dockerd did not answer: only the kernel was checked\)\n/);
  });
});

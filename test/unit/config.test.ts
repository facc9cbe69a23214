import { loadConfig, helpText, SETTINGS } from '../../src/config';

describe('src/config.ts', () => {
  it('has defaults for a single host', () => {
    const c = loadConfig([], {});
    expect(c).toMatchObject({
      socket: '/run/docker/plugins/vxnet.sock',
      dataDir: '/var/lib/vxnet',
      store: 'embedded',
      logLevel: 'info',
      mtu: null,
      defaultPools: [{ base: '10.128.0.0/9', size: 24 }],
      vniMin: 256,
      vniMax: 4095,
      vxlanPort: 4789,
      etcdPrefix: '/vxnet/v1/',
    });
  });

  it('reads the environment, and flags win over it', () => {
    const c = loadConfig(['--mtu', '1400', '--log-level=debug'], { VXNET_MTU: '1300', VXNET_SOCKET: '/tmp/x.sock', VXNET_DEFAULT_POOLS: '172.30.0.0/16:26, 10.9.0.0/16:24' });
    expect(c.mtu).toBe(1400);
    expect(c.logLevel).toBe('debug');
    expect(c.socket).toBe('/tmp/x.sock');
    expect(c.defaultPools).toEqual([{ base: '172.30.0.0/16', size: 26 }, { base: '10.9.0.0/16', size: 24 }]);
  });

  it.each([
    [['--mtu', 'abc'], /--mtu\/VXNET_MTU: "abc" is not a whole number/],
    [['--mtu', '100'], /100 is outside 576..65535/],
    [['--store', 'redis'], /--store\/VXNET_STORE: "redis" is not one of embedded, etcd/],
    [['--socket', 'rel.sock'], /not an absolute path/],
    [['--default-pools', '10.0.0.0/8'], /not BASE\/LEN:SIZE/],
    [['--default-pools', '10.0.0.0/16:8'], /size \/8 does not fit/],
    [['--vni-range', '10-5'], /10 is above 5/],
    [['--host-id', 'a/b'], /--host-id/],
    [['--etcd-prefix', 'vxnet'], /must start and end with "\/"/],
    [['--metrics-addr', '9477'], /--metrics-addr\/VXNET_METRICS_ADDR: "9477" is not HOST:PORT/],
    [['--metrics-addr', ':9477'], /is not HOST:PORT/],
    [['--metrics-addr', '::1:9477'], /is not HOST:PORT/],
    [['--metrics-addr', 'http://127.0.0.1:9477'], /is not HOST:PORT/],
    [['--metrics-addr', '127.0.0.1:0'], /0 is outside 1..65535/],
    [['--metrics-addr', '127.0.0.1:70000'], /70000 is outside 1..65535/],
    [['--bogus', '1'], /unknown option/],
    [['--mtu'], /needs a value/],
    [['stray'], /unexpected argument/],
  ])('stops on %j with one clear line', (argv, msg) => {
    expect(() => loadConfig(argv, {})).toThrow(msg);
  });

  it('--fast-path: auto by default (on plus the redirect blocks while nothing else sees the frames); on; off; redirect is on plus the blocks; anything else stops the start', () => {
    expect(loadConfig([], {})).toMatchObject({ fastPath: true, redirect: 'auto' });
    expect(loadConfig(['--fast-path', 'on'], {})).toMatchObject({ fastPath: true, redirect: 'never' });
    expect(loadConfig(['--fast-path', 'off'], {})).toMatchObject({ fastPath: false, redirect: 'never' });
    expect(loadConfig([], { VXNET_FAST_PATH: 'redirect' })).toMatchObject({ fastPath: true, redirect: 'always' });
    expect(loadConfig(['--fast-path', 'auto'], {})).toMatchObject({ fastPath: true, redirect: 'auto' });
    expect(() => loadConfig(['--fast-path', 'bypass'], {})).toThrow(/"bypass" is not one of on, off, redirect, auto/);
  });

  it('serves no metrics unless VXNET_METRICS_ADDR is set', () => {
    expect(loadConfig([], {}).metricsAddr).toBeNull();
  });

  it.each([
    ['127.0.0.1:9477', { host: '127.0.0.1', port: 9477 }],
    ['0.0.0.0:9100', { host: '0.0.0.0', port: 9100 }],
    ['localhost:9477', { host: 'localhost', port: 9477 }],
    ['[::1]:9477', { host: '::1', port: 9477 }],
  ])('reads VXNET_METRICS_ADDR=%s', (value, want) => {
    expect(loadConfig([], { VXNET_METRICS_ADDR: value }).metricsAddr).toEqual(want);
    expect(loadConfig(['--metrics-addr', value], { VXNET_METRICS_ADDR: '10.0.0.1:1' }).metricsAddr).toEqual(want);
  });

  it('keeps the socket root-only and the scope local unless told otherwise', () => {
    expect(loadConfig([], {})).toMatchObject({ socketGroup: null, scope: 'local' });
    expect(loadConfig(['--socket-group', 'docker'], {}).socketGroup).toBe('docker');
    expect(loadConfig([], { VXNET_SOCKET_GROUP: '998' }).socketGroup).toBe('998');
    expect(loadConfig([], { VXNET_SCOPE: 'global', VXNET_STORE: 'etcd' }).scope).toBe('global');
  });

  it.each([
    [{ VXNET_SOCKET_GROUP: 'Docker Users' }, /--socket-group\/VXNET_SOCKET_GROUP: "Docker Users" is not a group name or gid/],
    [{ VXNET_SOCKET_GROUP: '../x' }, /is not a group name or gid/],
    [{ VXNET_SCOPE: 'swarm' }, /--scope\/VXNET_SCOPE: "swarm" is not one of local, global/],
    [{ VXNET_SCOPE: 'global' }, /--scope\/VXNET_SCOPE: "global" needs --store\/VXNET_STORE etcd/],
  ])('refuses %j', (env, message) => {
    expect(() => loadConfig([], env)).toThrow(message);
  });

  it('lists every option with its variable in --help', () => {
    const help = helpText();
    for (const s of SETTINGS) {
      expect(help).toContain(`--${s.flag}`);
      expect(help).toContain(s.env);
    }
  });
});

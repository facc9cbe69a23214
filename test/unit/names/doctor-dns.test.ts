import { dnsVerdict } from '../../../src/doctor/dns';
import { DOCKER_FALLBACK_DNS, dockerUpstreams, dockerdDnsArgs, interceptable, resolvConfServers } from '../../../src/names/upstreams';

describe('src/doctor/dns', () => {
  const base = { namesOn: true, interceptable: [], hostServers: ['127.0.0.53'], resolvedServers: [], frontPort: 5354 };

  it('warns on a loopback-only host and names the servers systemd-resolved uses', () => {
    const v = dnsVerdict({ ...base, resolvedServers: ['192.168.1.1'] });
    expect(v.status).toBe('WARN');
    expect(v.detail).toContain('127.0.0.53');
    expect(v.detail).toContain('port 5354 on each vxnet gateway');
    expect(v.fix).toBe('to give containers a resolver they can reach and vxnet a second path: in /etc/docker/daemon.json set "dns": ["192.168.1.1"] (or dockerd --dns), then restart dockerd');
  });

  it('passes when an upstream can be intercepted, or when names are off', () => {
    expect(dnsVerdict({ ...base, interceptable: ['10.0.0.53'] }).status).toBe('PASS');
    expect(dnsVerdict({ ...base, namesOn: false }).status).toBe('PASS');
  });
});

describe('src/names/upstreams', () => {
  it('reads nameservers, dockerd --dns arguments, and keeps only interceptable ones', () => {
    expect(resolvConfServers('# x\nnameserver 127.0.0.53\noptions edns0\n nameserver 10.0.0.1\n')).toEqual(['127.0.0.53', '10.0.0.1']);
    expect(dockerdDnsArgs(['dockerd', '--dns', '10.0.0.2', '--dns=10.0.0.3', '--data-root', '/x'])).toEqual(['10.0.0.2', '10.0.0.3']);
    expect(['127.0.0.53', '10.0.0.1', 'fd00::1', '0.0.0.0'].filter(interceptable)).toEqual(['10.0.0.1']);
  });
});

describe('src/names/upstreams dockerUpstreams', () => {
  it('prefers dockerd dns, else the host servers, else (loopback only) dockerd 20.10\'s fallback', () => {
    expect(dockerUpstreams(['10.0.0.9'], ['10.0.0.1'])).toEqual(['10.0.0.9']);
    expect(dockerUpstreams([], ['127.0.0.53', '10.0.0.1'])).toEqual(['10.0.0.1']);
    expect(dockerUpstreams([], ['127.0.0.53'])).toEqual(DOCKER_FALLBACK_DNS);
    expect(dockerUpstreams([], [])).toEqual([]);
  });
});

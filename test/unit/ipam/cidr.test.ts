import { parseCidr, parseIp, cidrToString, usableRange, bigIntToIp, overlaps, isCanonicalCidr } from '../../../src/ipam/cidr';

describe('src/ipam/cidr.ts', () => {
  it.each(['10.0.0.0/8', '10.1.2.0/24', '0.0.0.0/0', 'fd00::/64', '2001:db8::/32'])('round-trips %s', (c) => {
    expect(cidrToString(parseCidr(c)!)).toBe(c);
  });
  it.each(['', '10.0.0.0', '10.0.0.0/33', '300.0.0.0/8', 'fd00::/129', 'x/8', '10.1/16', '10.0.0.0/-1'])('rejects %j', (c) => {
    expect(parseCidr(c)).toBeNull();
  });
  it('tells canonical network addresses from host addresses', () => {
    expect(isCanonicalCidr('10.1.0.0/24')).toBe(true);
    expect(isCanonicalCidr('10.1.0.1/24')).toBe(false);
  });
  it.each(['10.1', '1.2.3', '01.2.3.4x', '256.1.1.1', ' 10.1.1.1'])('rejects loose IP form %j', (ip) => {
    expect(parseIp(ip)).toBeNull();
  });
  it('keeps network and broadcast out of the usable range', () => {
    const r = usableRange(parseCidr('10.1.0.0/24')!);
    expect(bigIntToIp(r.first, 4)).toBe('10.1.0.1');
    expect(bigIntToIp(r.last, 4)).toBe('10.1.0.254');
    const p2p = usableRange(parseCidr('10.1.0.0/31')!);
    expect([bigIntToIp(p2p.first, 4), bigIntToIp(p2p.last, 4)]).toEqual(['10.1.0.0', '10.1.0.1']);
  });
  it('detects overlap across sizes and never across families', () => {
    expect(overlaps(parseCidr('10.0.0.0/8')!, parseCidr('10.200.0.0/16')!)).toBe(true);
    expect(overlaps(parseCidr('10.0.0.0/24')!, parseCidr('10.0.1.0/24')!)).toBe(false);
    expect(overlaps(parseCidr('0.0.0.0/0')!, parseCidr('::/0')!)).toBe(false);
  });
});

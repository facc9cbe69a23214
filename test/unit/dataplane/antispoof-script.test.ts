import { chainRules, elementKey, elementText, parseChains, parseElements, tableScript } from '../../../src/dataplane/antispoof';
import { keyBytes } from '../../../src/dataplane/nft-elements';
import type { SpoofElement } from '../../../src/dataplane/antispoof';

const v4: SpoofElement = { set: 'v4', port: 'vxe-abc', mac: '02:42:0a:00:00:02', ip: '10.0.0.2' };
const nd: SpoofElement = { set: 'nd6', port: 'vxe-abc', mac: '02:42:0a:00:00:02', ip: 'fe80::42:aff:fe00:2' };

describe('src/dataplane/antispoof.ts (pure parts)', () => {
  it('writes elements in the shape of each set; ND targets as 128-bit integers', () => {
    expect(elementText(v4)).toBe('"vxe-abc" . 02:42:0a:00:00:02 . 10.0.0.2');
    expect(elementText({ ...v4, set: 'arp4' })).toBe('"vxe-abc" . 02:42:0a:00:00:02 . 02:42:0a:00:00:02 . 10.0.0.2');
    expect(elementText(nd)).toBe('"vxe-abc" . 02:42:0a:00:00:02 . 0xfe8000000000000000420afffe000002');
  });

  it('keys carry each field in its set order, padded as nft stores them (ifname 16, MAC 6+2, IPv4 4, ND target 16)', () => {
    const v4key = keyBytes(elementKey(v4));
    expect(v4key.toString('hex')).toBe(
      Buffer.concat([Buffer.from('vxe-abc'), Buffer.alloc(9)]).toString('hex') + '02420a0000020000' + '0a000002',
    );
    expect(keyBytes(elementKey({ ...v4, set: 'arp4' }))).toHaveLength(16 + 8 + 8 + 4);
    const ndkey = keyBytes(elementKey(nd));
    expect(ndkey).toHaveLength(16 + 8 + 16);
    expect(ndkey.subarray(24).toString('hex')).toBe('fe8000000000000000420afffe000002');
  });

  it('the table script never flushes a set (the kernel keeps its entries while the driver is away)', () => {
    const script = tableScript();
    expect(script).not.toMatch(/flush set|flush table|delete/);
    expect(script).toMatch(/hook prerouting/);
  });

  it('reads elements back from `nft -j`, ND targets as addresses again', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { set: { family: 'bridge', name: 'v4', table: 'vxnet-antispoof', elem: [{ concat: ['vxe-abc', '02:42:0a:00:00:02', '10.0.0.2'] }] } },
        { set: { family: 'bridge', name: 'nd6', table: 'vxnet-antispoof', elem: [{ concat: ['vxe-abc', '02:42:0a:00:00:02', '0xfe8000000000000000420afffe000002'] }] } },
        { set: { family: 'bridge', name: 'other', table: 'vxnet-antispoof', elem: [{ concat: ['x', 'y', 'z'] }] } },
      ],
    });
    expect(parseElements(json)).toEqual([v4, nd]);
  });

  it('reads the chains of `nft list table` as the rules vxnet writes', () => {
    const want = chainRules();
    const text = [
      'table bridge vxnet-antispoof {',
      '\tchain prerouting {',
      '\t\ttype filter hook prerouting priority filter; policy accept;',
      ...want.prerouting.map((r) => `\t\t${r}`),
      '\t}',
      '',
      '\tchain port {',
      ...want.port.map((r) => `\t\t${r}`),
      '\t}',
      '}',
    ].join('\n');
    const chains = parseChains(text);
    expect(chains.get('prerouting')).toEqual(want.prerouting);
    expect(chains.get('port')).toEqual(want.port);
  });
});

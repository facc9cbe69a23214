import { chainRules, elementText, elementsScript, parseChains, parseElements, tableScript } from '../../../src/dataplane/antispoof';
import type { SpoofElement } from '../../../src/dataplane/antispoof';

const v4: SpoofElement = { set: 'v4', port: 'vxe-abc', mac: '02:42:0a:00:00:02', ip: '10.0.0.2' };
const nd: SpoofElement = { set: 'nd6', port: 'vxe-abc', mac: '02:42:0a:00:00:02', ip: 'fe80::42:aff:fe00:2' };

describe('src/dataplane/antispoof.ts (pure parts)', () => {
  it('writes elements in the shape of each set; ND targets as 128-bit integers', () => {
    expect(elementText(v4)).toBe('"vxe-abc" . 02:42:0a:00:00:02 . 10.0.0.2');
    expect(elementText({ ...v4, set: 'arp4' })).toBe('"vxe-abc" . 02:42:0a:00:00:02 . 02:42:0a:00:00:02 . 10.0.0.2');
    expect(elementText(nd)).toBe('"vxe-abc" . 02:42:0a:00:00:02 . 0xfe8000000000000000420afffe000002');
  });

  it('removal adds then deletes in one script, so it succeeds whether or not the element is there', () => {
    const script = elementsScript('remove', [v4]);
    expect(script.split('\n').filter((l) => l !== '')).toEqual([
      'add element bridge vxnet-antispoof v4 { "vxe-abc" . 02:42:0a:00:00:02 . 10.0.0.2 }',
      'delete element bridge vxnet-antispoof v4 { "vxe-abc" . 02:42:0a:00:00:02 . 10.0.0.2 }',
    ]);
    expect(elementsScript('add', [])).toBe('');
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

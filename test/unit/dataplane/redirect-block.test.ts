// The tc lines of the redirect fast path (dataplane/redirect-block.ts): what each operation
// writes, which lines may fail harmlessly, and refusals of anything that is not a MAC, an IPv4
// address or a device name (nothing of a record reaches tc unchecked).
import { bucketOf, failedLines, opLines, parseAttached, script } from '../../../src/dataplane/redirect-block';

const lines = (o: Parameters<typeof opLines>[0]): string[] => opLines(o).map((l) => `${l.ignorable ? '~ ' : ''}${l.args.join(' ')}`);

describe('redirect block lines', () => {
  it('setup empties the block, attaches the VXLAN device and builds both hashed tables and its root entry', () => {
    expect(lines({ op: 'setup', block: 300, vxv: 'vxv-300' })).toEqual([
      '~ filter del block 300',
      '~ qdisc del dev vxv-300 clsact',
      'qdisc add dev vxv-300 ingress_block 300 clsact',
      'filter add block 300 prio 10 handle 1: protocol ip u32 divisor 256',
      'filter add block 300 prio 10 handle 2: protocol ip u32 divisor 256',
      'filter add block 300 prio 10 handle 3: protocol ip u32 divisor 256',
      'filter add block 300 prio 10 handle 800::1 protocol ip u32 match u32 0 0 indev vxv-300 hashkey mask 0x000000ff at -12 link 2:',
      'filter add block 300 prio 10 handle 800::2 protocol ip u32 match u32 0 0 hashkey mask 0x00ff0000 at -4 link 3:',
    ]);
  });

  it('a port: its own source only (bucket = last byte of its MAC), linked to the remote table; its MAC in the local table', () => {
    const entry = { port: 'vxe-abc', mac: '02:42:0A:05:00:C8', ip: '10.5.0.200', node: 3 };
    expect(lines({ op: 'add-port', block: 300, entry })).toEqual([
      'filter add block 300 prio 10 handle 3:c8:3 protocol ip u32 ht 3:c8: match ip src 10.5.0.200/32 match ether src 02:42:0a:05:00:c8 indev vxe-abc hashkey mask 0x000000ff at -12 link 1:',
    ]);
    expect(lines({ op: 'del-port', block: 300, entry })).toEqual(['filter del block 300 prio 10 handle 3:c8:3 protocol ip u32']);
    expect(lines({ op: 'add-local', block: 300, entry: { mac: entry.mac, dev: 'vxe-abc', node: 18 } })).toEqual([
      'filter add block 300 prio 10 handle 2:c8:12 protocol ip u32 ht 2:c8: match ether dst 02:42:0a:05:00:c8 action mirred egress redirect dev vxe-abc',
    ]);
    expect(lines({ op: 'del-remote', block: 300, entry: { mac: '02:42:0a:05:00:07', dev: 'vxv-300', node: 1 } })).toEqual(['filter del block 300 prio 10 handle 1:7:1 protocol ip u32']);
    expect(bucketOf('02:42:0a:05:00:ff')).toBe(255);
  });

  it('one script per change set: the removals that may fail harmlessly first, the rest in order', () => {
    const lines = script([
      { op: 'del-port', block: 1, entry: { port: 'vxe-b', mac: '02:42:0a:00:00:03', ip: '10.0.0.3', node: 1 } },
      { op: 'attach', block: 1, dev: 'vxe-a' },
      { op: 'add-remote', block: 1, entry: { mac: '02:42:0a:00:00:01', dev: 'vxv-1', node: 1 } },
      { op: 'add-remote', block: 1, entry: { mac: '02:42:0a:00:00:02', dev: 'vxv-1', node: 1 } },
    ]);
    expect(lines.map((l) => [l.ignorable, l.args.slice(0, 2).join(' ')])).toEqual([
      [true, 'qdisc del'],
      [false, 'filter del'],
      [false, 'qdisc add'],
      [false, 'filter add'],
      [false, 'filter add'],
    ]);
  });

  it("reads which lines of a -force batch failed from tc's complaints", () => {
    const stderr = 'Error: Cannot find specified qdisc on specified device.\nCommand failed -:1\nError: Filter with specified priority/protocol not found.\nCommand failed -:3\n';
    expect(failedLines(stderr)).toEqual([1, 3]);
    expect(failedLines('')).toEqual([]);
  });

  it("finds vxnet's devices on a shared block in `tc qdisc show` (what a start without the redirect detaches)", () => {
    const text = [
      'qdisc noqueue 0: dev lo root refcnt 2 ',
      'qdisc clsact ffff: dev vxv-300 parent ffff:fff1 ingress_block 300 ',
      'qdisc clsact ffff: dev vxe-0123456789 parent ffff:fff1 ingress_block 300 ',
      'qdisc clsact ffff: dev eth0 parent ffff:fff1 ingress_block 7 ',
      'qdisc clsact ffff: dev vxe-abcdefabcd parent ffff:fff1 ',
    ].join('\n');
    expect(parseAttached(text)).toEqual(['vxv-300', 'vxe-0123456789']);
    expect(lines({ op: 'detach', dev: 'vxv-300' })).toEqual(['~ qdisc del dev vxv-300 clsact']);
  });

  it('refuses what is not a MAC, an IPv4 address, a device name or a node', () => {
    expect(() => opLines({ op: 'add-port', block: 1, entry: { port: 'vxe-a', mac: '02:42:0a:00:00:01', ip: '10.0.0.1; rm', node: 2 } })).toThrow(/bad IPv4 address/);
    expect(() => opLines({ op: 'add-local', block: 1, entry: { mac: 'zz:42:0a:00:00:01', dev: 'vxe-a', node: 2 } })).toThrow(/bad MAC/);
    expect(() => opLines({ op: 'attach', block: 1, dev: 'vxe a b' })).toThrow(/bad device name/);
    expect(() => opLines({ op: 'add-remote', block: 1, entry: { mac: '02:42:0a:00:00:01', dev: 'vxv-1', node: 4096 } })).toThrow(/bad node/);
  });
});

// The bench's reading of nf_tables notifications and of nft's address ranges (pure): the
// rule-follow figure of bench/policy-docker.ts stands on them.
import { elementEvents } from '../../../bench/lib/nft-set-events';
import { ipv4Span } from '../../../bench/lib/nft-set-watch';

function attr(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16LE(4 + payload.length, 0);
  h.writeUInt16LE(type, 2);
  const b = Buffer.concat([h, payload]);
  return Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
}
const nested = (type: number, ...parts: Buffer[]): Buffer => attr(type | 0x8000, Buffer.concat(parts));
const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);
const ip = (s: string): Buffer => Buffer.from(s.split('.').map(Number));
/** allow_in's key: DST . SRC . proto (padded to 4) . port (big endian, padded to 4). */
const key = (dst: string, src: string, proto: number, port: number): Buffer => {
  const p = Buffer.alloc(8);
  p.writeUInt8(proto, 0);
  p.writeUInt16BE(port, 4);
  return Buffer.concat([ip(dst), ip(src), p]);
};

function notification(msg: number, table: string, set: string, elems: Array<[Buffer, Buffer | null]>): Buffer {
  const list = elems.map(([k, end]) => nested(1, nested(1, attr(1, k)), ...(end ? [nested(10, attr(1, end))] : [])));
  const body = Buffer.concat([attr(1, cstr(table)), attr(2, cstr(set)), nested(3, ...list)]);
  const h = Buffer.alloc(20);
  h.writeUInt32LE(20 + body.length, 0);
  h.writeUInt16LE((10 << 8) | msg, 4);
  h.writeUInt8(1, 16); // NFPROTO_INET
  return Buffer.concat([h, body]);
}

describe('nf_tables element notifications', () => {
  it('reads destination and source range of each element, adds and deletes, in one datagram', () => {
    const add = notification(12, 'vxnet-policy', 'allow_in', [
      [key('10.1.0.5', '10.1.0.7', 6, 8000), key('10.1.0.5', '10.1.0.7', 6, 8000)],
      [key('10.1.0.5', '10.2.0.0', 0, 0), key('10.1.0.5', '10.2.255.255', 255, 65535)],
    ]);
    const del = notification(14, 'vxnet-policy', 'allow_in', [[key('10.1.0.9', '10.1.0.3', 6, 22), null]]);
    expect(elementEvents(Buffer.concat([add, del]), 'vxnet-policy', 'allow_in')).toEqual([
      { op: 'add', dst: '10.1.0.5', lo: '10.1.0.7', hi: '10.1.0.7' },
      { op: 'add', dst: '10.1.0.5', lo: '10.2.0.0', hi: '10.2.255.255' },
      { op: 'delete', dst: '10.1.0.9', lo: '10.1.0.3', hi: '10.1.0.3' },
    ]);
  });

  it('ignores other sets, other tables and other messages', () => {
    const k = key('10.1.0.5', '10.1.0.7', 6, 8000);
    const other = Buffer.concat([
      notification(12, 'vxnet-policy', 'allow_out', [[k, k]]),
      notification(12, 'vxnet-antispoof', 'allow_in', [[k, k]]),
      notification(13, 'vxnet-policy', 'allow_in', [[k, k]]), // GETSETELEM
    ]);
    expect(elementEvents(other, 'vxnet-policy', 'allow_in')).toEqual([]);
  });
});

describe('ipv4Span', () => {
  it('reads an address, a range and a prefix as nft prints them', () => {
    expect(ipv4Span('10.0.0.1')).toEqual([0x0a000001, 0x0a000001]);
    expect(ipv4Span('10.0.0.1-10.0.0.9')).toEqual([0x0a000001, 0x0a000009]);
    expect(ipv4Span('10.0.0.0/30')).toEqual([0x0a000000, 0x0a000003]);
    expect(ipv4Span('255.255.255.255')).toEqual([0xffffffff, 0xffffffff]);
  });

  it('refuses what is not an IPv4 address', () => {
    expect(ipv4Span('10.0.0')).toBeNull();
    expect(ipv4Span('10.0.0.256')).toBeNull();
    expect(ipv4Span('fd00::1')).toBeNull();
  });
});

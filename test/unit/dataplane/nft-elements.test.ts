import { batchDatagram, keyBytes } from '../../../src/dataplane/nft-elements';

/** Splits a datagram into its netlink messages: [type, flags, seq, family, resId, payload]. */
function messages(d: Buffer): Array<{ type: number; flags: number; seq: number; family: number; resId: number; attrs: Buffer }> {
  const out = [];
  for (let off = 0; off < d.length; ) {
    const len = d.readUInt32LE(off);
    out.push({ type: d.readUInt16LE(off + 4), flags: d.readUInt16LE(off + 6), seq: d.readUInt32LE(off + 8), family: d.readUInt8(off + 16), resId: d.readUInt16BE(off + 18), attrs: d.subarray(off + 20, off + len) });
    off += Math.ceil(len / 4) * 4;
  }
  return out;
}

describe('src/dataplane/nft-elements.ts (wire format)', () => {
  const key = keyBytes([{ type: 'ifname', value: 'vxe-1' }, { type: 'ipv4_addr', value: '10.0.0.2' }]);

  it('wraps one message per set in a batch, in one datagram, each set message asking for an ACK', () => {
    const { datagram, seqs } = batchDatagram([{ family: 'bridge', table: 'vxnet-antispoof', set: 'v4', keys: [key] }, { family: 'inet', table: 't', set: 's', keys: [key] }], 100);
    const m = messages(datagram);
    expect(m.map((x) => x.type)).toEqual([0x10, 0x0a0c, 0x0a0c, 0x11]);
    expect(m.map((x) => x.seq)).toEqual([100, 101, 102, 103]);
    expect(seqs).toEqual([101, 102]);
    // Batch begin/end name the nf_tables subsystem in res_id (network byte order).
    expect([m[0].resId, m[3].resId]).toEqual([10, 10]);
    // REQUEST|ACK|CREATE, no EXCL: adding an element that is there is not an error.
    expect(m[1].flags).toBe(0x1 | 0x4 | 0x400);
    expect([m[1].family, m[2].family]).toEqual([7, 1]);
    // Table and set names as NUL-terminated strings, then the nested element list holding the key.
    expect(m[1].attrs.includes(Buffer.from('vxnet-antispoof\0'))).toBe(true);
    expect(m[1].attrs.includes(key)).toBe(true);
  });

  it('removes with DESTROYSETELEM (no error for an element that is not there)', () => {
    const m = messages(batchDatagram([{ op: 'destroy', family: 'bridge', table: 't', set: 's', keys: [key] }], 1).datagram);
    expect(m[1].type).toBe(0x0a1e);
    expect(m[1].flags).toBe(0x1 | 0x4);
  });

  it('refuses a key field that does not fit', () => {
    expect(() => keyBytes([{ type: 'ifname', value: 'a-name-longer-than-15' }])).toThrow(/too long/);
    expect(() => keyBytes([{ type: 'ipv4_addr', value: 'fe80::1' }])).toThrow(/not an ipv4_addr/);
  });
});

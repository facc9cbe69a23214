// The ctnetlink messages of src/dataplane/conntrack.ts (pure); the kernel test is
// test/integration/dataplane-conntrack.test.ts.
import { flowNaming, deleteBody, dumpBody, filteredDumps, FILTER_ABOVE } from '../../../src/dataplane/conntrack';
import { attr, nest, u32 } from '../../../src/dataplane/nlmsg';

describe('src/dataplane/conntrack.ts (messages)', () => {
  it('finds an entry naming an address in either direction and names it by its original tuple and zone', () => {
    const ip = (type: number, a: number[]) => attr(type, Buffer.from(a));
    const orig = Buffer.concat([nest(1, [ip(1, [10, 0, 0, 2]), ip(2, [10, 0, 0, 1])]), nest(2, [attr(1, Buffer.from([17]))])]);
    const reply = nest(1, [ip(1, [10, 0, 0, 1]), ip(2, [10, 0, 0, 2])]);
    const zone = Buffer.from([0, 7]);
    const body = Buffer.concat([Buffer.from([2, 0, 0, 0]), nest(1, [orig]), nest(2, [reply]), attr(18, zone)]);
    const flow = flowNaming(body, [Buffer.from([10, 0, 0, 1])]);
    expect(flow).toEqual({ family: 2, orig, zone });
    expect(deleteBody(flow!)).toEqual(Buffer.concat([Buffer.from([2, 0, 0, 0]), nest(1, [orig]), attr(18, zone)]));
    expect(flowNaming(body, [Buffer.from([10, 0, 0, 3])])).toBeNull();
    expect(flowNaming(body, [Buffer.from([10, 0, 0, 2]), Buffer.from([10, 0, 0, 9])])).toEqual(flow);
    // Named only in the reply direction (a published port's DNAT): still the entry.
    const dnat = Buffer.concat([Buffer.from([2, 0, 0, 0]), nest(1, [nest(1, [ip(1, [172, 31, 0, 9]), ip(2, [172, 31, 0, 1])])]), nest(2, [nest(1, [ip(1, [10, 0, 0, 5]), ip(2, [172, 31, 0, 9])])])]);
    expect(flowNaming(dnat, [Buffer.from([10, 0, 0, 5])])?.family).toBe(2);
    expect(flowNaming(Buffer.from([2, 0, 0, 0]), [Buffer.from([10, 0, 0, 1])])).toBeNull();
  });

  it('asks the kernel for the entries whose source in one direction is the address (CTA_FILTER)', () => {
    const v4 = Buffer.from([10, 0, 0, 5]);
    // nfgenmsg AF_INET; CTA_TUPLE_REPLY { CTA_TUPLE_IP { CTA_IP_V4_SRC } }; CTA_FILTER (25) { CTA_FILTER_REPLY_FLAGS: IP_SRC }
    expect(dumpBody(v4, 2)).toEqual(Buffer.concat([Buffer.from([2, 0, 0, 0]), nest(2, [nest(1, [attr(1, v4)])]), nest(25, [attr(2, u32(1))])]));
    const v6 = Buffer.alloc(16, 0xfd);
    expect(dumpBody(v6, 1)).toEqual(Buffer.concat([Buffer.from([10, 0, 0, 0]), nest(1, [nest(1, [attr(3, v6)])]), nest(25, [attr(1, u32(1))])]));
  });

  it('has the kernel filter the dumps only above FILTER_ABOVE entries per address', () => {
    expect(filteredDumps(FILTER_ABOVE, 1)).toBe(false);
    expect(filteredDumps(FILTER_ABOVE + 1, 1)).toBe(true);
    // Two filtered walks per address: a dual-stack endpoint, or two endpoints sharing a cleanup.
    expect(filteredDumps(2 * FILTER_ABOVE, 2)).toBe(false);
    expect(filteredDumps(2 * FILTER_ABOVE + 1, 2)).toBe(true);
    expect(filteredDumps(10_000, 10)).toBe(false);
    expect(filteredDumps(1, 1, 0)).toBe(true);
  });
});

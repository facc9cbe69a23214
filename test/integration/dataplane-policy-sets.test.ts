// The policy table's set changes over netlink (src/dataplane/policy-table.ts elementBatches,
// src/dataplane/nft-elements.ts) in the test's private netns: what they leave in the kernel is
// exactly what `nft -f` leaves for the same elements (plain address sets and the IPv4 interval
// sets of rules), a moved source swaps in one change, and removal leaves nothing.
import { closeNftElements } from '../../src/dataplane/nft-elements';
import { elementBatches, emptyPolicySets, listPolicyElements, PolicySets, removePolicyTable, replacePolicySets, updatePolicySets } from '../../src/dataplane/policy-table';

const EP = '10.77.0.5';
const RULED: PolicySets = {
  ...emptyPolicySets(),
  policedIn: [EP],
  policedOut: [EP],
  allowIn: [
    `${EP} . 10.77.0.7 . 6 . 8000`,
    `${EP} . 10.77.0.9 . 17 . 53-60`,
    `${EP} . 10.200.0.0-10.200.255.255 . 0-255 . 0-65535`,
    `${EP} . 10.201.0.3-10.201.0.6 . 6 . 22`,
  ],
  allowOut: [`${EP} . 10.77.0.0-10.77.0.255 . 0-255 . 0-65535`, `${EP} . 192.0.2.0-192.0.2.255 . 6 . 443`],
};

function sorted(s: PolicySets | null): PolicySets | null {
  if (!s) return null;
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, [...v].sort()])) as PolicySets;
}

describe('src/dataplane/policy-table.ts set changes over netlink (kernel)', () => {
  afterAll(async () => {
    await removePolicyTable();
    closeNftElements();
  });

  it('rules written over netlink read back exactly as the same rules written by nft', async () => {
    await replacePolicySets(RULED);
    const byNft = sorted(await listPolicyElements());
    await replacePolicySets(emptyPolicySets());
    expect(elementBatches(emptyPolicySets(), RULED)).not.toBeNull();
    await updatePolicySets(emptyPolicySets(), RULED);
    const byNetlink = sorted(await listPolicyElements());
    expect(byNetlink).toEqual(byNft);
    expect(byNetlink).toEqual(sorted(RULED));
  });

  it('a named source that moved: the old address leaves and the new one comes in one change', async () => {
    const moved: PolicySets = { ...RULED, allowIn: RULED.allowIn.map((e) => e.replace(' 10.77.0.7 ', ' 10.77.0.11 ')) };
    await updatePolicySets(RULED, moved);
    const now = await listPolicyElements();
    expect(now?.allowIn).toContain(`${EP} . 10.77.0.11 . 6 . 8000`);
    expect(now?.allowIn).not.toContain(`${EP} . 10.77.0.7 . 6 . 8000`);
    expect(sorted(now)).toEqual(sorted(moved));
    await updatePolicySets(moved, emptyPolicySets());
    expect(await listPolicyElements()).toEqual(emptyPolicySets());
  });

  it('an overlapping rule element is refused by the kernel and changes nothing', async () => {
    await updatePolicySets(emptyPolicySets(), RULED);
    const overlap: PolicySets = { ...RULED, allowIn: [...RULED.allowIn, `${EP} . 10.200.1.0-10.200.1.255 . 6 . 80`] };
    await expect(updatePolicySets(RULED, overlap)).rejects.toThrow(/update the vxnet-policy sets/);
    expect(sorted(await listPolicyElements())).toEqual(sorted(RULED));
  });
});

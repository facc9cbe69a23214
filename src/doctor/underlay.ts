// The VTEP and the underlay MTU, resolved exactly as `vxnet run` resolves them. A network's frames
// travel inside UDP on the underlay: its MTU must carry the inner MTU plus what VXLAN adds, or
// full-size frames are dropped without a trace on any host.
import { VxnetError, causeText } from '../errors';
import { VXLAN_OVERHEAD, FALLBACK_MTU } from '../underlay';
import { Check, Verdict, fail, pass, warn } from './check';
import type { DoctorContext, Underlay } from './context';

const VTEP_FIX = 'set VXNET_VTEP_IP to an address of this host, or VXNET_VTEP_INTERFACE to the interface that faces the other hosts';

/** The underlay could not be resolved: vxnet run refuses to start for the same reason. */
export function underlayFailure(err: unknown): Verdict {
  return fail(err instanceof VxnetError ? err.message : causeText(err), VTEP_FIX);
}

export const vtepCheck: Check<DoctorContext> = {
  name: 'vtep',
  async run(ctx) {
    let u: Underlay;
    try {
      u = await ctx.underlay();
    } catch (err) {
      return underlayFailure(err);
    }
    if (!u.vtep) return pass('single host (embedded store, no VTEP set): no tunnels');
    return pass(`${u.vtep.ip} on ${u.vtep.iface}`);
  },
};

/** Pure: whether the underlay interface carries the inner MTU plus the VXLAN overhead. */
export function mtuVerdict(u: Underlay, explicit: boolean): Verdict {
  // No VTEP, no tunnel: nothing adds to a frame, so no interface has to carry more than it.
  if (!u.vtep) return pass(`single host (no VTEP): no VXLAN overhead; networks get MTU ${u.innerMtu}${explicit ? ' (VXNET_MTU)' : ''} unless they set one`);
  if (!u.iface) {
    return warn(
      `no VTEP interface and no default route: networks get ${explicit ? `VXNET_MTU ${u.innerMtu}` : `the fallback MTU ${FALLBACK_MTU}`}, checked against nothing`,
      'set VXNET_VTEP_INTERFACE (or VXNET_MTU to the underlay MTU - 50)',
    );
  }
  if (u.ifaceMtu === null) return fail(`the underlay interface ${u.iface} is gone`, VTEP_FIX);
  const need = u.innerMtu + VXLAN_OVERHEAD;
  const source = explicit ? 'VXNET_MTU' : 'derived inner MTU';
  if (u.ifaceMtu >= need) return pass(`${u.iface} MTU ${u.ifaceMtu} carries ${source} ${u.innerMtu} + ${VXLAN_OVERHEAD} bytes of VXLAN`);
  return fail(
    `${u.iface} MTU ${u.ifaceMtu} is below ${source} ${u.innerMtu} + ${VXLAN_OVERHEAD} = ${need}: full-size frames would be dropped`,
    `lower VXNET_MTU to ${u.ifaceMtu - VXLAN_OVERHEAD}, or raise the MTU of ${u.iface} to ${need} (ip link set dev ${u.iface} mtu ${need})`,
  );
}

export const mtuCheck: Check<DoctorContext> = {
  name: 'underlay-mtu',
  async run(ctx) {
    try {
      return mtuVerdict(await ctx.underlay(), ctx.config.mtu !== null);
    } catch (err) {
      return underlayFailure(err);
    }
  },
};

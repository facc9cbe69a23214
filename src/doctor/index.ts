// `vxnet doctor`: every check in the order an operator would fix things (kernel, underlay, store,
// dockerd, socket, firewall), against the same settings `vxnet run` reads.
import type { Config } from '../config';
import { Check, CheckResult, runChecks } from './check';
import { doctorContext, DoctorContext } from './context';
import { kernelCheck, modulesCheck } from './kernel';
import { mtuCheck, vtepCheck } from './underlay';
import { storeCheck } from './store';
import { vtepPathCheck } from './vtep-path';
import { dockerdCheck } from './dockerd';
import { socketCheck, socketDirCheck } from './socket';
import { forwardCheck } from './forward';
import { antispoofCheck } from './antispoof';
import { bridgeNfCheck } from './bridge-nf';
import { poolsCheck } from './pools';
import { ipForwardCheck } from './ip-forward';
import { dnsCheck } from './dns';

export type { CheckResult, CheckStatus } from './check';
export { exitCode } from './check';

// modules before kernel: the probe itself makes the kernel load what it lacks.
export const CHECKS: Check<DoctorContext>[] = [
  modulesCheck,
  kernelCheck,
  vtepCheck,
  mtuCheck,
  poolsCheck,
  storeCheck,
  vtepPathCheck,
  dockerdCheck,
  socketDirCheck,
  socketCheck,
  forwardCheck,
  antispoofCheck,
  bridgeNfCheck,
  ipForwardCheck,
  dnsCheck,
];

export async function runDoctor(config: Config): Promise<CheckResult[]> {
  const ctx = doctorContext(config);
  try {
    return await runChecks(CHECKS, ctx);
  } finally {
    await ctx.close();
  }
}

// Kernel checks: can this kernel make what vxnet makes (a bridge, a veth pair, a VXLAN device),
// and which of their modules are loaded. The probe runs in a namespace of its own
// (kernel-probe.ts), so the host's links are never touched.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Check, Verdict, fail, pass, warn } from './check';
import type { DoctorContext } from './context';
import { lastLine, runCommand } from './exec';
import { readOrNull } from './files';
import { probeCommand, ProbeObject, ProbeStep } from './kernel-probe';

const PROBE_SCRIPT = path.join(__dirname, 'kernel-probe.js');
const PROBE_TIMEOUT_MS = 4000;

const FIX: Record<ProbeObject, string> = {
  bridge: 'load the bridge module (modprobe bridge), or use a kernel built with CONFIG_BRIDGE',
  veth: 'load the veth module (modprobe veth), or use a kernel built with CONFIG_VETH',
  vxlan: 'load the vxlan module (modprobe vxlan), or use a kernel built with CONFIG_VXLAN',
};

export const MODULES: readonly ProbeObject[] = ['bridge', 'veth', 'vxlan'];

/** Pure: the failed step as a check result, or a pass when every step worked. */
export function probeVerdict(steps: ProbeStep[]): Verdict {
  const bad = steps.find((s) => s.error !== null);
  if (bad) return fail(`could not ${bad.action} a ${bad.object} in a throwaway network namespace: ${bad.error}`, FIX[bad.object]);
  const made = steps.filter((s) => s.action === 'create').map((s) => s.object);
  if (made.length !== MODULES.length) return fail(`the probe stopped after ${made.join(', ') || 'nothing'}`, 'run vxnet doctor again; report it if it persists');
  return pass('bridge, veth pair and VXLAN device created and deleted in a throwaway network namespace');
}

export const kernelCheck: Check<DoctorContext> = {
  name: 'kernel',
  timeoutFix: 'the kernel probe hangs: look for stuck netlink requests (dmesg)',
  async run() {
    if (!fs.existsSync(PROBE_SCRIPT)) return warn(`cannot probe: ${PROBE_SCRIPT} is missing`, 'run the built vxnet (npm run build)');
    const r = await runCommand('unshare', probeCommand(PROBE_SCRIPT), PROBE_TIMEOUT_MS);
    if (!r) return warn('cannot probe: unshare is not installed', 'apt-get install util-linux');
    if (r.code !== 0) return fail(`could not run the probe in a throwaway network namespace: ${lastLine(r)}`, 'run vxnet doctor as root');
    let steps: ProbeStep[];
    try {
      steps = JSON.parse(r.stdout) as ProbeStep[];
    } catch {
      return fail(`the probe printed no result: ${lastLine(r)}`, 'report this as a vxnet bug, with this line');
    }
    return probeVerdict(steps);
  },
};

export type ModuleState = 'loaded' | 'built in' | 'not loaded';

/**
 * Pure. /proc/modules lists loaded modules; without it the kernel has no loadable modules and
 * everything it has is built in. A built-in part shows in /sys/module only if it has parameters,
 * so "not loaded" may also mean built in without any: the kernel probe is what decides.
 */
export function moduleState(name: string, procModules: string | null, inSysModule: boolean): ModuleState {
  if (procModules === null) return 'built in';
  if (procModules.split('\n').some((l) => l.split(' ')[0] === name)) return 'loaded';
  return inSysModule ? 'built in' : 'not loaded';
}

/** Informational: a module that is not loaded is loaded by the kernel on first use. */
export const modulesCheck: Check<DoctorContext> = {
  name: 'modules',
  async run() {
    const proc = readOrNull('/proc/modules');
    const states = MODULES.map((m) => `${m} ${moduleState(m, proc, fs.existsSync(`/sys/module/${m}`))}`);
    const note = proc === null ? ' (this kernel has no loadable modules)' : '';
    return pass(`${states.join(', ')}${note}`);
  },
};

// The kernel probe of `vxnet doctor`, run as its own process inside a network namespace made for
// it (`unshare --net`): the namespace vanishes with the process, so nothing the probe creates can
// outlive it or touch the host's links, even if it is killed halfway. It uses vxnet's own
// dataplane code, so it tests what `vxnet run` does, not what iproute2 can do.
import * as fs from 'node:fs';
import { causeText } from '../errors';
import { closeRtnl, ensureBridge, ensureVeth, ensureVxlan, removeBridge, removeVeth, removeVxlan } from '../dataplane';

export type ProbeObject = 'bridge' | 'veth' | 'vxlan';

export interface ProbeStep {
  object: ProbeObject;
  action: 'create' | 'delete';
  /** null when it worked. */
  error: string | null;
}

const BRIDGE = 'vxdoc-br';
const VXLAN_VNI = 42;
const VXLAN_PORT = 4789;

const CREATE: Array<[ProbeObject, () => Promise<void>]> = [
  ['bridge', () => ensureBridge({ name: BRIDGE, mtu: 1500, mac: '02:76:78:00:00:01', addresses: [] })],
  ['veth', () => ensureVeth({ hostName: 'vxdoc-ve', peerName: 'vxdoc-vc', mtu: 1500, peerMac: '02:76:78:00:00:02', bridge: BRIDGE })],
  // The address only has to be one the device may bind; no packet is sent.
  ['vxlan', () => ensureVxlan({ name: 'vxdoc-vx', vni: VXLAN_VNI, port: VXLAN_PORT, local: '127.0.0.1', mtu: 1450, bridge: BRIDGE })],
];

const DELETE: Record<ProbeObject, () => Promise<void>> = {
  vxlan: () => removeVxlan('vxdoc-vx'),
  veth: () => removeVeth('vxdoc-ve'),
  bridge: () => removeBridge(BRIDGE),
};

/** Creates each object in turn, stopping at the first failure, then deletes what was made. */
export async function probeKernel(): Promise<ProbeStep[]> {
  const steps: ProbeStep[] = [];
  const made: ProbeObject[] = [];
  for (const [object, create] of CREATE) {
    const error = await attempt(create);
    steps.push({ object, action: 'create', error });
    if (error) break;
    made.push(object);
  }
  for (const object of made.reverse()) steps.push({ object, action: 'delete', error: await attempt(DELETE[object]) });
  return steps;
}

async function attempt(fn: () => Promise<void>): Promise<string | null> {
  try {
    await fn();
    return null;
  } catch (err) {
    return causeText(err);
  }
}

function netnsInode(): number {
  return fs.statSync('/proc/self/ns/net').ino;
}

/** The parent passes its own namespace: refusing to run there keeps the host's links untouched. */
async function main(parentNetns: string | undefined): Promise<number> {
  if (!parentNetns || String(netnsInode()) === parentNetns) {
    process.stderr.write('kernel-probe: refusing to run outside a throwaway network namespace\n');
    return 2;
  }
  const steps = await probeKernel();
  closeRtnl();
  process.stdout.write(`${JSON.stringify(steps)}\n`);
  return 0;
}

export function probeCommand(script: string): string[] {
  return ['--net', '--', process.execPath, script, String(netnsInode())];
}

if (require.main === module) {
  main(process.argv[2]).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`kernel-probe: ${causeText(err)}\n`);
      process.exit(1);
    },
  );
}

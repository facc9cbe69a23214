// Test image for the simulated hosts: busybox-static with a symlink for every applet (sh, ping, ip,
// sleep, nc, wget, cat, hostname, ifconfig, httpd, ...) and Debian's socat for UDP (busybox nc has
// none). No registry is reachable: the image is made with `tar | docker import` by test/hosts/image.sh. Busybox-only image: use `sh -c true`, not `true`.
import * as path from 'path';
import { Host, run, describeFailure, REPO_ROOT } from './hosts';

export const TEST_IMAGE = 'vxt-busybox:local';
export const IMAGE_SH = path.join(REPO_ROOT, 'test/hosts/image.sh');

/** Import the test image into the host's dockerd unless it is already there. */
export async function ensureTestImage(host: Host, image: string = TEST_IMAGE): Promise<void> {
  if (!host.dockerSocket) throw new Error(`host ${host.name} has no dockerd`);
  const r = await run('bash', [IMAGE_SH, host.dockerSocket, image], { timeoutMs: 120_000 });
  if (r.code !== 0) throw describeFailure(`image.sh ${host.name} ${image}`, r);
}

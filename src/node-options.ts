// node's own flags for the driver process. Every way vxnet starts the driver passes them in
// NODE_OPTIONS: scripts/start.sh (`npm start`), the `vxnet` command and the systemd unit that
// driver/install.sh writes, the managed plugin's settings (docker-plugin/config.json) and the
// tests' hosts. A NODE_OPTIONS of the user's own replaces them (test/unit/node-options.test.ts
// checks that each of those places says the same).
//
// --max-semi-space-size=4: V8's young generation is two semi-spaces that grow, under a burst of
// allocation, to node's default of 16 MB each, and stay resident as long as the burst lasts. With
// 10,000 endpoint records arriving over 3 hosts a driver's heap was 32 MB young generation for
// 36 MB of live objects. At 4 MB (bench:memory --endpoints 10000, one run each, MB per driver):
// RSS after the burst 140-144 -> 117-124, at start 92 -> 84, a restarted driver 150 -> 121, the
// burst 52 -> 49 s. (Before the policy engine stopped recomputing every endpoint per change, the
// same flag made the burst 1.8x slower: most of what the scavenges then copied was its garbage.)
export const DRIVER_NODE_OPTIONS = '--max-semi-space-size=4';

/** Whether node was started with a young generation limit (command line or NODE_OPTIONS). */
export function youngGenerationLimited(execArgv: string[], nodeOptions: string | undefined): boolean {
  return [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].some((a) => /^--max[-_]semi[-_]space[-_]size\b/.test(a));
}

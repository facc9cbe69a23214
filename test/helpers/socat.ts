// Echo servers and clients in busybox test containers, with socat from the machine mounted
// read-only (as in egress-isolation.test.ts): what policy tests connect with.
import type { Host } from './hosts';

export const SOCAT_MOUNTS = [
  '-v', '/usr/bin/socat:/bin/socat:ro',
  '-v', '/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:ro',
  '-v', '/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro',
  '-v', '/usr/lib64:/lib64:ro',
];
export const ECHO_PORTS = ['8000', '8001'];

/** What the echo server at ip:port answered (the client address it saw), or null when refused. */
export async function tcp(h: Host, c: string, ip: string, port: string, timeoutS = 2): Promise<string | null> {
  const cmd = `echo hi | timeout ${timeoutS + 1} socat -t 2 - TCP:${ip}:${port},connect-timeout=${timeoutS}`;
  const r = await h.docker(['exec', c, 'sh', '-c', cmd], { timeoutMs: 20_000 });
  return r.code === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : null;
}

/** Echo servers on ECHO_PORTS in a container. */
export async function serve(h: Host, c: string): Promise<void> {
  for (const p of ECHO_PORTS) await h.dockerOk(['exec', '-d', c, 'socat', `TCP-LISTEN:${p},fork,reuseaddr`, 'SYSTEM:echo $SOCAT_PEERADDR']);
}

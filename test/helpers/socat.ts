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

/**
 * socat's arguments for a TCP server on `listen` (`TCP-LISTEN:8000,fork,reuseaddr`, …) that
 * answers every client with the address it saw.
 *
 * The client sends one line and closes its side at once, which gave socat's default server two
 * races with its answering child (a fork and exec of sh), each ending the connection without the
 * answer: socat gives the child only `-t` seconds (0.5 by default) after the client's close, and
 * when `echo` had already exited, socat's write of the client's line into it failed (EPIPE) and
 * socat quit. With 8 busy loops on this 2-core machine the default server sent nothing to 29 of
 * 150 clients, this one to 0 of 150. A client's empty read looks like a refused connection: the
 * "first connection to the outside failed" of 2 in 5 full runs and some failed probes of an
 * allowed client in the kill -9 churn test. So the child reads the client's line to its end, and
 * `-t 10` only bounds the wait for a slow child: one that answers ends the connection at once.
 */
export function echoServer(listen: string): string[] {
  return ['-t', '10', listen, 'SYSTEM:echo $SOCAT_PEERADDR; cat >/dev/null'];
}

/** Echo servers on ECHO_PORTS in a container. */
export async function serve(h: Host, c: string): Promise<void> {
  for (const p of ECHO_PORTS) await h.dockerOk(['exec', '-d', c, 'socat', ...echoServer(`TCP-LISTEN:${p},fork,reuseaddr`)]);
}

// A real single-member etcd for store tests: 127.0.0.1 only, ports picked from 23790 up after
// checking they are free, data under a fresh /tmp directory removed by stop(). The process can be
// paused (SIGSTOP: connections stay open, nothing answers, like a hung host), killed (like a
// crash) and restarted on the same data (revisions and leases survive, as after a reboot).
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const ETCD_BIN = process.env.VXT_ETCD_BIN ?? '/usr/bin/etcd';
const FIRST_PORT = 23790;
const LAST_PORT = 23990;
const HEALTHY_WITHIN_MS = 15000;

export interface EtcdTls {
  ca: string;
  cert: string;
  key: string;
}

export interface EtcdProcess {
  /** http://127.0.0.1:PORT, or https:// when started with tls. */
  endpoint: string;
  /** Client-side PEM files (CA, client cert, client key) when started with tls. */
  tls: EtcdTls | null;
  pid(): number;
  /** SIGSTOP: the process stays, its sockets stay open, nothing answers. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** SIGKILL, and waits until it is gone. */
  kill(): Promise<void>;
  /** Starts again on the same ports and data (after kill()), and waits until healthy. */
  restart(): Promise<void>;
  /** Kills the process and removes its data directory. */
  stop(): Promise<void>;
}

/** opts.tls: serve clients over TLS and require a client certificate (made here with openssl). */
export async function startEtcd(opts: { tls?: boolean } = {}): Promise<EtcdProcess> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-etcd-'));
  const [clientPort, peerPort] = await freePorts(2);
  const tls = opts.tls ? makeCerts(dataDir) : null;
  const member = memberUrls(clientPort, peerPort, tls !== null);
  const m = await startMember(member, `${member.name}=${member.peer}`, dataDir, tls);
  return { ...m, stop: async () => {
    await m.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  } };
}

export interface EtcdCluster {
  /** The client URLs of every member, in member order. */
  endpoints: string[];
  members: EtcdProcess[];
  /** Kills every member and removes the data. */
  stop(): Promise<void>;
}

/**
 * An n-member cluster on 127.0.0.1 (plain HTTP). Members start together (each waits for a quorum
 * before it reports healthy); kill() and restart() one to take it out and bring it back.
 */
export async function startEtcdCluster(n: number): Promise<EtcdCluster> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vxnet-etcd-'));
  const ports = await freePorts(2 * n);
  const urls = Array.from({ length: n }, (_, i) => memberUrls(ports[2 * i], ports[2 * i + 1], false));
  const cluster = urls.map((u) => `${u.name}=${u.peer}`).join(',');
  const started = await Promise.allSettled(urls.map((u) => startMember(u, cluster, dataDir, null)));
  const members = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(members.map((m) => m.stop()));
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { endpoints: urls.map((u) => u.endpoint), members, stop };
}

interface MemberUrls {
  name: string;
  endpoint: string;
  peer: string;
}

function memberUrls(clientPort: number, peerPort: number, tls: boolean): MemberUrls {
  return {
    name: `vxt${clientPort}`,
    endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`,
    peer: `http://127.0.0.1:${peerPort}`,
  };
}

/** One etcd process; its data lives in parentDir/<name> (stop() only kills, the caller removes). */
async function startMember(
  member: MemberUrls,
  initialCluster: string,
  parentDir: string,
  tls: ReturnType<typeof makeCerts> | null,
): Promise<EtcdProcess> {
  const { name, endpoint, peer } = member;
  const args = [
    '--name', name,
    '--data-dir', path.join(parentDir, name),
    '--listen-client-urls', endpoint,
    '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer,
    '--initial-advertise-peer-urls', peer,
    '--initial-cluster', initialCluster,
    '--initial-cluster-state', 'new',
    '--logger', 'zap',
    '--log-level', 'error',
    ...(tls ? ['--cert-file', tls.server.cert, '--key-file', tls.server.key, '--trusted-ca-file', tls.client.ca, '--client-cert-auth'] : []),
  ];
  const logPath = path.join(parentDir, `${name}.log`);
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  async function launch(): Promise<void> {
    const log = fs.openSync(logPath, 'a');
    const c = spawn(ETCD_BIN, args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    await waitHealthy(endpoint, c, logPath, tls?.client ?? null);
  }

  async function killNow(): Promise<void> {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    await exited;
  }

  const onExit = (): void => {
    const c = child;
    if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', onExit);

  await launch();
  return {
    endpoint,
    tls: tls?.client ?? null,
    pid: () => child?.pid ?? -1,
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    kill: killNow,
    restart: async () => {
      await killNow();
      await launch();
    },
    stop: async () => {
      await killNow();
      process.removeListener('exit', onExit);
    },
  };
}

async function waitHealthy(endpoint: string, c: ChildProcess, logPath: string, tls: EtcdTls | null): Promise<void> {
  const until = Date.now() + HEALTHY_WITHIN_MS;
  while (Date.now() < until) {
    if (c.exitCode !== null || c.signalCode !== null) {
      throw new Error(`etcd exited (${c.exitCode ?? c.signalCode}): ${tail(logPath)}`);
    }
    if (await healthy(endpoint, tls)) return;
    await sleep(50);
  }
  c.kill('SIGKILL');
  throw new Error(`etcd at ${endpoint} not healthy within ${HEALTHY_WITHIN_MS} ms: ${tail(logPath)}`);
}

function healthy(endpoint: string, tls: EtcdTls | null): Promise<boolean> {
  return new Promise((resolve) => {
    const get = tls ? https.get : http.get;
    const req = get(
      `${endpoint}/health`,
      { timeout: 1000, ...(tls ? { ca: fs.readFileSync(tls.ca), cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) } : {}) },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body.includes('"health":"true"')));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate. */
function makeCerts(dir: string): { server: { cert: string; key: string }; client: EtcdTls } {
  const f = (name: string): string => path.join(dir, name);
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=vxnet-test-ca',
    '-keyout', f('ca.key'), '-out', f('ca.pem'));
  for (const [name, ext] of [['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'], ['client', 'extendedKeyUsage=clientAuth']]) {
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=vxnet-test-${name}`,
      '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    fs.writeFileSync(f(`${name}.ext`), ext);
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1',
      '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`));
  }
  return {
    server: { cert: f('server.pem'), key: f('server.key') },
    client: { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key') },
  };
}

/** Ports in the test range that nothing listens on right now. */
async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  // Start at a pid-dependent offset so two jest processes rarely probe the same ports.
  const span = LAST_PORT - FIRST_PORT;
  const start = (process.pid * 7) % span;
  for (let i = 0; i < span && out.length < n; i++) {
    const port = FIRST_PORT + ((start + i) % span);
    if (await portFree(port)) out.push(port);
  }
  if (out.length < n) throw new Error(`no free ports in ${FIRST_PORT}-${LAST_PORT}`);
  return out;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '(no log)';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

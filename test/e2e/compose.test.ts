// examples/compose/docker-compose.yml brought up by Debian 12's docker-compose (1.29, Python; API
// pinned to 1.38) against a simulated host's dockerd 20.10 and 26.1, and by Debian 13's Compose v2
// (2.26, the Go binary CI pipelines run as `docker compose`) against dockerd 26.1, with vxnet as
// network and IPAM driver. Compose only talks to the Engine API, so it runs outside the host with
// DOCKER_HOST set to the host's dockerd socket. All runs use the same host name and address, one
// after the other.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, upHost, downHost, run, describeFailure, ExecResult, REPO_ROOT } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, storedKeys } from '../helpers/vxnet-in-host';
import { containerIp, vxLinks } from '../helpers/docker-inspect';

jest.setTimeout(300_000);

const COMPOSE_FILE = path.join(REPO_ROOT, 'examples/compose/docker-compose.yml');
const COMPOSE_V1 = process.env.DOCKER_COMPOSE || '/usr/bin/docker-compose';
/** Unpacked from Debian 13 by scripts/install-deps.sh. */
const COMPOSE_V2 = process.env.DOCKER_COMPOSE_V2 || `${process.env.VXT_CACHE || '/var/cache/vxnet-test'}/compose2/usr/bin/docker-compose`;
const PROJECT = 'vxtc';
const NET = `${PROJECT}_appnet`;
const HOST_NAME = 'vxt-c1';
const HOST_IP = '172.31.254.98';
const SERVER_IP = '10.88.0.10';

interface Flavour {
  compose: string;
  v2: boolean;
  /** What `version --short` prints. */
  versionRe: RegExp;
  /** The line compose prints when it creates / removes the network (stderr). */
  createdRe: RegExp;
  removedRe: RegExp;
  /** A second `up -d` that changes nothing says so. */
  unchangedRe: RegExp;
}

const V1: Flavour = {
  compose: COMPOSE_V1,
  v2: false,
  versionRe: /^1\.29\./,
  createdRe: new RegExp(`Creating network "${NET}" with driver "vxnet"`),
  removedRe: new RegExp(`Removing network ${NET}`),
  unchangedRe: /is up-to-date/,
};
const V2: Flavour = {
  compose: COMPOSE_V2,
  v2: true,
  versionRe: /^v?2\.26\./,
  createdRe: new RegExp(`Network ${NET}\\s+Created`),
  removedRe: new RegExp(`Network ${NET}\\s+Removed`),
  unchangedRe: new RegExp(`Container ${PROJECT}-server-1\\s+Running`),
};

describe.each([
  ['1.29', '20', V1],
  ['1.29', '26', V1],
  ['v2', '26', V2],
] as Array<[string, '20' | '26', Flavour]>)('docker-compose %s with vxnet on dockerd %s', (_label, version, flavour) => {
  const COMPOSE = flavour.compose;
  let host: Host;
  let driver: Driver | undefined;

  /** docker-compose against this host's dockerd (through its socket; compose only speaks the API). */
  function compose(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: host.dockerHost as string, VXNET_EXAMPLE_IMAGE: TEST_IMAGE };
    for (const k of ['DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'COMPOSE_FILE', 'COMPOSE_PROJECT_NAME', 'COMPOSE_API_VERSION']) {
      delete env[k];
    }
    return run(COMPOSE, ['--ansi', 'never', '-f', COMPOSE_FILE, '-p', PROJECT, ...args], { env, timeoutMs });
  }
  async function composeOk(args: string[]): Promise<string> {
    const r = await compose(args);
    if (r.code !== 0) throw describeFailure(`[${host.name}] docker-compose ${args.join(' ')}`, r);
    return r.stdout.trim();
  }
  /** The container of a service (exactly one). */
  async function containerOf(service: string): Promise<string> {
    const ids = (await composeOk(['ps', '-q', service])).split('\n').filter(Boolean);
    expect(ids).toHaveLength(1);
    return ids[0];
  }
  async function ipOf(container: string): Promise<string> {
    return containerIp(host, NET, container);
  }

  beforeAll(async () => {
    if (!fs.existsSync(COMPOSE)) throw new Error(`${COMPOSE} is missing: run scripts/install-deps.sh (docker-compose: Debian 12's package, Debian 13's unpacked)`);
    host = await upHost(HOST_NAME, HOST_IP, { docker: version });
    await ensureTestImage(host);
    driver = await startDriver(host);
  });

  afterAll(async () => {
    if (!host) return;
    if (host.dockerHost) await compose(['down', '-t', '1']).catch(() => undefined);
    await driver?.stop();
    await downHost(host);
  });

  it('talks to the host dockerd of the expected version', async () => {
    expect(await composeOk(['version', '--short'])).toMatch(flavour.versionRe);
    expect(await host.dockerOk(['version', '--format', '{{.Server.Version}}'])).toMatch(version === '20' ? /^20\.10\./ : /^26\.1\./);
  });

  it('up -d creates the vxnet network from the compose file and starts both services', async () => {
    const r = await compose(['up', '-d']);
    if (r.code !== 0) throw describeFailure('docker-compose up -d', r);
    expect(r.stderr).toMatch(flavour.createdRe);
    const net = JSON.parse(await host.dockerOk(['network', 'inspect', NET]))[0];
    expect(net.Driver).toBe('vxnet');
    expect(net.IPAM.Driver).toBe('vxnet');
    expect(net.IPAM.Config).toEqual([{ Subnet: '10.88.0.0/24', IPRange: '10.88.0.128/25', Gateway: '10.88.0.1' }]);
    expect(net.Options).toEqual({ 'vxnet.network': 'compose-demo', 'com.docker.network.driver.mtu': '1400' });
    expect(net.Labels).toMatchObject({ 'com.docker.compose.project': PROJECT, 'com.docker.compose.network': 'appnet' });
    for (const s of ['server', 'client']) {
      expect(await host.dockerOk(['inspect', '-f', '{{.State.Status}}', await containerOf(s)])).toBe('running');
    }
    // vxnet made the bridge and the two veth pairs in the host.
    const links = await vxLinks(host);
    expect(links.filter((l) => l.startsWith('vxb-'))).toHaveLength(1);
    expect(links.filter((l) => l.startsWith('vxe-'))).toHaveLength(2);
  });

  it('gives the server its static ipv4_address and the client one from ip_range, at the network MTU', async () => {
    const server = await containerOf('server');
    const client = await containerOf('client');
    expect(await ipOf(server)).toBe(SERVER_IP);
    const cip = await ipOf(client);
    expect(cip).toMatch(/^10\.88\.0\.\d+$/);
    expect(Number(cip.split('.')[3])).toBeGreaterThanOrEqual(128);
    expect(await host.dockerOk(['exec', client, 'cat', '/sys/class/net/eth0/mtu'])).toBe('1400');
    expect(await host.dockerOk(['exec', server, 'ip', 'route'])).toMatch(/default via 10\.88\.0\.1 dev eth0/);
  });

  it('the client reached the server by service name on its own (its log)', async () => {
    let logs = '';
    for (let i = 0; i < 100 && !logs.includes('hello from server'); i++) {
      logs = await composeOk(['logs', '--no-color', 'client']);
      if (!logs.includes('hello from server')) await new Promise((r) => setTimeout(r, 200));
    }
    expect(logs).toContain(`PING server (${SERVER_IP})`);
    expect(logs).toMatch(/3 packets transmitted, 3 packets received, 0% packet loss/);
    expect(logs).toContain('hello from server');
  });

  it('client and server ping each other by service name and by IP', async () => {
    const server = await containerOf('server');
    const client = await containerOf('client');
    const cip = await ipOf(client);
    expect(await composeOk(['exec', '-T', 'client', 'ping', '-c', '2', '-W', '2', 'server'])).toMatch(/2 packets received/);
    expect(await host.dockerOk(['exec', client, 'ping', '-c', '2', '-W', '2', SERVER_IP])).toMatch(/2 packets received/);
    expect(await host.dockerOk(['exec', server, 'ping', '-c', '2', '-W', '2', 'client'])).toMatch(new RegExp(`PING client \\(${cip.replace(/\./g, '\\.')}\\)[\\s\\S]*2 packets received`));
    expect(await host.dockerOk(['exec', server, 'ping', '-c', '1', '-W', '2', '-s', '1372', cip])).toMatch(/1 packets received/);
  });

  it('a second up -d changes nothing (the network matches the compose file)', async () => {
    const before = await host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', NET]);
    const ids = [await containerOf('server'), await containerOf('client')];
    const r = await compose(['up', '-d']);
    if (r.code !== 0) throw describeFailure('second docker-compose up -d', r);
    expect(r.stderr).toMatch(flavour.unchangedRe);
    expect(await host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', NET])).toBe(before);
    expect([await containerOf('server'), await containerOf('client')]).toEqual(ids);
  });

  // Recreating containers is compose 1.29's own problem with dockerd >= 25: it reads
  // image_config['ContainerConfig'], which 26.1 no longer returns for this image, and dies with
  // KeyError after stopping the old container (vxnet cleans up fine; `down` still works). So 1.29
  // recreates only on 20.10; Compose v2 recreates on 26.1.
  if (version === '20' || flavour.v2) {
    it('up -d --force-recreate gives the server its static address again; old endpoints are gone', async () => {
      const old = [await containerOf('server'), await containerOf('client')];
      const r = await compose(['up', '-d', '--force-recreate', '-t', '1']);
      if (r.code !== 0) throw describeFailure('docker-compose up -d --force-recreate', r);
      const server = await containerOf('server');
      const client = await containerOf('client');
      expect([server, client]).not.toContain(old[0]);
      expect([server, client]).not.toContain(old[1]);
      expect(await ipOf(server)).toBe(SERVER_IP);
      expect(Number((await ipOf(client)).split('.')[3])).toBeGreaterThanOrEqual(128);
      expect((await vxLinks(host)).filter((l) => l.startsWith('vxe-'))).toHaveLength(2);
      expect(await host.dockerOk(['exec', client, 'ping', '-c', '1', '-W', '2', 'server'])).toMatch(/1 packets received/);
    });
  }

  it('down removes the network; no vxnet link and no store key is left', async () => {
    const r = await compose(['down', '-t', '1']);
    if (r.code !== 0) throw describeFailure('docker-compose down', r);
    expect(r.stderr).toMatch(flavour.removedRe);
    expect(await host.dockerOk(['network', 'ls', '-q', '--filter', `name=${NET}`])).toBe('');
    expect(await host.dockerOk(['ps', '-aq'])).toBe('');
    expect(await vxLinks(host)).toEqual([]);
    const rules = await host.execOk(['iptables', '-w', '-S']);
    expect(rules.split('\n').filter((l) => /vxb-\d/.test(l))).toEqual([]);
    expect((await host.execOk(['ipset', 'save'])).split('\n').filter((l) => l.startsWith('add vxnet-'))).toEqual([]);
    await driver!.stop();
    const keys = (await storedKeys(driver!.dataDir)).map((kv) => kv.key);
    expect(keys.filter((k) => /addresses\/|endpoints\//.test(k))).toEqual([]);
    expect(keys.filter((k) => k.includes('10.88.0.') || k.includes('compose-demo'))).toEqual([]);
    expect(keys).toEqual([]);
    driver = undefined;
  });
});

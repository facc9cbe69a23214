// One compose project (examples/compose/docker-compose.yml, project "vxtx") started on two hosts:
// its `server` service by Compose v2 2.26 on dockerd 26.1 (x1), its `client` service by
// docker-compose 1.29 on dockerd 20.10 (x2), sharing one etcd. Compose puts the service name
// among the container's network aliases; the client on x2 finds the server on x1 by service name
// alone (the example's client pings `server` until it answers, then fetches its page).
// The dockerds' `--dns` names an underlay address nobody has: no query can leave the test.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, upHost, downHost, run, describeFailure, REPO_ROOT } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver } from '../helpers/vxnet-in-host';
import { HostEtcd, startEtcdInHost } from '../helpers/etcd-in-host';
import { containerIp } from '../helpers/docker-inspect';
import { eventually } from '../helpers/eventually';
import { nslookupA } from '../helpers/nslookup';

jest.setTimeout(300_000);

const COMPOSE_FILE = path.join(REPO_ROOT, 'examples/compose/docker-compose.yml');
const COMPOSE_V1 = process.env.DOCKER_COMPOSE || '/usr/bin/docker-compose';
const COMPOSE_V2 = process.env.DOCKER_COMPOSE_V2 || `${process.env.VXT_CACHE || '/var/cache/vxnet-test'}/compose2/usr/bin/docker-compose`;
const PROJECT = 'vxtx';
const NET = `${PROJECT}_appnet`;
const NOBODY_DNS = '172.31.254.119';

describe('one compose project across two hosts, services found by name', () => {
  let etcdHost: Host;
  let etcd: HostEtcd;
  const hosts: Host[] = [];
  const drivers: Driver[] = [];
  const composeOf = (i: number): string => (i === 0 ? COMPOSE_V2 : COMPOSE_V1);

  async function compose(i: number, args: string[]): Promise<string> {
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: hosts[i].dockerHost as string, VXNET_EXAMPLE_IMAGE: TEST_IMAGE };
    for (const k of ['DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'COMPOSE_FILE', 'COMPOSE_PROJECT_NAME', 'COMPOSE_API_VERSION']) delete env[k];
    const r = await run(composeOf(i), ['--ansi', 'never', '-f', COMPOSE_FILE, '-p', PROJECT, ...args], { env, timeoutMs: 120_000 });
    if (r.code !== 0) throw describeFailure(`[${hosts[i].name}] compose ${args.join(' ')}`, r);
    return r.stdout.trim();
  }

  beforeAll(async () => {
    for (const c of [COMPOSE_V1, COMPOSE_V2]) if (!fs.existsSync(c)) throw new Error(`${c} is missing: run scripts/install-deps.sh`);
    etcdHost = await upHost('vxt-x0', '172.31.254.110', { docker: null });
    etcd = await startEtcdInHost(etcdHost);
    process.env.VXT_DOCKERD_EXTRA = `--dns ${NOBODY_DNS}`;
    try {
      for (const [i, v] of (['26', '20'] as const).entries()) hosts.push(await upHost(`vxt-x${i + 1}`, `172.31.254.11${i + 1}`, { docker: v }));
    } finally {
      delete process.env.VXT_DOCKERD_EXTRA;
    }
    for (const h of hosts) {
      await ensureTestImage(h);
      drivers.push(await startDriver(h, { VXNET_STORE: 'etcd', VXNET_ETCD_ENDPOINTS: etcd.endpoint, VXNET_VTEP_INTERFACE: 'eth0' }));
    }
  });

  afterAll(async () => {
    for (let i = 0; i < hosts.length; i++) await compose(i, ['down', '-t', '1']).catch(() => undefined);
    for (const d of drivers) await d.stop();
    await etcd?.stop();
    for (const h of hosts) await downHost(h);
    if (etcdHost) await downHost(etcdHost);
  });

  it('the client on the 20.10 host reaches the server on the 26.1 host by service name, and back', async () => {
    await compose(0, ['up', '-d', 'server']);
    await compose(1, ['up', '-d', '--no-deps', 'client']);
    const server = (await compose(0, ['ps', '-q', 'server'])).split('\n')[0];
    const client = (await compose(1, ['ps', '-q', 'client'])).split('\n')[0];
    const serverIp = await containerIp(hosts[0], NET, server);
    const clientIp = await containerIp(hosts[1], NET, client);
    // The client's own loop: ping `server` until it answers, then wget http://server/.
    await eventually('the client fetched the page of the server on the other host', async () => (await compose(1, ['logs', '--no-color', 'client'])).includes('hello from server'), 30_000, 250);
    expect(await nslookupA(hosts[1], client, 'server')).toEqual([serverIp]);
    expect(await nslookupA(hosts[0], server, 'client')).toEqual([clientIp]);
  });
});

// The driver is SIGKILLed at random moments while containers start and stop against a real
// dockerd, and restarted at once, for a bounded time (VXT_CRASH_SECONDS, default 90). Calls in
// flight die with it (dockerd re-sends them empty, vxnet refuses them, dockerd rolls back) and
// some docker commands fail: that is expected. What must hold at the end, after reconcile:
// no leaked address, no orphan link, no duplicate address, every running container reachable.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, upHost, downHost } from '../helpers/hosts';
import { ensureTestImage, TEST_IMAGE } from '../helpers/image';
import { Driver, startDriver, storedKeys, MAIN_JS } from '../helpers/vxnet-in-host';
import { DOCKERD_RETRY_WINDOW_MS } from '../../src/network/reconcile';
import { containerIp } from '../helpers/docker-inspect';

const SECONDS = Number(process.env.VXT_CRASH_SECONDS ?? 90);
const GRACE_S = 5;
const NET = 'vxt-churn';
const MAX_ALIVE = 6;
// The churn lasts SECONDS, and longer (up to twice that) until at least this many kills happened:
// on a loaded machine a restart takes longer, and a fixed time would prove fewer crashes.
const MIN_KILLS = Math.ceil(SECONDS / 3);

jest.setTimeout((2 * SECONDS + 240) * 1000);

function rand(min: number, max: number): number {
  return min + Math.random() * (max - min);
}

describe('SIGKILL during container churn', () => {
  let host: Host;
  let driver: Driver;
  const env = { VXNET_RECONCILE_GRACE: String(GRACE_S), VXNET_TEARDOWN_DELAY: '0' };

  beforeAll(async () => {
    host = await upHost('vxt-k1', '172.31.254.71', { docker: '20' });
    await ensureTestImage(host);
    driver = await startDriver(host, env);
    await host.dockerOk(['network', 'create', '-d', 'vxnet', '--ipam-driver', 'vxnet', '--subnet', '10.85.0.0/24', NET]);
  });

  afterAll(async () => {
    if (!host) return;
    const all = (await host.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
    if (all.length) await host.docker(['rm', '-f', ...all]);
    await host.docker(['network', 'rm', NET]);
    await driver?.stop();
    await downHost(host);
  });

  it(`leaks nothing after ${SECONDS} s of kills and restarts`, async () => {
    const start = Date.now();
    let kills = 0;
    const churning = (): boolean => Date.now() - start < SECONDS * 1000 || (kills < MIN_KILLS && Date.now() - start < 2 * SECONDS * 1000);
    const stats = { started: 0, startFailed: 0, removed: 0, removeFailed: 0 };
    let seq = 0;

    const killer = (async () => {
      while (churning()) {
        await new Promise((r) => setTimeout(r, rand(150, 1200)));
        await driver.stop('SIGKILL');
        kills++;
        driver = await startDriver(host, env);
      }
    })();

    const worker = async (): Promise<void> => {
      while (churning()) {
        const alive = (await host.docker(['ps', '-q', '--filter', `network=${NET}`])).stdout.split('\n').filter(Boolean);
        if (alive.length < MAX_ALIVE && Math.random() < 0.6) {
          const r = await host.docker(['run', '-d', '--name', `k${++seq}`, '--network', NET, TEST_IMAGE, 'sleep', '3600'], { timeoutMs: 120_000 });
          if (r.code === 0) stats.started++;
          else {
            stats.startFailed++;
            await host.docker(['rm', '-f', `k${seq}`]);
          }
        } else if (alive.length > 0) {
          const victim = alive[Math.floor(Math.random() * alive.length)];
          const r = await host.docker(['rm', '-f', victim], { timeoutMs: 120_000 });
          if (r.code === 0) stats.removed++;
          else stats.removeFailed++;
        }
      }
    };
    await Promise.all([killer, worker(), worker()]);
    const churnS = Math.round((Date.now() - start) / 1000);

    // Calm: let reconcile see every endpoint as settled, then run it once more on demand.
    // (Orphan addresses wait out dockerd's retry window too, whatever the grace.)
    await new Promise((r) => setTimeout(r, Math.max(GRACE_S * 1000, DOCKERD_RETRY_WINDOW_MS) + 1000));
    await host.execOk([process.execPath, MAIN_JS, 'reconcile', '--socket', '/run/docker/plugins/vxnet.sock']);

    // Containers that dockerd reports running on the network, with their addresses.
    const running = (await host.docker(['ps', '-q', '--filter', `network=${NET}`])).stdout.split('\n').filter(Boolean);
    const ips: string[] = [];
    for (const id of running) {
      ips.push(await containerIp(host, NET, id));
    }
    // How often the orders that used to lose an address happened (network/address-claims.ts),
    // from every driver log of the run.
    const logs = fs.readdirSync(host.stateDir).filter((f) => f.endsWith('.log')).map((f) => fs.readFileSync(path.join(host.stateDir, f), 'utf8')).join('\n');
    const count = (msg: string): number => logs.split(msg).length - 1;
    console.log(
      `crash churn: ${kills} kills in ${churnS} s; docker run ok ${stats.started}, failed ${stats.startFailed}; rm ok ${stats.removed}, failed ${stats.removeFailed}; ${running.length} running at the end; ` +
        `late releases kept ${count('a live endpoint holds: kept')}, addresses taken again at CreateEndpoint ${count('taken again')}, CreateEndpoint refused for a held address ${count('is held by endpoint')}`,
    );
    expect(kills).toBeGreaterThanOrEqual(MIN_KILLS);
    expect(new Set(ips).size).toBe(ips.length); // no duplicate address

    // Every running container is reachable from every other. A failure prints what would tell
    // its cause apart: whether it lasts (3 more pings), the policy sets (a container left pending
    // is closed to inbound), the neighbour and bridge tables, and the driver logs' warnings.
    for (let i = 0; i < running.length && running.length > 1; i++) {
      const to = ips[(i + 1) % ips.length];
      const r = await host.docker(['exec', running[i], 'ping', '-c', '1', '-W', '2', to]);
      if (r.code !== 0) {
        const again = await host.docker(['exec', running[i], 'ping', '-c', '3', '-W', '2', to]);
        const sh = async (cmd: string[]): Promise<string> => (await host.exec(cmd)).stdout.trim();
        const warnings = logs.split('\n').filter((l) => /"level":(40|50)|stale name record/.test(l)).slice(-30).join('\n');
        console.log(
          `ping ${running[i]} -> ${to} failed; 3 more: ${again.stdout.trim().split('\n').slice(-2).join(' / ')}\n` +
            `policy sets:\n${await sh(['nft', 'list', 'table', 'inet', 'vxnet-policy'])}\n` +
            `neighbours:\n${await sh(['ip', 'neigh'])}\nbridge fdb:\n${await sh(['bridge', 'fdb', 'show'])}\n` +
            `running: ${running.map((id, k) => `${id}=${ips[k]}`).join(' ')}\ndriver warnings and removed name records (last 30):\n${warnings}`,
        );
      }
      expect(r.code).toBe(0);
    }

    // No orphan link: one bridge (if anything runs) and one host-side veth per running container.
    const links = (JSON.parse(execFileSync('ip', ['-n', host.name, '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>)
      .map((l) => l.ifname)
      .filter((n) => n.startsWith('vx'));
    expect(links.filter((n) => n.startsWith('vxe-'))).toHaveLength(running.length);
    expect(links.filter((n) => n.startsWith('vxc-'))).toEqual([]);

    // No leaked address: the store holds exactly the running containers' addresses (+ gateway).
    await driver.stop();
    const keys = (await storedKeys(driver.dataDir)).map((kv) => kv.key);
    driver = await startDriver(host, env);
    const stored = keys.filter((k) => k.includes('/addresses/')).map((k) => k.slice(k.lastIndexOf('/') + 1));
    expect(stored.sort()).toEqual([...ips, '10.85.0.1'].sort());
    expect(keys.filter((k) => k.includes('/endpoints/'))).toHaveLength(running.length);
  });
});

#!/usr/bin/env node
// vxnet CLI. `vxnet run` is the daemon; invalid configuration stops it with one line.
import { setFlagsFromString } from 'node:v8';
import { DRIVER_NODE_OPTIONS, youngGenerationLimited } from './node-options';
import { loadConfig, helpText } from './config';
import { createLogger } from './log';
import { startDaemon } from './daemon';
import { VxnetError, causeText } from './errors';
import { pluginCall } from './cli/socket-client';
import { formatExplanation, formatPlan, formatStatus } from './cli/status-format';
import type { Explanation } from './policy';
import { doctorCommand } from './cli/doctor';
import { startMemoryTrim } from './server/memory-trim';
import type { ReconcilePlan } from './network/reconcile';
import type { StatusReport } from './network/status';

const USAGE = `vxnet — Docker network and IPAM driver over VXLAN

Commands:
  vxnet run [options]                 run the driver (foreground)
  vxnet reconcile [--dry-run] [--socket PATH]
                                      compare store, kernel and dockerd and repair (or only show) the difference
  vxnet status [--json] [--socket PATH]
                                      this host, the hosts and networks in the store, peers programmed here,
                                      the last reconcile (--json: the same as one JSON object)
  vxnet policy explain A B PORT[/PROTO] [-4|-6] [--socket PATH]
                                      may container A (name, alias or address) open a connection to
                                      container B on PORT (tcp or udp), and which rule decides (exit 1: refused);
                                      over the family of an address given, else IPv4 (-6: IPv6)
  vxnet doctor [--json] [options]     check this host for what vxnet run with these options needs: kernel,
                                      underlay MTU and path to other hosts, store, dockerd, socket, firewall
                                      (exit 1 if a check failed)
  vxnet help                          this text and every option`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h' || rest.includes('--help')) {
    process.stdout.write(`${USAGE}\n\n${helpText()}\n`);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === 'reconcile') return reconcileCommand(rest);
  if (cmd === 'status') return statusCommand(rest);
  if (cmd === 'doctor') return doctorCommand(rest);
  if (cmd === 'policy') return policyCommand(rest);
  if (cmd !== 'run') {
    process.stderr.write(`vxnet: unknown command "${cmd}" (try vxnet help)\n`);
    return 2;
  }
  const config = loadConfig(rest, process.env);
  const log = createLogger(config.logLevel);
  limitHeapGrowth();
  if (!youngGenerationLimited(process.execArgv, process.env.NODE_OPTIONS)) {
    log.info(`node runs without --max-semi-space-size: NODE_OPTIONS=${DRIVER_NODE_OPTIONS}, as vxnet's launchers set it, keeps the driver ~25 MB smaller under load`);
  }
  const daemon = await startDaemon(config, log);
  const trim = startMemoryTrim(log);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  // dockerd SIGKILLs a managed plugin 10 s after its SIGTERM, and the plugin's entrypoint cleans
  // up only after the driver exits: a stop that hangs on one step must not take that away.
  trim.stop();
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    daemon.close().then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), STOP_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  if (closed) log.info({ ms: Date.now() - started }, 'stopped');
  else log.error({ ms: STOP_TIMEOUT_MS }, 'stop did not finish in time: exiting anyway (reconcile repairs at the next start)');
  return 0;
}

/**
 * How far V8 lets the old generation grow past the live heap before its next full collection, in
 * percent. Its own default is dynamic, up to 4x while allocation is fast, and the reserve stays:
 * with 10,000 endpoint records across 3 hosts a driver held 192-200 MB of heap for 48-50 MB live.
 * At 50: RSS per driver 280-288 -> 189-196 MB, heap total 110-115 MB, the burst 83 -> 91 s
 * (bench:memory --node-arg=--heap-growing-percent=50 against the same build without it).
 * At 20, once the live heap was 37 MB (bench:memory --endpoints 10000, one run each): RSS right
 * after the burst 155-162 (50) -> 150-153 (30) -> 147-149 (20) -> 147-151 (10: V8's floor is 10),
 * the burst 85 / 84 / 75 / 84 s: a collection of a heap this size costs little next to the
 * store events that fill it.
 */
const HEAP_GROWING_PERCENT = 20;

/**
 * Set from here, not on node's command line, so that every way the driver is started (systemd
 * unit, the managed plugin's entrypoint, scripts/start.sh, the tests' hosts) runs with it; V8
 * reads the flag at each collection. A value given to node itself is left alone.
 */
function limitHeapGrowth(): void {
  if (process.execArgv.some((a) => a.startsWith('--heap-growing-percent') || a.startsWith('--heap_growing_percent'))) return;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}

/** Under dockerd's 10 s between SIGTERM and SIGKILL for a managed plugin. */
const STOP_TIMEOUT_MS = 7000;

async function reconcileCommand(args: string[]): Promise<number> {
  const dryRun = args.includes('--dry-run');
  const config = loadConfig(without(args, '--dry-run'), process.env);
  const body = await adminCall(config.socket, 'Vxnet.Reconcile', { DryRun: dryRun }, 'reconcile');
  if (!body) return 1;
  process.stdout.write(formatPlan(body.Plan as ReconcilePlan, dryRun));
  return 0;
}

async function statusCommand(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const config = loadConfig(without(args, '--json'), process.env);
  const body = await adminCall(config.socket, 'Vxnet.Status', {}, 'status');
  if (!body) return 1;
  const status = body.Status as StatusReport;
  process.stdout.write(json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  return 0;
}

async function policyCommand(args: string[]): Promise<number> {
  // -4 / -6: the family to explain when A and B are names (an address given decides it itself).
  const family = args.includes('-6') ? 6 : args.includes('-4') ? 4 : undefined;
  const [sub, from, to, portSpec, ...opts] = without(without(args, '-4'), '-6');
  const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(portSpec ?? '');
  if (sub !== 'explain' || !from || !to || !m || (args.includes('-4') && args.includes('-6'))) {
    process.stderr.write('usage: vxnet policy explain A B PORT[/PROTO] [-4|-6] [--socket PATH]\n');
    return 2;
  }
  const config = loadConfig(opts, process.env);
  const body = await adminCall(config.socket, 'Vxnet.PolicyExplain', { From: from, To: to, Port: Number(m[1]), Proto: m[2] ?? 'tcp', ...(family ? { Family: family } : {}) }, 'policy explain');
  if (!body) return 1;
  const e = body.Explanation as Explanation;
  process.stdout.write(`${formatExplanation(e, `${m[1]}/${m[2] ?? 'tcp'}`)}\n`);
  return e.allowed ? 0 : 1;
}

function without(args: string[], flag: string): string[] {
  return args.filter((a) => a !== flag);
}

/** A call to the running driver's admin routes; on failure one line on stderr and null. */
async function adminCall(socket: string, method: string, body: unknown, what: string): Promise<Record<string, unknown> | null> {
  let reply;
  try {
    reply = await pluginCall(socket, method, body);
  } catch (err) {
    process.stderr.write(`vxnet: ${what} failed: no driver answers on ${socket}: ${causeText(err)}\n`);
    return null;
  }
  if (reply.status !== 200) {
    process.stderr.write(`vxnet: ${what} failed: ${String(reply.body.Err ?? reply.body.raw ?? reply.status)}\n`);
    return null;
  }
  return reply.body;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const msg = err instanceof VxnetError ? err.message : err instanceof Error ? err.stack ?? err.message : String(err);
    process.stderr.write(`vxnet: ${msg}\n`);
    process.exit(err instanceof VxnetError && err.code === 'VXNET_ERR_BAD_CONFIG' ? 2 : 1);
  },
);

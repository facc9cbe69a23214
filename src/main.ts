#!/usr/bin/env node
// vxnet CLI. `vxnet run` is the daemon; invalid configuration stops it with one line.
import { loadConfig, helpText } from './config';
import { createLogger } from './log';
import { startDaemon } from './daemon';
import { VxnetError } from './errors';
import { pluginCall } from './cli/socket-client';

const USAGE = `vxnet — Docker network and IPAM driver over VXLAN

Commands:
  vxnet run [options]                 run the driver (foreground)
  vxnet reconcile [--dry-run] [--socket PATH]
                                      compare store, kernel and dockerd and repair (or only show) the difference
  vxnet help                          this text and every option`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h' || rest.includes('--help')) {
    process.stdout.write(`${USAGE}\n\n${helpText()}\n`);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === 'reconcile') return reconcileCommand(rest);
  if (cmd !== 'run') {
    process.stderr.write(`vxnet: unknown command "${cmd}" (try vxnet help)\n`);
    return 2;
  }
  const config = loadConfig(rest, process.env);
  const log = createLogger(config.logLevel);
  const daemon = await startDaemon(config, log);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await daemon.close();
  return 0;
}

async function reconcileCommand(args: string[]): Promise<number> {
  const dryRun = args.includes('--dry-run');
  const config = loadConfig(args.filter((a) => a !== '--dry-run'), process.env);
  const r = await pluginCall(config.socket, 'Vxnet.Reconcile', { DryRun: dryRun });
  if (r.status !== 200) {
    process.stderr.write(`vxnet: reconcile failed: ${String(r.body.Err ?? r.body.raw ?? r.status)}\n`);
    return 1;
  }
  const plan = r.body.Plan as Record<string, unknown>;
  process.stdout.write(`${dryRun ? 'would change' : 'changed'}:${plan.dockerdAnswered ? '' : ' (dockerd did not answer: only the kernel was checked)'}\n`);
  const labels: Array<[string, string]> = [
    ['staleNetworks', 'networks dockerd no longer has'],
    ['staleEndpoints', 'endpoints whose container is gone'],
    ['repairNetworks', 'networks whose devices are recreated'],
    ['orphanLinks', 'links nothing owns'],
    ['orphanRules', 'firewall rules nothing owns'],
    ['orphanAddresses', 'addresses no endpoint uses'],
  ];
  for (const [key, label] of labels) {
    const items = (plan[key] as string[] | undefined) ?? [];
    process.stdout.write(`  ${label}: ${items.length === 0 ? 'none' : items.join(', ')}\n`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const msg = err instanceof VxnetError ? err.message : err instanceof Error ? err.stack ?? err.message : String(err);
    process.stderr.write(`vxnet: ${msg}\n`);
    process.exit(err instanceof VxnetError && err.code === 'VXNET_ERR_BAD_CONFIG' ? 2 : 1);
  },
);

#!/usr/bin/env node
// vxnet CLI. `vxnet run` is the daemon; invalid configuration stops it with one line.
import { loadConfig, helpText } from './config';
import { createLogger } from './log';
import { startDaemon } from './daemon';
import { VxnetError } from './errors';

const USAGE = `vxnet — Docker network and IPAM driver over VXLAN

Commands:
  vxnet run [options]   run the driver (foreground)
  vxnet help            this text and every option`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h' || rest.includes('--help')) {
    process.stdout.write(`${USAGE}\n\n${helpText()}\n`);
    return cmd === undefined ? 2 : 0;
  }
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const msg = err instanceof VxnetError ? err.message : err instanceof Error ? err.stack ?? err.message : String(err);
    process.stderr.write(`vxnet: ${msg}\n`);
    process.exit(err instanceof VxnetError && err.code === 'VXNET_ERR_BAD_CONFIG' ? 2 : 1);
  },
);

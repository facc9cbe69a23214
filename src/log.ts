import pino from 'pino';
import type { LogLevel } from './config';

export type Logger = pino.Logger;

/**
 * One JSON line per event on stdout (or the given stream, e.g. a test sink).
 *
 * stdout is written asynchronously: pino's default destination makes one blocking write(2) per
 * line on node's only thread, and a burst of plugin calls (one "plugin call" line each) spent
 * more CPU there than in the IPAM itself (issue 13, bench/allocations.ts --cpu-prof). Lines
 * that arrive while a write is under way go out together in the next one. pino flushes
 * synchronously on process exit; a SIGKILL loses at most the lines of the last millisecond.
 */
export function createLogger(level: LogLevel, dest?: NodeJS.WritableStream): Logger {
  const opts: pino.LoggerOptions = { level, base: { svc: 'vxnet' }, timestamp: pino.stdTimeFunctions.isoTime };
  return pino(opts, dest ? (dest as pino.DestinationStream) : pino.destination({ dest: 1, sync: false }));
}

import pino from 'pino';
import type { LogLevel } from './config';

export type Logger = pino.Logger;

/** One JSON line per event on stdout (or the given stream, e.g. a test sink). */
export function createLogger(level: LogLevel, dest?: NodeJS.WritableStream): Logger {
  const opts: pino.LoggerOptions = { level, base: { svc: 'vxnet' }, timestamp: pino.stdTimeFunctions.isoTime };
  return dest ? pino(opts, dest as pino.DestinationStream) : pino(opts);
}

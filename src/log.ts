import pino from 'pino';
import type { LogLevel } from './config';

export type Logger = pino.Logger;

/** What turnBatched needs of the real destination (a SonicBoom). */
export interface BufferedDestination {
  /** Appends a line; writes only once minLength bytes are buffered. */
  write(line: string): unknown;
  /** Writes what is buffered now (synchronously for a sync SonicBoom). */
  flush(): void;
}

/**
 * Bytes stdout keeps before writing without waiting for the end of the event loop's turn (SonicBoom
 * wants less than its 16 KB per write): a turn's lines rarely reach it, and a larger turn is
 * still written before it ends.
 */
const LOG_BUFFER_BYTES = 8 * 1024;

/**
 * One JSON line per event on stdout (or the given stream, e.g. a test sink).
 *
 * stdout gets one write(2) per turn of the event loop, holding every line logged in that turn,
 * instead of pino's default of one per line: under a burst of plugin calls a turn answers
 * several, and each answer logs a line (issue 13: a write per line was ~0.1 ms of a driver's
 * CPU per RequestAddress, a tenth of the call). Writes stay synchronous (no thread pool, no
 * line waits for more than the rest of its turn), and what is buffered is written when the
 * process exits (also after an uncaught exception); a SIGKILL loses at most the current turn's
 * lines.
 */
export function createLogger(level: LogLevel, dest?: NodeJS.WritableStream): Logger {
  const opts: pino.LoggerOptions = { level, base: { svc: 'vxnet' }, timestamp: pino.stdTimeFunctions.isoTime };
  return pino(opts, dest ? (dest as pino.DestinationStream) : sharedStdout());
}

/** One buffered stdout per process, whatever the number of loggers (one exit handler). */
let stdout: pino.DestinationStream | null = null;

function sharedStdout(): pino.DestinationStream {
  if (stdout) return stdout;
  const batched = turnBatched(pino.destination({ dest: 1, sync: true, minLength: LOG_BUFFER_BYTES }));
  process.on('exit', () => batched.flushNow());
  stdout = batched;
  return stdout;
}

export interface TurnBatched extends pino.DestinationStream {
  /** Writes what this turn logged so far, now (process exit); nothing when nothing is pending. */
  flushNow(): void;
}

/** A destination that flushes `to` once, at the end of the turn in which something was written. */
export function turnBatched(to: BufferedDestination): TurnBatched {
  let due = false;
  const flushNow = (): void => {
    if (!due) return;
    due = false;
    to.flush();
  };
  return {
    write(line: string): void {
      to.write(line);
      if (due) return;
      due = true;
      setImmediate(flushNow);
    },
    flushNow,
  };
}

// The driver logs one line per plugin call at level info:
//   {"level":30,"time":"…","mod":"server","call":"NetworkDriver.Join","ms":12.3,"status":200,"msg":"plugin call"}
// `ms` is fastify's elapsed time for the request inside the driver (parse, validate, handler,
// serialise): the driver's own share of a call, without the socket round trip.
import * as fs from 'node:fs';

export interface LoggedCall {
  /** epoch ms of the log line (when the answer went out) */
  time: number;
  call: string;
  ms: number;
  status: number;
}

/** Every JSON line of the driver's log that has a `time` (epoch ms) — optionally only those with this `msg`. */
export function readLogRecords(logFile: string, msg?: string): Array<{ time: number; rec: Record<string, unknown> }> {
  let text = '';
  try {
    text = fs.readFileSync(logFile, 'utf8');
  } catch {
    return [];
  }
  const out: Array<{ time: number; rec: Record<string, unknown> }> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{') || (msg !== undefined && !line.includes(msg))) continue;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof rec.time !== 'string' || (msg !== undefined && rec.msg !== msg)) continue;
    out.push({ time: Date.parse(rec.time), rec });
  }
  return out;
}

export function readLoggedCalls(logFile: string): LoggedCall[] {
  const out: LoggedCall[] = [];
  for (const { time, rec } of readLogRecords(logFile)) {
    if (typeof rec.call !== 'string' || typeof rec.ms !== 'number') continue;
    out.push({ time, call: rec.call, ms: rec.ms, status: Number(rec.status ?? 0) });
  }
  return out;
}

/** Calls logged within [start, end] (epoch ms, widened by `slackMs` for the log's ms resolution). */
export function callsBetween(calls: LoggedCall[], start: number, end: number, slackMs = 1): LoggedCall[] {
  return calls.filter((c) => c.time >= start - slackMs && c.time <= end + slackMs);
}

/** The last `lines` lines of a log file ('' when it cannot be read). */
export function logTail(logFile: string, lines: number): string {
  try {
    return fs.readFileSync(logFile, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

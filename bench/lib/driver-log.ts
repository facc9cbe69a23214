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

export function readLoggedCalls(logFile: string): LoggedCall[] {
  let text = '';
  try {
    text = fs.readFileSync(logFile, 'utf8');
  } catch {
    return [];
  }
  const out: LoggedCall[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{') || !line.includes('"call"')) continue;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof rec.call !== 'string' || typeof rec.ms !== 'number' || typeof rec.time !== 'string') continue;
    out.push({ time: Date.parse(rec.time), call: rec.call, ms: rec.ms, status: Number(rec.status ?? 0) });
  }
  return out;
}

/** Calls logged within [start, end] (epoch ms, widened by `slackMs` for the log's ms resolution). */
export function callsBetween(calls: LoggedCall[], start: number, end: number, slackMs = 1): LoggedCall[] {
  return calls.filter((c) => c.time >= start - slackMs && c.time <= end + slackMs);
}

// A helper process inside a simulated host that reports events as JSON lines on stdout (first
// line {"ready":true} once it listens): nft-set-events.js, etcd-key-events.js.
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { Host, startInHost } from '../../test/helpers/hosts';

/** Starts `script` (a file of dist/bench/lib) in `host`; resolves once it is ready. */
export function startEventChild<E>(host: Host, script: string, args: string[], onEvent: (ev: E) => void): Promise<ChildProcess> {
  const child = startInHost(host, process.execPath, [path.join(__dirname, script), ...args], {}, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise<ChildProcess>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited (${code}) in ${host.name}`)));
    readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const ev = JSON.parse(line) as { ready?: boolean };
      if (ev.ready) resolve(child);
      else onEvent(ev as E);
    });
  });
}

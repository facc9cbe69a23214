// A lock file holding the owner's pid. Node has no flock(2); O_EXCL create is the atomic step,
// and a lock whose pid is no longer alive (the owner was SIGKILLed) is taken over.
import * as fs from 'node:fs';
import { vxError, causeText } from '../errors';

export interface PidLock {
  release(): void;
}

export function acquirePidLock(file: string, what: string): PidLock {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return { release: () => releaseIfMine(file) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw vxError('VXNET_ERR_STORE', `could not lock ${what} at ${file}: ${causeText(err)}`, err);
      }
    }
    const owner = readOwner(file);
    if (owner !== null && owner !== process.pid && isAlive(owner)) {
      throw vxError('VXNET_ERR_STORE', `${what} at ${file} is in use by process ${owner}`);
    }
    // Stale: its owner is gone. Removing and retrying keeps O_EXCL as the only decider.
    try {
      fs.unlinkSync(file);
    } catch {
      // Another process may have removed it first; the next O_EXCL decides.
    }
  }
  throw vxError('VXNET_ERR_STORE', `could not lock ${what} at ${file}: contended`);
}

function readOwner(file: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function releaseIfMine(file: string): void {
  if (readOwner(file) === process.pid) {
    try {
      fs.unlinkSync(file);
    } catch {
      // Already gone.
    }
  }
}

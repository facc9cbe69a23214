// A lock file holding the owner's pid and start time. Node has no flock(2); O_EXCL create is the
// atomic step, and a lock whose owner is no longer alive (it was SIGKILLed) is taken over. The
// start time matters in containers and managed plugins: each restart gets a new pid namespace
// where the old pid soon belongs to some other live process (seen: pid 10 twice in a row).
import * as fs from 'node:fs';
import { vxError, causeText } from '../errors';

export interface PidLock {
  release(): void;
}

export function acquirePidLock(file: string, what: string): PidLock {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, `${process.pid} ${startTime(process.pid) ?? ''}`.trim());
      fs.closeSync(fd);
      return { release: () => releaseIfMine(file) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw vxError('VXNET_ERR_STORE', `could not lock ${what} at ${file}: ${causeText(err)}`, err);
      }
    }
    const owner = readOwner(file);
    if (owner !== null && owner.pid !== process.pid && isAlive(owner)) {
      throw vxError('VXNET_ERR_STORE', `${what} at ${file} is in use by process ${owner.pid}`);
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

interface Owner {
  pid: number;
  /** Clock ticks after boot (/proc/PID/stat field 22); null in locks written without it. */
  started: string | null;
}

function readOwner(file: string): Owner | null {
  try {
    const [pidText, started] = fs.readFileSync(file, 'utf8').trim().split(/\s+/);
    const pid = Number.parseInt(pidText, 10);
    return Number.isInteger(pid) && pid > 0 ? { pid, started: started ?? null } : null;
  } catch {
    return null;
  }
}

function startTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may itself hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function isAlive(owner: Owner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // Same pid, other process: the owner died and its pid was given again.
  return owner.started === null || startTime(owner.pid) === owner.started;
}

function releaseIfMine(file: string): void {
  if (readOwner(file)?.pid === process.pid) {
    try {
      fs.unlinkSync(file);
    } catch {
      // Already gone.
    }
  }
}

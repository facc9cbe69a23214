// The plugin socket and its directory. Whoever can write the directory can put their own socket
// in its place, and whoever can connect to the socket can change networks and addresses: both
// belong to root (a group may share the socket, mode 0660, when one is configured).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { directoryProblem } from '../server/socket-dir';
import { Check, Verdict, fail, pass, warn } from './check';
import { DRIVER_APIS, DoctorContext, DriverAnswer } from './context';

const ROOT = 0;
const SOCKET_MODES = [0o600, 0o660];

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

/** Pure: the verdict on an existing directory's owner and mode. */
export function socketDirVerdict(dir: string, st: { uid: number; mode: number }): Verdict {
  if (st.uid !== ROOT) return fail(`${dir} is owned by uid ${st.uid}: that user can replace the socket dockerd talks to`, `chown root ${dir}`);
  if (st.mode & 0o022) return fail(`${dir} has mode ${octal(st.mode)}: others can replace the socket dockerd talks to`, `chmod go-w ${dir}`);
  return pass(`${dir}: directory owned by root, mode ${octal(st.mode)}`);
}

/** Pure: the verdict on an existing socket file and what answered on it. */
export function socketVerdict(socket: string, st: { uid: number; mode: number; isSocket: boolean }, driver: DriverAnswer): Verdict {
  if (!st.isSocket) return fail(`${socket} exists and is not a socket`, `remove ${socket}, or set VXNET_SOCKET to another path`);
  if (!driver.answers) {
    return fail(`${socket} exists but nothing answers on it (${driver.error ?? 'no answer'}): a driver that died`, 'start vxnet: it replaces a stale socket');
  }
  const missing = DRIVER_APIS.filter((i) => !driver.implements.includes(i));
  if (missing.length > 0) return fail(`what answers on ${socket} does not implement ${missing.join(', ')}: not vxnet?`, 'set VXNET_SOCKET to the socket vxnet serves');
  if (st.uid !== ROOT) return fail(`${socket} is owned by uid ${st.uid}`, `chown root ${socket}`);
  if (!SOCKET_MODES.includes(st.mode & 0o777)) return fail(`${socket} has mode ${octal(st.mode)}: others may drive the plugin`, `chmod 600 ${socket}`);
  return pass(`the driver answers on ${socket} (${driver.implements.join(', ')}), owner root, mode ${octal(st.mode)}`);
}

export const socketDirCheck: Check<DoctorContext> = {
  name: 'socket-dir',
  async run(ctx) {
    const dir = path.dirname(ctx.config.socket);
    const fix = `make ${dir} a directory, or set VXNET_SOCKET to a path in one`;
    const st = fs.statSync(dir, { throwIfNoEntry: false });
    if (!st) {
      const problem = directoryProblem(dir);
      return problem ? fail(`${dir} cannot be created: ${problem}`, fix) : pass(`${dir} does not exist yet: vxnet run creates it (mode 0755)`);
    }
    if (!st.isDirectory()) return fail(`${dir} is not a directory`, fix);
    return socketDirVerdict(dir, st);
  },
};

export const socketCheck: Check<DoctorContext> = {
  name: 'socket',
  timeoutFix: 'something holds the socket open without answering: find it with ss -xlp',
  async run(ctx) {
    const socket = ctx.config.socket;
    const st = fs.lstatSync(socket, { throwIfNoEntry: false });
    if (!st) return warn(`no socket at ${socket}: the driver is not running`, 'start it: systemctl start vxnet (or vxnet run)');
    return socketVerdict(socket, { uid: st.uid, mode: st.mode, isSocket: st.isSocket() }, await ctx.driver());
  },
};

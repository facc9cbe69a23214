// The directory that holds the plugin socket. Checked before anything else at start: a driver
// that opened its store and registered its host, only to find it cannot listen, would leave a
// host record behind for nothing. `vxnet doctor` asks the same questions without creating it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { vxError, causeText } from '../errors';

const SETTING = '--socket/VXNET_SOCKET';

/** Creates the socket's directory when missing (0755, like dockerd's own plugin directory). */
export function ensureSocketDir(socketPath: string): void {
  const dir = path.dirname(socketPath);
  const problem = directoryProblem(dir);
  if (problem) throw vxError('VXNET_ERR_BAD_CONFIG', `cannot use socket directory ${dir} (${SETTING}): ${problem}`);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw vxError('VXNET_ERR_BAD_CONFIG', `cannot create socket directory ${dir} (${SETTING}): ${causeText(err)}`, err);
  }
}

/**
 * Why `dir` cannot hold the socket, or null when it can (or can be created): it, or the
 * nearest part of its path that exists, is not a directory.
 */
export function directoryProblem(dir: string): string | null {
  for (let p = dir; ; p = path.dirname(p)) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch (err) {
      // ENOTDIR: a file further up; walking up finds it and names it.
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || path.dirname(p) === p) return causeText(err);
      continue;
    }
    if (st.isDirectory()) return null;
    return p === dir ? 'it is not a directory' : `${p} is not a directory`;
  }
}

// Listening on the plugin socket safely: a leftover socket file from a crashed run is replaced,
// but a socket someone still answers on is never stolen (two drivers on one socket would split
// dockerd's calls between them).
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { FastifyInstance } from 'fastify';
import { vxError, causeText } from '../errors';
import { ensureSocketDir } from './socket-dir';

/** How long to wait for an answer on an existing socket before calling it stale. */
const PROBE_TIMEOUT_MS = 1000;

/**
 * group: a group name or gid that may use the socket too (mode 0660), e.g. for a monitoring
 * agent that runs `vxnet status`; null keeps it root-only (0600).
 */
export async function listenOnSocket(app: FastifyInstance, socketPath: string, group: string | null = null): Promise<void> {
  ensureSocketDir(socketPath);
  // Resolved before listening: an unknown group must not leave a served root-only socket behind.
  const gid = group === null ? null : groupId(group);
  const existing = fs.lstatSync(socketPath, { throwIfNoEntry: false });
  if (existing && !existing.isSocket()) {
    // Only a socket is ever replaced: anything else there was put by someone, on purpose or by mistake.
    throw vxError('VXNET_ERR_BAD_CONFIG', `cannot listen on ${socketPath} (--socket/VXNET_SOCKET): it exists and is not a socket`);
  }
  if (existing) {
    if (await somebodyListens(socketPath)) {
      throw vxError('VXNET_ERR_BAD_CONFIG', `another process is already serving ${socketPath}`);
    }
    fs.unlinkSync(socketPath);
  }
  // The socket is root-only from its first moment: dockerd runs as root, nobody else may talk to it.
  const old = process.umask(0o177);
  try {
    await app.listen({ path: socketPath });
  } catch (err) {
    throw vxError('VXNET_ERR_BAD_CONFIG', `cannot listen on ${socketPath}: ${causeText(err)}`, err);
  } finally {
    process.umask(old);
  }
  if (gid !== null) {
    // Opened up only after it exists as 0600: there is no moment where others could connect.
    try {
      fs.chownSync(socketPath, 0, gid);
      fs.chmodSync(socketPath, 0o660);
    } catch (err) {
      await app.close();
      throw vxError('VXNET_ERR_BAD_CONFIG', `cannot give group ${group} access to ${socketPath}: ${causeText(err)}`, err);
    }
  }
}

/** A gid, from a number or a name in /etc/group. */
export function groupId(group: string, groupFile = '/etc/group'): number {
  if (/^[0-9]+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = fs.readFileSync(groupFile, 'utf8');
  } catch (err) {
    throw vxError('VXNET_ERR_BAD_CONFIG', `invalid setting --socket-group/VXNET_SOCKET_GROUP: cannot read ${groupFile}: ${causeText(err)}`, err);
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && /^[0-9]+$/.test(gid ?? '')) return Number(gid);
  }
  throw vxError('VXNET_ERR_BAD_CONFIG', `invalid setting --socket-group/VXNET_SOCKET_GROUP: no group "${group}" in ${groupFile}`);
}

function somebodyListens(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(socketPath);
    const done = (answer: boolean): void => {
      sock.destroy();
      resolve(answer);
    };
    sock.setTimeout(PROBE_TIMEOUT_MS, () => done(true));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

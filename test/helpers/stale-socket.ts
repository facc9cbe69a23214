// A socket file nobody answers on, as a SIGKILLed driver leaves it: a child process listens on
// it and is killed before it can remove the file.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export async function leaveStaleSocket(sock: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)})`]);
  for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise<void>((r) => {
    child.once('exit', () => r());
    child.kill('SIGKILL');
  });
}

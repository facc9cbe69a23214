// Reading /proc and /sys for checks: a file that is not there is an answer too (a module not
// loaded, a kernel without that feature), not an error.
import * as fs from 'node:fs';

export function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

// What `npm ci` on a fresh clone needs from package.json and package-lock.json (issue 12.1):
// the lock must list every platform's optional native bindings (npm refuses a lock that lacks
// them as "out of sync"), and the `engines` promise must hold for the whole locked tree.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';

interface LockEntry {
  version?: string;
  engines?: { node?: string } | string[];
  optionalDependencies?: Record<string, string>;
  os?: string[];
}

const root = join(__dirname, '..', '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };

describe('package-lock.json', () => {
  it('lists every optional dependency of every locked package (npm ci refuses it otherwise)', () => {
    const missing: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
        // npm resolves a dependency from the nearest node_modules up the tree.
        const parts = path === '' ? [] : path.split('node_modules/').filter(Boolean).map((p) => p.replace(/\/$/, ''));
        let found = false;
        for (let i = parts.length; i >= 0 && !found; i--) {
          const prefix = parts.slice(0, i).map((p) => `node_modules/${p}/`).join('');
          found = `${prefix}node_modules/${dep}` in lock.packages;
        }
        if (!found) missing.push(`${dep} (optional dependency of ${path || 'the root'})`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('holds no package whose engines exclude the oldest Node that package.json admits', () => {
    const oldest = semver.minVersion(pkg.engines.node);
    expect(oldest).not.toBeNull();
    const refused: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      const range = !Array.isArray(entry.engines) ? entry.engines?.node : undefined;
      if (path === '' || !range || entry.os) continue; // a platform binding is not installed here
      if (!semver.satisfies(oldest as semver.SemVer, range)) refused.push(`${path}@${entry.version} wants node ${range}`);
    }
    expect(refused).toEqual([]);
  });
});

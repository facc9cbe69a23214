// node's flags for the driver are given by several launchers, some of them shell or systemd
// files that cannot import src/node-options.ts: each must say the same.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DRIVER_NODE_OPTIONS, youngGenerationLimited } from '../../src/node-options';

const ROOT = path.join(__dirname, '../..');

describe('node options of the driver', () => {
  it.each([
    ['scripts/start.sh', `NODE_OPTIONS="\${NODE_OPTIONS:-${DRIVER_NODE_OPTIONS}}"`],
    ['driver/install.sh', `NODE_OPTIONS="\\\${NODE_OPTIONS:-${DRIVER_NODE_OPTIONS}}"`],
    ['driver/vxnet.service', `Environment=NODE_OPTIONS=${DRIVER_NODE_OPTIONS}\nEnvironmentFile=`],
  ])('%s gives them, unless the user gives others', (file, text) => {
    expect(fs.readFileSync(path.join(ROOT, file), 'utf8')).toContain(text);
  });

  it('the managed plugin has them as the default of its NODE_OPTIONS setting', () => {
    const config = JSON.parse(fs.readFileSync(path.join(ROOT, 'docker-plugin/config.json'), 'utf8')) as { env: Array<{ name: string; value: string; settable: string[] }> };
    const setting = config.env.find((e) => e.name === 'NODE_OPTIONS');
    expect(setting?.value).toBe(DRIVER_NODE_OPTIONS);
    expect(setting?.settable).toEqual(['value']);
  });

  it('tells a limited young generation from node\'s command line or NODE_OPTIONS, in either spelling', () => {
    expect(youngGenerationLimited([], DRIVER_NODE_OPTIONS)).toBe(true);
    expect(youngGenerationLimited(['--max_semi_space_size=8'], undefined)).toBe(true);
    expect(youngGenerationLimited(['--cpu-prof'], '--max-old-space-size=100')).toBe(false);
    expect(youngGenerationLimited([], undefined)).toBe(false);
  });
});

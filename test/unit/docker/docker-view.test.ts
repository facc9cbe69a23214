// docker/docker-view.ts on a host without a dockerd socket: nothing to ask, so no answer (null:
// reconcile decides nothing), and dockerode is not loaded for it.
import * as os from 'node:os';
import * as path from 'node:path';
import { dockerClient, endpointLookup } from '../../../src/docker/docker-view';

describe('src/docker/docker-view.ts', () => {
  const missing = `unix://${path.join(os.tmpdir(), `vxnet-no-dockerd-${process.pid}.sock`)}`;

  it('a missing socket gives no view, and does not load dockerode', async () => {
    let loaded = false;
    jest.doMock('dockerode', () => {
      loaded = true;
      return jest.requireActual('dockerode');
    });
    try {
      await expect(dockerClient(missing).view(['n1'])).resolves.toBeNull();
      expect(loaded).toBe(false);
    } finally {
      jest.dontMock('dockerode');
    }
  });

  it('a lookup through a missing socket answers unreachable', async () => {
    await expect(endpointLookup(missing)('n1', 'e1')).resolves.toBe('unreachable');
  });
});

import { candidatePorts, parsePortRange } from '../../../src/ports/allocate';
import type { PortBinding, PortRequest } from '../../../src/ports/bindings';

const req = (over: Partial<PortRequest> = {}): PortRequest => ({ proto: 'tcp', hostIp: '0.0.0.0', hostPort: 0, hostPortEnd: 0, containerPort: 80, ...over });
const held = (hostPort: number, over: Partial<PortBinding> = {}): PortBinding => ({ proto: 'tcp', hostIp: '0.0.0.0', hostPort, containerPort: 80, ...over });
const EPH = { min: 100, max: 104 };

describe('src/ports/allocate.ts', () => {
  it('a fixed port is the only candidate, unless vxnet holds it already', () => {
    expect([...candidatePorts(req({ hostPort: 8080, hostPortEnd: 8080 }), EPH, 0, [])]).toEqual([8080]);
    expect([...candidatePorts(req({ hostPort: 8080, hostPortEnd: 8080 }), EPH, 0, [held(8080)])]).toEqual([]);
    // Another protocol, or another specific address, is another port.
    expect([...candidatePorts(req({ hostPort: 8080, hostPortEnd: 8080 }), EPH, 0, [held(8080, { proto: 'udp' })])]).toEqual([8080]);
    expect([...candidatePorts(req({ hostIp: '10.0.0.1', hostPort: 8080, hostPortEnd: 8080 }), EPH, 0, [held(8080, { hostIp: '10.0.0.2' })])]).toEqual([8080]);
    expect([...candidatePorts(req({ hostIp: '10.0.0.1', hostPort: 8080, hostPortEnd: 8080 }), EPH, 0, [held(8080)])]).toEqual([]);
  });

  it('a range is tried in order, skipping what vxnet holds', () => {
    expect([...candidatePorts(req({ hostPort: 8000, hostPortEnd: 8003 }), EPH, 0, [held(8001)])]).toEqual([8000, 8002, 8003]);
  });

  it('any port walks the ephemeral range from the cursor and wraps around, once', () => {
    expect([...candidatePorts(req(), EPH, 0, [])]).toEqual([100, 101, 102, 103, 104]);
    expect([...candidatePorts(req(), EPH, 103, [held(100)])]).toEqual([103, 104, 101, 102]);
    expect([...candidatePorts(req(), EPH, 105, [])]).toEqual([100, 101, 102, 103, 104]);
    expect([...candidatePorts(req(), EPH, 0, [100, 101, 102, 103, 104].map((p) => held(p)))]).toEqual([]);
  });

  it('reads the kernel\'s ephemeral range and refuses garbage', () => {
    expect(parsePortRange('32768\t60999\n')).toEqual({ min: 32768, max: 60999 });
    for (const bad of ['', '1', 'a b', '60999 32768', '0 10', '1 70000']) expect(() => parsePortRange(bad)).toThrow(/invalid ephemeral port range/);
  });
});

// JSON schemas of every request body. They name the fields vxnet uses and let unknown ones
// through: dockerd adds fields over time. Compiled once, at startup (fastify route schemas).

/** Docker IDs: 64 hex chars for local objects, 25 base-36 chars for swarm networks. */
const ID = { type: 'string', pattern: '^[a-z0-9]{10,64}$' } as const;
const STR = { type: 'string', maxLength: 4096 } as const;
const STRING_MAP = { type: 'object', additionalProperties: STR, maxProperties: 256 } as const;
const OPTIONS = { type: 'object', maxProperties: 256 } as const;
const NULLABLE_STRING_MAP = { anyOf: [{ type: 'null' }, STRING_MAP] } as const;

const IPAM_DATA = {
  type: 'object',
  required: ['AddressSpace', 'Pool'],
  properties: {
    AddressSpace: STR,
    Pool: STR,
    Gateway: STR,
    AuxAddresses: { anyOf: [{ type: 'null' }, STRING_MAP] },
  },
} as const;
const IPAM_DATA_LIST = { anyOf: [{ type: 'null' }, { type: 'array', items: IPAM_DATA, maxItems: 16 }] } as const;

function body(required: string[], properties: Record<string, unknown>): Record<string, unknown> {
  return { type: 'object', required, properties };
}

export const networkSchemas = {
  CreateNetwork: body(['NetworkID', 'Options'], { NetworkID: ID, Options: OPTIONS, IPv4Data: IPAM_DATA_LIST, IPv6Data: IPAM_DATA_LIST }),
  AllocateNetwork: body(['NetworkID'], { NetworkID: ID, Options: NULLABLE_STRING_MAP, IPv4Data: IPAM_DATA_LIST, IPv6Data: IPAM_DATA_LIST }),
  NetworkOnly: body(['NetworkID'], { NetworkID: ID }),
  Endpoint: body(['NetworkID', 'EndpointID'], { NetworkID: ID, EndpointID: ID }),
  CreateEndpoint: body(['NetworkID', 'EndpointID'], {
    NetworkID: ID,
    EndpointID: ID,
    Interface: {
      anyOf: [
        { type: 'null' },
        { type: 'object', properties: { Address: STR, AddressIPv6: STR, MacAddress: STR } },
      ],
    },
    Options: { anyOf: [{ type: 'null' }, OPTIONS] },
  }),
  ProgramExternalConnectivity: body(['NetworkID', 'EndpointID'], { NetworkID: ID, EndpointID: ID, Options: { anyOf: [{ type: 'null' }, OPTIONS] } }),
  Join: body(['NetworkID', 'EndpointID', 'SandboxKey'], {
    NetworkID: ID,
    EndpointID: ID,
    SandboxKey: { type: 'string', minLength: 1, maxLength: 4096 },
    Options: { anyOf: [{ type: 'null' }, OPTIONS] },
  }),
  Discover: body(['DiscoveryType'], { DiscoveryType: { type: 'integer' }, DiscoveryData: {} }),
  GwAllocCheck: body([], { Options: { anyOf: [{ type: 'null' }, OPTIONS] } }),
};

export const ipamSchemas = {
  RequestPool: body(['AddressSpace'], {
    AddressSpace: STR,
    Pool: STR,
    SubPool: STR,
    Options: NULLABLE_STRING_MAP,
    V6: { type: 'boolean' },
  }),
  ReleasePool: body(['PoolID'], { PoolID: { type: 'string', minLength: 1, maxLength: 256 } }),
  RequestAddress: body(['PoolID'], {
    PoolID: { type: 'string', minLength: 1, maxLength: 256 },
    Address: STR,
    Options: NULLABLE_STRING_MAP,
  }),
  ReleaseAddress: body(['PoolID', 'Address'], {
    PoolID: { type: 'string', minLength: 1, maxLength: 256 },
    Address: { type: 'string', minLength: 1, maxLength: 64 },
  }),
};

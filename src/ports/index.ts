// Published ports: Docker's portmap parsed and validated (bindings.ts), host ports chosen
// (allocate.ts) and programmed per endpoint (publisher.ts), records in ports/<host>/<EndpointID>.
export { ANY_IPV4, PORTMAP_OPTION, collides, hostPortText, portRequests, requestText } from './bindings';
export type { PortBinding, PortProto, PortRequest } from './bindings';
export { candidatePorts, parsePortRange } from './allocate';
export type { PortRange } from './allocate';
export { PortPublisher } from './publisher';
export type { EndpointPlace, EndpointPlaces, PortDataplane, PortPublisherDeps, PublishedPort } from './publisher';
export type { PortRecord } from './records';

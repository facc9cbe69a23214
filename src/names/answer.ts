// What vxnet does with one DNS query from a container: answer it from the NameTable, or hand
// it on unchanged. Pure (a buffer in, a decision out), unit-tested with dns-packet.
//
// Only a single IN question for a name of the asking container's networks is answered;
// everything else (other names, other classes, several questions, anything that does not
// parse) is forwarded as the exact bytes the container sent, so id, flags and EDNS reach the
// upstream untouched and its reply (truncated or not) goes back as it came.
import * as dnsPacket from 'dns-packet';
import type { NameTable, Scope } from './table';

/** Seconds. Short: a stopped container must vanish quickly, and clients re-ask cheaply. */
export const ANSWER_TTL = 1;
/** Largest UDP answer without EDNS (RFC 1035). */
export const PLAIN_UDP_MAX = 512;
/** The UDP payload size vxnet advertises in its EDNS answers (the DNS flag day 2020 value). */
export const EDNS_UDP_SIZE = 1232;

export type Decision =
  | { kind: 'answer'; reply: Buffer; addresses: number }
  /**
   * direct: Docker's resolver, too, would only forward this query unchanged to the container's
   * servers: a standard query, one IN question, A or AAAA, for a name of several labels (Docker
   * may refuse to forward single labels: ndots), not reverse (.arpa: Docker answers its
   * containers' addresses) and not NAME.NETWORK-shaped (a local container Docker may know a
   * moment before vxnet's table does).
   */
  | { kind: 'forward'; direct: boolean };

const FORWARD: Decision = { kind: 'forward', direct: false };

type Question = dnsPacket.Question;

function familyOf(q: Question): 4 | 6 | null {
  if (q.type === 'A') return 4;
  if (q.type === 'AAAA') return 6;
  return null;
}

/**
 * @param transport 'udp' limits the reply to the client's EDNS size (or 512) and sets TC
 * when the answer does not fit, so the client retries over TCP.
 */
export function decide(query: Buffer, scope: Scope, table: NameTable, transport: 'udp' | 'tcp'): Decision {
  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(query);
  } catch {
    return FORWARD;
  }
  const questions = packet.questions ?? [];
  if (packet.type !== 'query' || questions.length !== 1) return FORWARD;
  const q = questions[0];
  if (q.class !== 'IN') return FORWARD;
  const family = familyOf(q);
  // A known name asked for another type (MX, TXT, …): an empty NOERROR answer, as Docker gives.
  const lnet = table.networkKnowing(scope.lnets, q.name);
  if (lnet === null) {
    const name = q.name.toLowerCase().replace(/\.$/, '');
    const direct =
      family !== null &&
      (packet as { opcode?: string }).opcode === 'QUERY' &&
      name.includes('.') &&
      !name.endsWith('.arpa') &&
      !scope.lnets.some((l) => table.underNetworkName(l, name));
    return { kind: 'forward', direct };
  }
  const addresses = family === null ? [] : table.lookup(lnet, q.name, family).addresses;
  const opt = (packet.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
  const reply = answerPacket(packet.id ?? 0, packet.flags ?? 0, q, addresses, opt !== undefined);
  const limit = transport === 'tcp' ? Infinity : Math.max(PLAIN_UDP_MAX, opt?.udpPayloadSize ?? PLAIN_UDP_MAX);
  if (dnsPacket.encodingLength(reply) > limit) {
    reply.flags = (reply.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE;
    reply.answers = [];
  }
  return { kind: 'answer', reply: dnsPacket.encode(reply), addresses: reply.answers?.length ?? 0 };
}

/** The query flags an answer repeats (RFC 1035: RD is copied; RFC 4035: CD is copied). */
export const ECHOED_FLAGS = dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED;

/**
 * vxnet's answer to question `q` with these addresses (A for an A question, AAAA for AAAA,
 * none for other types: NODATA), before any truncation. `edns`: the query carried an OPT record.
 */
export function answerPacket(id: number, queryFlags: number, q: Question, addresses: string[], edns: boolean): dnsPacket.Packet {
  const type = q.type === 'AAAA' ? 'AAAA' : 'A';
  return {
    id,
    type: 'response',
    flags: (queryFlags & ECHOED_FLAGS) | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHORITATIVE_ANSWER,
    questions: [q],
    answers: addresses.map((data) => ({ type, class: 'IN', name: q.name, ttl: ANSWER_TTL, data }) as dnsPacket.Answer),
    additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, flags: 0 } as dnsPacket.Answer] : [],
  };
}

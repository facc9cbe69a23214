// Every reply one DNS query gets, counted from inside a container's network namespace: a
// second responder on the query's way (two resolvers both answering) shows as a second reply.
import * as path from 'node:path';
import { Host, REPO_ROOT } from './hosts';

const DNS_PACKET = path.join(REPO_ROOT, 'node_modules/dns-packet');

/**
 * Sends one A query to 127.0.0.11:53 and listens WINDOW ms after the first reply; prints
 * [{ id, rcode, answers }] for every reply whose id matches.
 */
const COLLECT = `
const dp = require(${JSON.stringify(DNS_PACKET)});
const [name, windowMs] = process.argv.slice(1);
const id = 1 + Math.floor(Math.random() * 60000);
const sock = require('dgram').createSocket('udp4');
const replies = [];
const finish = () => { console.log(JSON.stringify(replies)); process.exit(0); };
let timer = setTimeout(finish, 5000);
sock.on('message', (m) => {
  const r = dp.decode(m);
  if (r.id !== id) return;
  replies.push({ id: r.id, rcode: r.rcode, answers: r.answers.filter((a) => a.type === 'A').map((a) => a.data) });
  if (replies.length === 1) { clearTimeout(timer); timer = setTimeout(finish, Number(windowMs)); }
});
sock.send(dp.encode({ id, type: 'query', flags: dp.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] }), 53, '127.0.0.11');
`;

export interface DnsReply {
  id: number;
  rcode: string;
  answers: string[];
}

/** The replies to one query for `name` asked in the network namespace of process `pid`. */
export async function dnsReplies(h: Host, pid: string, name: string, windowMs = 1000): Promise<DnsReply[]> {
  const out = await h.execOk(['nsenter', '-t', pid, '-n', process.execPath, '-e', COLLECT, name, String(windowMs)], { timeoutMs: 30_000 });
  return JSON.parse(out) as DnsReply[];
}

// The driver process's memory in bytes, for the admin route Vxnet.Memory: RSS (what the kernel
// charges), the V8 heap's size and the part of it in use, and memory held outside the heap
// (Buffers and other ArrayBuffers, native objects). RSS far above heapUsed means reserve or
// native memory, not live JavaScript objects.
import * as v8 from 'node:v8';

export interface ProcessMemory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** V8's own heap spaces: size and used, by space (new, old, code, large object …) */
  spaces: Record<string, { size: number; used: number }>;
}

export function processMemory(): ProcessMemory {
  const m = process.memoryUsage();
  const spaces: ProcessMemory['spaces'] = {};
  for (const s of v8.getHeapSpaceStatistics()) spaces[s.space_name] = { size: s.space_size, used: s.space_used_size };
  return { rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, spaces };
}

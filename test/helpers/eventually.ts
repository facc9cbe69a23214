/** Polls until cond() holds, at most withinMs (bounded loop); returns how long it took, or throws. */
export async function eventually(what: string, cond: () => boolean | Promise<boolean>, withinMs: number, everyMs = 20): Promise<number> {
  const start = Date.now();
  while (Date.now() - start <= withinMs) {
    if (await cond()) return Date.now() - start;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what}: not within ${withinMs} ms`);
}

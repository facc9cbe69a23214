import pino from 'pino';
import { turnBatched, BufferedDestination } from '../../src/log';

/** A destination that records what each flush would have written. */
function recorder(): BufferedDestination & { writes: string[] } {
  let buffered = '';
  const writes: string[] = [];
  return {
    writes,
    write(line: string) {
      buffered += line;
    },
    flush() {
      writes.push(buffered);
      buffered = '';
    },
  };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('src/log.ts', () => {
  it('writes every line logged in one turn with one flush, after the turn', async () => {
    const to = recorder();
    const log = pino({ base: null, timestamp: false }, turnBatched(to));
    log.info('a');
    log.info('b');
    log.info('c');
    expect(to.writes).toEqual([]);
    await nextTurn();
    expect(to.writes).toHaveLength(1);
    expect(to.writes[0].trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['a', 'b', 'c']);
  });

  it('flushes again for lines of a later turn, and not at all in a turn without lines', async () => {
    const to = recorder();
    const log = pino({ base: null, timestamp: false }, turnBatched(to));
    log.info('a');
    await nextTurn();
    await nextTurn();
    log.info('b');
    await nextTurn();
    expect(to.writes.map((w) => (JSON.parse(w) as { msg: string }).msg)).toEqual(['a', 'b']);
  });

  it('flushNow writes the pending lines at once, and nothing when none are pending', async () => {
    const to = recorder();
    const dest = turnBatched(to);
    const log = pino({ base: null, timestamp: false }, dest);
    dest.flushNow();
    expect(to.writes).toEqual([]);
    log.info('exiting');
    dest.flushNow();
    expect(to.writes).toHaveLength(1);
    await nextTurn();
    expect(to.writes).toHaveLength(1);
  });
});

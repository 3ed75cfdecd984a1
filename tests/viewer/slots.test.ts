/** viewer/src/lib/slots.ts: at most n at a time, first come first served, waiting takers cancelled by key. */
import { describe, expect, it } from 'vitest';
import { slots } from '../../viewer/src/lib/slots';

describe('slots', () => {
  it('lets n run, queues the rest in order, and cancels the waiting ones asked for', async () => {
    const s = slots(2);
    const order: string[] = [];
    const start = (key: string) =>
      s.take(key).then((cancelled) => {
        order.push(cancelled ? `${key} cancelled` : key);
        return cancelled;
      });
    const [a, b] = [start('a'), start('b')];
    const c = start('series-1/c');
    const d = start('series-2/d');
    const e = start('series-1/e');
    await Promise.all([a, b]);
    expect(order).toEqual(['a', 'b']);
    s.cancelWaiting((key) => key.startsWith('series-1/'));
    expect(await c).toBe(true);
    expect(await e).toBe(true);
    s.give(); // a done: d (the only one left waiting) runs
    expect(await d).toBe(false);
    expect(order.slice(0, 2)).toEqual(['a', 'b']);
    expect(order.slice(2, 4).sort()).toEqual(['series-1/c cancelled', 'series-1/e cancelled']);
    expect(order[4]).toBe('series-2/d');
    s.give();
    s.give();
    // Both slots free again: two more run at once, the third waits.
    let third = false;
    await Promise.all([s.take(), s.take()]);
    s.take().then(() => {
      third = true;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(third).toBe(false);
    s.give();
    await new Promise((r) => setTimeout(r, 0));
    expect(third).toBe(true);
  });
});

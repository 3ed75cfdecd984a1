import { describe, expect, it } from 'vitest';
import { DatasetChannel } from './channel';
import { planAssociations } from './scu';

describe('DatasetChannel', () => {
  it('hands chunks over in order, tells when its buffer is full and drained', async () => {
    const pressure: boolean[] = [];
    const ch = new DatasetChannel(8, (full) => pressure.push(full));
    const read = (async () => {
      const out: number[] = [];
      for await (const c of ch.chunks()) {
        out.push(...c);
        await new Promise((r) => setTimeout(r, 1));
      }
      return out;
    })();
    for (let i = 0; i < 5; i++) ch.write(Buffer.from([i, i, i, i, i, i]));
    ch.end();
    expect(await read).toEqual([0, 1, 2, 3, 4].flatMap((i) => [i, i, i, i, i, i]));
    expect(pressure[0]).toBe(true);
    expect(pressure).toContain(false);
  });

  it('fail() before the end makes the reader throw; writes after are discarded', async () => {
    const ch = new DatasetChannel(1024);
    const read = (async () => {
      for await (const _ of ch.chunks()) {
        // consume
      }
    })();
    ch.write(Buffer.from([1, 2]));
    ch.fail(new Error('association aborted'));
    await expect(read).rejects.toThrow('association aborted');
    ch.write(Buffer.from([3]));
    ch.end();
    await new Promise((r) => ch.once('finish', r));
  });

  it('a reader that stops early releases the writer (the rest is discarded)', async () => {
    const ch = new DatasetChannel(4);
    ch.write(Buffer.alloc(4));
    for await (const _ of ch.chunks()) break;
    let finished = false;
    ch.on('finish', () => {
      finished = true;
    });
    for (let i = 0; i < 10; i++) ch.write(Buffer.alloc(4));
    ch.end();
    await new Promise((r) => setTimeout(r, 10));
    expect(finished).toBe(true);
  });
});

describe('planAssociations', () => {
  it('splits when SOP Class × transfer syntax contexts (plus one fallback per class) exceed 128', () => {
    const many = Array.from({ length: 200 }, (_, i) => ({
      SOPClassUID: `1.2.${i % 70}`,
      TransferSyntaxUID: `1.3.${i % 2}`,
    }));
    const groups = planAssociations(many);
    expect(groups.flat()).toHaveLength(200);
    for (const g of groups) {
      const combos = new Set(g.map((x) => `${x.SOPClassUID} ${x.TransferSyntaxUID}`));
      const classes = new Set(g.map((x) => x.SOPClassUID));
      expect(combos.size + classes.size).toBeLessThanOrEqual(128);
    }
    expect(planAssociations([{ SOPClassUID: 'a', TransferSyntaxUID: 'b' }])).toHaveLength(1);
  });
});

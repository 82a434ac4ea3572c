// The goals of issue 17, each printed as the ratio measured in this run against its bar.
import type { StreamFigures } from './streaming';
import type { Result } from './wrk';

/**
 * How much the worker's resident memory may grow during one large transfer and still count as
 * flat: a few 64 KiB chunks in flight plus what V8's young generation grows to under allocation
 * (up to 3 × 16 MiB semi-spaces), far below the 1 GiB / 512 MiB that goes through it.
 */
export const FLAT_RSS_GROWTH_MIB = 64;

export interface GoalInputs {
  a: Result;
  b: Result;
  c: Result;
  d: Result;
  e: Result;
  /** The filter rows: no filter (same duration), the C filter, the TypeScript filter. */
  base: Result;
  f: Result;
  g: Result;
  /** Through the bridge, and on plain Node http. */
  stream?: { bridge: StreamFigures; plain: StreamFigures };
}

export function printGoals({ a, b, c, d, e, base, f, g, stream }: GoalInputs): void {
  const lines: string[] = [];
  const mark = (ok: boolean) => (ok ? '✓' : '✗');
  const x = (v: number) => v.toFixed(2);
  const goal = (n: number, checks: Array<[string, boolean]>) =>
    checks.forEach(([text, ok], i) => lines.push(`${i === 0 ? `goal ${n}:` : ''.padEnd(7)} ${mark(ok)} ${text}`));

  const bridgeCpu = b.cpuUs - a.cpuUs;
  goal(1, [[`(b − a)/c by CPU per request = (${b.cpuUs.toFixed(1)} − ${a.cpuUs.toFixed(1)}) / ${c.cpuUs.toFixed(1)} µs = ${x(bridgeCpu / c.cpuUs)}   (bar ≤ 0.60)`, bridgeCpu <= 0.6 * c.cpuUs]]);

  const bc = b.rps / c.rps;
  const interim = bc >= 0.8 && bc < 1 ? ' (interim bar ≥ 0.80 met)' : '';
  goal(2, [
    [`b/c by req/s = ${x(bc)}   (bar ≥ 1.00, interim ≥ 0.80)${interim}`, bc >= 1],
    [`d/e by req/s = ${x(d.rps / e.rps)}   (bar ≥ 1.00)`, d.rps >= e.rps],
  ]);

  goal(3, [
    [`a/c by req/s = ${x(a.rps / c.rps)}   (bar ≥ 1.50)`, a.rps >= 1.5 * c.rps],
    [`a/c by CPU per request = ${a.cpuUs.toFixed(1)} / ${c.cpuUs.toFixed(1)} µs = ${x(a.cpuUs / c.cpuUs)}   (bar ≤ 0.50)`, a.cpuUs <= 0.5 * c.cpuUs],
  ]);

  // A C filter's cost is within wrk's noise: when it measures below zero, the bar uses zero.
  const cAdded = f.p50 - base.p50;
  const tsAdded = g.p50 - base.p50;
  const tsBar = 2 * Math.max(cAdded, 0) + 0.02;
  goal(4, [
    [`TS filter adds ${tsAdded.toFixed(3)} ms p50; bar 2 × C's ${cAdded.toFixed(3)} + 0.020 = ${tsBar.toFixed(3)} ms (ratio ${x(tsAdded / tsBar)}, bar ≤ 1.00)`, tsAdded <= tsBar],
    [`TS filter / no filter by req/s = ${x(g.rps / base.rps)}   (bar ≥ 0.80)`, g.rps >= 0.8 * base.rps],
  ]);

  if (stream) {
    const { bridge, plain } = stream;
    const growth = Math.max(bridge.downloadRss.growth, bridge.uploadRss.growth);
    goal(5, [
      [`download bridge/plain Node = ${x(bridge.downloadGBs / plain.downloadGBs)}   (bar ≥ 0.90)`, bridge.downloadGBs >= 0.9 * plain.downloadGBs],
      [`upload bridge/plain Node = ${x(bridge.uploadGBs / plain.uploadGBs)}   (bar ≥ 0.90)`, bridge.uploadGBs >= 0.9 * plain.uploadGBs],
      [
        `worker peak RSS growth +${bridge.downloadRss.growth.toFixed(0)} MiB download, +${bridge.uploadRss.growth.toFixed(0)} MiB upload ` +
          `(plain Node +${plain.downloadRss.growth.toFixed(0)} / +${plain.uploadRss.growth.toFixed(0)})   (bar ≤ ${FLAT_RSS_GROWTH_MIB} MiB)`,
        growth <= FLAT_RSS_GROWTH_MIB,
      ],
    ]);
  } else {
    lines.push('goal 5: not measured (BENCH_STREAM=0)');
  }
  lines.push('goal 6: the test suites stay green: run `npm test` (not part of the bench)');

  console.log(`\nGoals (issue 17), measured in this run:`);
  for (const l of lines) console.log(`  ${l}`);
}

import { cpuPer, cpuSplitTable, machineBusyUs, processCpuUs } from './cpu-split';

describe('bench CPU split', () => {
  test('machine busy time: all but idle and iowait, USER_HZ ticks to µs', () => {
    const stat = 'cpu  100 5 50 1000 20 3 7 0 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\n';
    expect(machineBusyUs(stat)).toBe((100 + 5 + 50 + 3 + 7) * 10_000);
    expect(() => machineBusyUs('intr 1 2 3\n')).toThrow(/no cpu line/);
  });

  test('per unit: pods, each process, machine, and the rest; a process gone is NaN and not subtracted', () => {
    const a = { podsUs: 1000, procsUs: { ztunnel: 500, agent: 10 }, machineBusyUs: 10_000 };
    const b = { podsUs: 3000, procsUs: { ztunnel: 1500, agent: NaN }, machineBusyUs: 14_000 };
    const per = cpuPer(a, b, 10);
    expect(per).toEqual({ pods: 200, ztunnel: 100, agent: NaN, machine: 400, rest: 100 });
    expect(cpuPer(a, b, 0)).toEqual({});
  });

  test('this process has CPU time; a pid that does not exist is NaN', () => {
    expect(processCpuUs(process.pid)).toBeGreaterThan(0);
    expect(processCpuUs(2 ** 22 + 12345)).toBeNaN();
  });

  test('table: parts in a fixed order, median [min–max], n/a for a missing part', () => {
    const t = cpuSplitTable([
      { mode: 'tc', samples: [{ perConn: { pods: 10, ztunnel: 5, rest: 1, machine: 16 }, perRtt: { pods: 2, ztunnel: 1, rest: 0, machine: 3 } }] },
      { mode: 'direct', samples: [{ perConn: { pods: 8, machine: 9, rest: 1 }, perRtt: { pods: 1, machine: 1, rest: 0 } }] },
    ]);
    const lines = t.split('\n');
    expect(lines[0]).toBe('| mode | pods µs/conn | ztunnel µs/conn | rest µs/conn | machine µs/conn | pods µs/RTT | ztunnel µs/RTT | rest µs/RTT | machine µs/RTT |');
    expect(lines[2]).toBe('| tc | 10.0 [10.0–10.0] | 5.0 [5.0–5.0] | 1.0 [1.0–1.0] | 16.0 [16.0–16.0] | 2.0 [2.0–2.0] | 1.0 [1.0–1.0] | 0.0 [0.0–0.0] | 3.0 [3.0–3.0] |');
    expect(lines[3]).toContain('| direct | 8.0 [8.0–8.0] | n/a |');
  });
});

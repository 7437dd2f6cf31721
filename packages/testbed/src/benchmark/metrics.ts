export type MetricName = 'rttP50Us' | 'rttP99Us' | 'throughputGbps' | 'bulk64kGbps' | 'rr1kTps' | 'newConnsPerSec' | 'cpuPerConnUs' | 'machineCpuPerConnUs' | 'conntrackPerConn';

export interface MetricInfo {
  name: MetricName;
  label: string;
  unit: string;
  /** Whether a larger value is better (for the ratio's reading). */
  higherIsBetter: boolean;
  digits: number;
}

export const METRICS: readonly MetricInfo[] = [
  { name: 'rttP50Us', label: 'RTT p50', unit: 'µs', higherIsBetter: false, digits: 1 },
  { name: 'rttP99Us', label: 'RTT p99', unit: 'µs', higherIsBetter: false, digits: 1 },
  { name: 'throughputGbps', label: 'throughput', unit: 'Gbit/s', higherIsBetter: true, digits: 2 },
  // iperf3 -l 64K: the write size where splicing wins most (and the guard's queue cap is hit).
  { name: 'bulk64kGbps', label: 'bulk 64 KiB writes', unit: 'Gbit/s', higherIsBetter: true, digits: 2 },
  // sockperf ping-pong with 1 KiB messages: closed loop, one message in flight.
  { name: 'rr1kTps', label: 'RR 1 KiB', unit: 'trans/s', higherIsBetter: true, digits: 0 },
  { name: 'newConnsPerSec', label: 'new conns/s', unit: '1/s', higherIsBetter: true, digits: 0 },
  // CPU the node's pods (apps, proxies, wrk) used per wrk connection (cgroup cpu.stat): unlike the
  // rate, it barely moves when other jobs share the machine.
  { name: 'cpuPerConnUs', label: 'CPU/conn', unit: 'µs', higherIsBetter: false, digits: 0 },
  // CPU of the whole machine per wrk connection (/proc/stat busy time over the wrk window): also what
  // runs outside the pods' cgroups (softirq on any task, psock teardown in kworkers after an RCU grace
  // period, the agent). What a user pays; includes whatever else the machine runs meanwhile.
  { name: 'machineCpuPerConnUs', label: 'CPU/conn machine', unit: 'µs', higherIsBetter: false, digits: 0 },
  { name: 'conntrackPerConn', label: 'conntrack entries/conn', unit: '', higherIsBetter: false, digits: 2 },
];

/** wrkRequests: connections of the wrk window (to divide a profile of it by). */
export type Sample = Record<MetricName, number> & { wrkRequests?: number };

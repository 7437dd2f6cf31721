export type MetricName = 'rttP50Us' | 'rttP99Us' | 'throughputGbps' | 'newConnsPerSec' | 'conntrackPerConn';

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
  { name: 'newConnsPerSec', label: 'new conns/s', unit: '1/s', higherIsBetter: true, digits: 0 },
  { name: 'conntrackPerConn', label: 'conntrack entries/conn', unit: '', higherIsBetter: false, digits: 2 },
];

export type Sample = Record<MetricName, number>;

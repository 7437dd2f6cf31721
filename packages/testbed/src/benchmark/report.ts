import { METRICS, type MetricName, type Sample } from './metrics';
import { summarize, type Summary } from './stats';
import type { CpuSplitSamples } from './cpu-split';

export interface ModeResult {
  mode: string;
  description: string;
  samples: Sample[];
  summary: Record<MetricName, Summary>;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  machine: { kernel: string; cpus: number; cpuModel: string };
  settings: { rounds: number; seconds: number; wrkConnections: number; order: string[]; mesh?: 'sidecar' | 'ambient'; proxyAccessLog?: boolean };
  modes: ModeResult[];
  /** Name of the mode ratios are taken against besides `direct` (an iptables mode), if any. */
  iptablesBaseline?: string;
  /** Measurements whose tool failed once and were run again (label: error). */
  retries?: string[];
  /** Ambient: CPU per connection and per round trip by part (pods, the stand-in, machine), per round (cpu-split.ts). */
  cpuSplit?: Array<{ mode: string; samples: CpuSplitSamples[] }>;
}

export function summarizeMode(mode: string, description: string, samples: Sample[]): ModeResult {
  const summary = Object.fromEntries(METRICS.map((m) => [m.name, summarize(samples.map((s) => s[m.name]))])) as Record<MetricName, Summary>;
  return { mode, description, samples, summary };
}

export function pickIptablesBaseline(modes: string[]): string | undefined {
  return modes.includes('iptables') ? 'iptables' : modes.find((m) => m.startsWith('iptables'));
}

const fmt = (v: number, digits: number) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');

function ratio(a: number, b: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return a === 0 && b === 0 ? '1.00×' : 'n/a';
  return `${(a / b).toFixed(2)}×`;
}

export function markdownTable(r: BenchReport): string {
  const head = ['mode', ...METRICS.map((m) => `${m.label}${m.unit ? ` (${m.unit})` : ''}`)];
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...r.modes.map(
      (mr) =>
        `| ${mr.mode} | ${METRICS.map((m) => {
          const s = mr.summary[m.name];
          return `${fmt(s.median, m.digits)} [${fmt(s.min, m.digits)}–${fmt(s.max, m.digits)}]`;
        }).join(' | ')} |`,
    ),
  ];
  const direct = r.modes.find((m) => m.mode === 'direct');
  const ipt = r.iptablesBaseline ? r.modes.find((m) => m.mode === r.iptablesBaseline) : undefined;
  const bases = [direct, ipt].filter((x): x is ModeResult => x !== undefined);
  if (bases.length) {
    lines.push('', `Ratios of medians (${bases.map((b) => `/ ${b.mode}`).join(', ')}):`, '');
    const rh = ['mode', ...METRICS.filter((m) => m.name !== 'conntrackPerConn').map((m) => m.label)];
    lines.push(`| ${rh.join(' | ')} |`, `|${rh.map(() => '---').join('|')}|`);
    for (const mr of r.modes) {
      const cells = METRICS.filter((m) => m.name !== 'conntrackPerConn').map((m) =>
        bases.map((b) => `${ratio(mr.summary[m.name].median, b.summary[m.name].median)}`).join(' / '),
      );
      lines.push(`| ${mr.mode} | ${cells.join(' | ')} |`);
    }
  }
  lines.push(
    '',
    `${r.settings.mesh === 'ambient' ? 'Ambient pods (no sidecars), every mode with the same ztunnel stand-in. ' : ''}` +
    `${r.settings.mesh !== 'ambient' && r.settings.proxyAccessLog !== undefined ? `HAProxy sidecars with the access log ${r.settings.proxyAccessLog ? 'on' : 'off (Istio default)'}. ` : ''}` +
    `${r.settings.rounds} rounds × ${r.settings.seconds} s per metric, modes alternated (${r.settings.order.join(' → ')}); ` +
      `median [min–max]. RTT = sockperf TCP ping-pong round trip; throughput = iperf3 single stream (bulk: -l 64K); ` +
      `RR 1 KiB = sockperf ping-pong -m 1024 round trips per second; ` +
      `new conns/s = wrk -c${r.settings.wrkConnections} with Connection: close; conntrack = entries added in both pods' netns per connection. ` +
      `Kernel ${r.machine.kernel}, ${r.machine.cpus} CPUs (${r.machine.cpuModel}).`,
  );
  return lines.join('\n');
}

const COLORS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One small bar panel per metric: median bar, min–max whisker, one colour per mode. */
export function svgChart(r: BenchReport): string {
  const panelW = 220;
  const panelH = 200;
  const top = 40;
  const left = 20;
  const W = left + METRICS.length * panelW + 10;
  const H = top + panelH + 40 + r.modes.length * 16;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">shunt bench: ${esc(r.modes.map((m) => m.mode).join(' vs '))}</text>`,
  ];
  METRICS.forEach((m, i) => {
    const x0 = left + i * panelW;
    const maxV = Math.max(1e-9, ...r.modes.map((mr) => (Number.isFinite(mr.summary[m.name].max) ? mr.summary[m.name].max : 0)));
    const plotH = panelH - 40;
    const barW = Math.min(40, (panelW - 40) / Math.max(1, r.modes.length) - 8);
    parts.push(`<text x="${x0 + 10}" y="${top + 12}" font-weight="bold">${esc(m.label)}${m.unit ? ` (${esc(m.unit)})` : ''}${m.higherIsBetter ? ' ↑' : ' ↓'}</text>`);
    parts.push(`<line x1="${x0 + 10}" y1="${top + 20 + plotH}" x2="${x0 + panelW - 20}" y2="${top + 20 + plotH}" stroke="#999"/>`);
    r.modes.forEach((mr, j) => {
      const s = mr.summary[m.name];
      const y = (v: number) => top + 20 + plotH - (Number.isFinite(v) ? (v / maxV) * plotH : 0);
      const bx = x0 + 20 + j * (barW + 8);
      parts.push(`<rect x="${bx}" y="${y(s.median)}" width="${barW}" height="${top + 20 + plotH - y(s.median)}" fill="${COLORS[j % COLORS.length]}"/>`);
      parts.push(`<line x1="${bx + barW / 2}" y1="${y(s.min)}" x2="${bx + barW / 2}" y2="${y(s.max)}" stroke="black"/>`);
      parts.push(`<text x="${bx + barW / 2}" y="${y(s.median) - 3}" text-anchor="middle" font-size="9">${fmt(s.median, m.digits)}</text>`);
    });
  });
  r.modes.forEach((mr, j) => {
    const y = top + panelH + 20 + j * 16;
    parts.push(`<rect x="${left}" y="${y - 9}" width="10" height="10" fill="${COLORS[j % COLORS.length]}"/>`);
    parts.push(`<text x="${left + 16}" y="${y}">${esc(mr.mode)}: ${esc(mr.description)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

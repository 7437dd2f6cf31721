/**
 * Where a connection's CPU goes: the samples of a `perf record -a -g --all-cgroups` profile of a wrk
 * window, split by symbol group, in µs of CPU per wrk connection. Counted: samples of the testbed's
 * cgroups (the pods' processes, including softirq work that runs on their tasks) plus kworker,
 * ksoftirqd and rcu threads (psock teardown after an RCU grace period, softirq deferred to a
 * thread), which run outside any pod's cgroup; those threads also serve whatever else the machine
 * runs, so the kworker share is an upper bound.
 *
 * A sample goes to the first group any frame of its call chain matches (so psock work called from
 * a BPF program counts as psock), else to its process's user space or to "kernel other" (TCP/IP,
 * syscalls, scheduling).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export const SYMBOL_GROUPS: ReadonlyArray<readonly [string, RegExp]> = [
  ['psock/sockmap', /sk_psock|sock_map|sock_hash|tcp_bpf|sk_msg|bpf_tcp_ingress/],
  ['bpf progs+maps', /bpf_prog_|__cgroup_bpf|htab_|bpf_map|lookup_elem|bpf_lru|pcpu_freelist|bpf_sk_storage|bpf_ringbuf|bpf_get_|bpf_sock_|bpf_probe/],
  ['netfilter', /^(nf_|ipt_|nft_|xt_|__nf_|iptable|ipv4_conntrack|ipv6_conntrack)/],
  ['rcu/free', /^(rcu_|__rcu|kmem_cache_free|__slab_free|kfree|call_rcu|__call_rcu)/],
];

export interface PerfSplit {
  /** Samples counted (matching cgroup or kernel thread). */
  samples: number;
  /** Samples per group (SYMBOL_GROUPS names, `user <comm>`, `kernel other`). */
  groups: Record<string, number>;
  /** Samples per process name (kworker/N:M folded into kworker). */
  byComm: Record<string, number>;
}

const KERNEL_THREAD = /^(kworker|ksoftirqd|rcu)/;

function commKey(comm: string): string {
  const m = KERNEL_THREAD.exec(comm);
  return m ? m[1]! : comm;
}

/** Parses `perf script -F comm,pid,cgroup,ip,sym` output (blank line between samples). */
export function splitPerfScript(text: string, cgroup: RegExp): PerfSplit {
  const out: PerfSplit = { samples: 0, groups: {}, byComm: {} };
  const add = (rec: Record<string, number>, k: string) => (rec[k] = (rec[k] ?? 0) + 1);
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    if (lines.length === 0) continue;
    const head = /^\s*(.+?)\s+(\d+)\s+(\S+)\s*$/.exec(lines[0]!);
    if (!head) continue;
    const [, comm, , cg] = head as unknown as [string, string, string, string];
    if (!cgroup.test(cg) && !KERNEL_THREAD.test(comm)) continue;
    const frames = lines.slice(1).map((l) => {
      const [ip = '', ...sym] = l.trim().split(/\s+/);
      return { kernel: /^ffff/.test(ip), sym: sym.join(' ') };
    });
    const group =
      SYMBOL_GROUPS.find(([, rx]) => frames.some((f) => rx.test(f.sym)))?.[0] ??
      (frames.length > 0 && !frames[0]!.kernel ? `user ${commKey(comm)}` : 'kernel other');
    out.samples++;
    add(out.groups, group);
    add(out.byComm, commKey(comm));
  }
  return out;
}

/** Splits a perf.data file (runs `perf script`). */
export async function splitPerfData(file: string, cgroup: RegExp): Promise<PerfSplit> {
  const { stdout } = await promisify(execFile)('perf', ['script', '-i', file, '-F', 'comm,pid,cgroup,ip,sym'], { maxBuffer: 1 << 30 });
  return splitPerfScript(stdout, cgroup);
}

/** µs of CPU per connection for `samples` samples at `freq` Hz per CPU over `conns` connections. */
export function usPerConn(samples: number, freq: number, conns: number): number {
  return conns > 0 ? (samples * 1e6) / freq / conns : NaN;
}

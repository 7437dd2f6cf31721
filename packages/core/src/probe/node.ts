// The node probe: kernel release, BTF, cgroup2 and bpffs mounts, the BPF features of
// BPF_FEATURE_PROBES through @shunt/libbpf (each loads a tiny program or tries an attach; a helper is
// probed from every program type a backend calls it from), and iptables by a functional test.
// Every feature carries its evidence: what was tried and what the kernel said.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { release as osRelease } from 'node:os';
import { errorMessage } from '../errors';
import { parseKernelRelease } from '../kernel';
import type { Feature, FeatureName, NodeCapabilities } from '../types';
import { BPF_FEATURE_PROBES, describeProbeCall, type BpfFeatureName, type BpfProbeCall, type BpfProbePart } from './bpf-features';
import { probeIptables } from './iptables';
import { findMount, parseMounts } from './mounts';

export interface ProbeNodeOptions {
  /** Run the iptables functional test in a scratch netns (needs root); otherwise only check the binaries. */
  iptablesScratch: boolean;
  mountsFile?: string;
  btfPath?: string;
}

type LibbpfProbes = Pick<typeof import('@shunt/libbpf'), 'probeProgType' | 'probeHelper' | 'probeAttachType' | 'probeSkLookup' | 'probeTcx'>;

function runPart(lib: LibbpfProbes, c: BpfProbeCall): Feature {
  switch (c.kind) {
    case 'prog':
      return lib.probeProgType(c.progType);
    case 'helper':
      return lib.probeHelper(c.progType, c.helper);
    case 'attach':
      return lib.probeAttachType(c.progType, c.attachType);
    case 'sk_lookup':
      return lib.probeSkLookup();
    case 'tcx':
      return lib.probeTcx();
  }
}

/** A feature holds when every part does; the evidence keeps each part's own answer. */
function probeBpfFeature(lib: LibbpfProbes, parts: readonly BpfProbePart[]): Feature {
  // libbpf's evidence names the call (helper, program type, attach type); the verdict leads each part.
  const results = parts.map((p) => guarded(() => runPart(lib, p.call)));
  if (results.length === 1) return results[0]!;
  return {
    available: results.every((r) => r.available),
    evidence: results.map((r) => `[${r.available ? 'yes' : 'NO'}] ${r.evidence}`).join('; '),
  };
}

function loadLibbpf(): { probes?: LibbpfProbes; error?: string } {
  try {
    // Loaded here, not at the top, so the rest of the core works where the addon is not built.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return { probes: require('@shunt/libbpf') as LibbpfProbes };
  } catch (err) {
    return { error: `@shunt/libbpf could not be loaded: ${errorMessage(err)}` };
  }
}

function guarded(fn: () => Feature): Feature {
  try {
    const r = fn();
    return { available: r.available, evidence: r.evidence };
  } catch (err) {
    return { available: false, evidence: `probe failed: ${errorMessage(err)}` };
  }
}

export async function probeNode(opts: ProbeNodeOptions): Promise<NodeCapabilities> {
  const kernelRelease = osRelease();
  const features = {} as Record<FeatureName, Feature>;

  const btfPath = opts.btfPath ?? '/sys/kernel/btf/vmlinux';
  features.btf = existsSync(btfPath)
    ? { available: true, evidence: `${btfPath} present (${statSync(btfPath).size} bytes)` }
    : { available: false, evidence: `${btfPath} missing (kernel built without CONFIG_DEBUG_INFO_BTF?)` };

  const mountsFile = opts.mountsFile ?? '/proc/mounts';
  let mounts: ReturnType<typeof parseMounts> = [];
  try {
    mounts = parseMounts(readFileSync(mountsFile, 'utf8'));
  } catch (err) {
    features.cgroup2 = features.bpffs = { available: false, evidence: `cannot read ${mountsFile}: ${errorMessage(err)}` };
  }
  const cg = findMount(mounts, 'cgroup2', '/sys/fs/cgroup');
  const bpf = findMount(mounts, 'bpf', '/sys/fs/bpf');
  features.cgroup2 ??= cg ? { available: true, evidence: `cgroup2 mounted at ${cg.mountPoint} (${mountsFile})` } : { available: false, evidence: `no cgroup2 mount in ${mountsFile}` };
  features.bpffs ??= bpf ? { available: true, evidence: `bpf filesystem mounted at ${bpf.mountPoint} (${mountsFile})` } : { available: false, evidence: `no bpf filesystem mount in ${mountsFile}` };

  const lib = loadLibbpf();
  const unavailable = (what: string): Feature => ({ available: false, evidence: `${what}: ${lib.error}` });
  for (const [name, parts] of Object.entries(BPF_FEATURE_PROBES) as [BpfFeatureName, readonly BpfProbePart[]][]) {
    features[name] = lib.probes ? probeBpfFeature(lib.probes, parts) : unavailable(parts.map((p) => describeProbeCall(p.call)).join(', '));
  }

  const ipt = await probeIptables({ scratch: opts.iptablesScratch });
  features['iptables:legacy'] = ipt.legacy;
  features['iptables:nft'] = ipt.nft;
  features['iptables:tproxy'] = ipt.tproxy;
  if (ipt.variant) features[`iptables:${ipt.variant}`].evidence += `; chosen: ${ipt.variantEvidence}`;

  return {
    kernelRelease,
    kernel: parseKernelRelease(kernelRelease),
    cgroup2Path: cg?.mountPoint ?? null,
    bpffsPath: bpf?.mountPoint ?? null,
    iptablesVariant: ipt.variant,
    features,
  };
}

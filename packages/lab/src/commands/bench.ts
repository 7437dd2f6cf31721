// `shunt-lab bench`: the testbed benchmark with every available mode: direct, and each backend this
// node can run as the real agent process sets it up (`shunt agent` with a pods file), so the
// numbers are what a user of the agent gets.
import { probeNode, profileByName, type ProfileName } from '@shunt/core';
import { ambientDirectMode, directMode, runBench, type PathMode } from '@shunt/testbed';
import { createBackends, DEFAULT_STATE_DIR, type Io } from '@shunt/agent';
import { agentMode } from '../demo/agent-mode';

export interface BenchCommandOptions {
  modes?: string;
  /** istio-sidecar (default): sidecar pods; istio-ambient: ambient pods and a ztunnel stand-in, modes direct / tc / iptables. */
  profile?: ProfileName;
  rounds?: number;
  seconds?: number;
  outDir?: string;
  json?: boolean;
  /** `conns`: only the connection-rate measurement (wrk, CPU/conn). */
  only?: 'conns';
  /** perf record -a -g over every wrk window, files here. */
  perfDir?: string;
  /** The HAProxy sidecars' per-connection access log; default off (Istio's default). */
  proxyAccessLog?: boolean;
}

/**
 * `sockops` runs the agent's defaults (splice 'auto': guarded, one receive queue); `sockops-nosplice`
 * the same agent with --splice-ports=none, so the table shows what splicing adds or costs per
 * metric against sockops' connect-time redirect alone.
 */
export const NO_SPLICE_MODE = 'sockops-nosplice';
/** Ambient: `tc` runs the agent's default (app <-> ztunnel splicing 'auto'); this one the same agent with --splice-ports=none. */
export const TC_NO_SPLICE_MODE = 'tc-nosplice';
/**
 * The default agent with the short-connection rule forced on / off (splice_guard.short_conns
 * overwritten after start), for A/B runs of that rule against the default. Only with --modes.
 */
export const SHORT_MODE = 'sockops-short';
export const ALWAYS_SPLICE_MODE = 'sockops-always';

export async function availableBenchModes(profile: ProfileName = 'istio-sidecar'): Promise<PathMode[]> {
  const caps = await probeNode({ iptablesScratch: true });
  // Ambient: every mode runs the same ztunnel stand-in (direct hands it the pods itself; the agent modes' agent does).
  const modes: PathMode[] = [profile === 'istio-ambient' ? ambientDirectMode() : directMode];
  // Only support() is asked here; each agent the bench runs gets its own state dir.
  for (const b of createBackends({ profile, stateDir: DEFAULT_STATE_DIR })) {
    if (!b.support(caps).ok || !profileByName(profile).backendOrder.includes(b.name)) continue;
    modes.push({ ...agentMode(b.name, profile === 'istio-sidecar' ? {} : { profile }), name: b.name });
    if (b.name === 'sockops') modes.push({ ...agentMode(b.name, { splicePorts: 'none' }), name: NO_SPLICE_MODE });
    if (b.name === 'tc') modes.push({ ...agentMode(b.name, { profile, splicePorts: 'none' }), name: TC_NO_SPLICE_MODE });
  }
  return modes;
}

/** Modes run only when asked for by name (A/B of one setting). */
function extraModes(modes: PathMode[]): PathMode[] {
  if (!modes.some((m) => m.name === 'sockops')) return [];
  return [
    { ...agentMode('sockops', { shortConns: 4 }), name: SHORT_MODE },
    { ...agentMode('sockops', { shortConns: 0 }), name: ALWAYS_SPLICE_MODE },
  ];
}

export async function benchCommand(o: BenchCommandOptions, io: Io): Promise<number> {
  const profile = o.profile ?? 'istio-sidecar';
  let modes = await availableBenchModes(profile);
  if (o.modes) {
    modes = [...modes, ...extraModes(modes)];
    const want = o.modes.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = want.filter((w) => !modes.some((m) => m.name === w));
    if (unknown.length) {
      io.err(`shunt-lab bench: mode(s) ${unknown.join(', ')} not available here; available: ${modes.map((m) => m.name).join(', ')}\n`);
      return 2;
    }
    // In the order asked for (the A-B order within a round).
    modes = want.map((w) => modes.find((m) => m.name === w)!);
  }
  const ambient = profile === 'istio-ambient';
  const result = await runBench({
    modes,
    ...(ambient ? { mesh: 'ambient' as const } : {}),
    ...(o.rounds ? { rounds: o.rounds } : {}),
    ...(o.seconds ? { seconds: o.seconds } : {}),
    ...(o.outDir ? { outDir: o.outDir } : {}),
    ...(o.only ? { only: o.only } : {}),
    ...(o.perfDir ? { perf: { dir: o.perfDir } } : {}),
    ...(o.proxyAccessLog ? { proxyAccessLog: true } : {}),
    // The table (and where the files went) is printed by runBench; --json prints only the report.
    log: o.json ? () => undefined : (l) => io.out(l + '\n'),
  });
  if (o.json) io.out(JSON.stringify({ ...result.report, files: result.files }, null, 2) + '\n');
  return 0;
}

// `shunt bench`: the testbed benchmark with every available mode: direct, the iptables backend
// driven by the real agent, and the backends' own bench modes.
import { probeNode } from '@shunt/core';
import { sockopsBenchMode, sockopsSupport } from '@shunt/backend-sockops';
import { iptablesSupport } from '@shunt/backend-iptables';
import { directMode, runBench, type PathMode } from '@shunt/testbed';
import { agentMode } from '../demo/agent-mode';
import type { Io } from '../program';

export interface BenchCommandOptions {
  modes?: string;
  rounds?: number;
  seconds?: number;
  outDir?: string;
  json?: boolean;
}

export async function availableBenchModes(): Promise<PathMode[]> {
  const caps = await probeNode({ iptablesScratch: true });
  const modes: PathMode[] = [directMode];
  if (iptablesSupport(caps).ok) modes.push({ ...agentMode('iptables'), name: 'iptables' });
  if (sockopsSupport(caps).ok) modes.push(sockopsBenchMode() as unknown as PathMode);
  return modes;
}

export async function benchCommand(o: BenchCommandOptions, io: Io): Promise<number> {
  let modes = await availableBenchModes();
  if (o.modes) {
    const want = o.modes.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = want.filter((w) => !modes.some((m) => m.name === w));
    if (unknown.length) {
      io.err(`shunt bench: mode(s) ${unknown.join(', ')} not available here; available: ${modes.map((m) => m.name).join(', ')}\n`);
      return 2;
    }
    modes = modes.filter((m) => want.includes(m.name));
  }
  const result = await runBench({
    modes,
    ...(o.rounds ? { rounds: o.rounds } : {}),
    ...(o.seconds ? { seconds: o.seconds } : {}),
    ...(o.outDir ? { outDir: o.outDir } : {}),
    log: o.json ? () => undefined : (l) => io.out(l + '\n'),
    progress: (l) => io.err(`\r${l}`),
  });
  io.out(o.json ? JSON.stringify(result.report, null, 2) + '\n' : result.markdown + '\n');
  return 0;
}

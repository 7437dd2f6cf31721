// `shunt agent`: runs until SIGTERM/SIGINT. Stopping leaves the redirect in place (the next
// agent adopts it) unless --cleanup-on-exit.
import { loadConfig, type ProfileName, type RedirectMode } from '@shunt/core';
import { startAgent, type AgentSettings } from '../agent/runtime';
import { createLogger } from '../observability/log';
import type { Io } from '../program';

/** SIGTERM to exit, at most (inside the chart's 30 s terminationGracePeriodSeconds). */
export const STOP_BUDGET_MS = Number(process.env['SHUNT_STOP_BUDGET_MS'] ?? 20_000);

export interface AgentCommandOptions {
  config?: string;
  nodeName?: string;
  redirectMode?: RedirectMode;
  profile?: ProfileName;
  podsFile?: string;
  kubeconfig?: string;
  inCluster?: boolean;
  metricsAddress?: string;
  logLevel?: string;
  resyncSeconds?: number;
  cleanupOnExit?: boolean;
  bpffsPath?: string;
  cgroupPath?: string;
  cgroupSearch?: string;
  netnsPrefix?: string;
  stateDir?: string;
  splicePorts?: string;
  zdsSocket?: string;
  maxPods?: string;
  netnsPrepareGraceMs?: number;
}

/** Flags, environment and config file through core's loadConfig, plus the agent-only flags. */
export function agentSettings(o: AgentCommandOptions, env: NodeJS.ProcessEnv = process.env): { settings: AgentSettings; logLevel: string } {
  const { config } = loadConfig({
    flags: {
      mode: o.redirectMode,
      profile: o.profile,
      nodeName: o.nodeName,
      podsFile: o.podsFile,
      kubeconfig: o.kubeconfig,
      inCluster: o.inCluster,
      cgroupPath: o.cgroupPath,
      bpffsPath: o.bpffsPath,
      metricsAddress: o.metricsAddress,
      logLevel: o.logLevel,
      splicePorts: o.splicePorts,
      zdsSocket: o.zdsSocket,
      maxPods: o.maxPods,
    },
    env,
    ...(o.config ? { file: o.config } : {}),
  });
  const settings: AgentSettings = {
    nodeName: config.nodeName,
    mode: config.mode,
    profile: config.profile,
    source: config.source,
    metricsAddress: config.metricsAddress,
    bpffsPath: config.bpffsPath,
    ...(config.cgroupPath ? { cgroupPath: config.cgroupPath } : {}),
    ...(o.cgroupSearch ?? env['SHUNT_CGROUP_SEARCH'] ? { cgroupSearch: o.cgroupSearch ?? env['SHUNT_CGROUP_SEARCH'] } : {}),
    ...(o.resyncSeconds ? { resyncIntervalMs: o.resyncSeconds * 1000 } : {}),
    cleanupOnExit: !!o.cleanupOnExit,
    splice: config.spliceMode === 'listed' ? config.splicePorts : config.spliceMode,
    ...(config.profile === 'istio-ambient' ? { zdsSocket: config.zdsSocket } : {}),
    meshCapture: config.meshCapture,
    maxPods: config.maxPods,
    ...(o.netnsPrefix ? { netnsPrefix: o.netnsPrefix } : {}),
    ...(o.netnsPrepareGraceMs !== undefined ? { netnsPrepare: { graceMs: o.netnsPrepareGraceMs } } : {}),
    ...(o.stateDir ?? env['SHUNT_STATE_DIR'] ? { stateDir: o.stateDir ?? env['SHUNT_STATE_DIR'] } : {}),
  };
  return { settings, logLevel: config.logLevel };
}

export async function agentCommand(o: AgentCommandOptions, io: Io): Promise<number> {
  let parsed: ReturnType<typeof agentSettings>;
  try {
    parsed = agentSettings(o);
  } catch (e) {
    io.err(`shunt agent: ${(e as Error).message}\n`);
    return 2;
  }
  const { settings } = parsed;
  const log = createLogger(parsed.logLevel);
  let agent;
  try {
    agent = await startAgent(settings, { log });
  } catch (e) {
    log.error({ err: (e as Error).message }, 'agent failed to start');
    return 1;
  }
  const running = agent;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig, cleanup: settings.cleanupOnExit }, 'stopping');
      // The kubelet kills the container after its grace period (the chart's default: 30 s); exit on
      // our own well before, with the kernel state as it is (the next agent adopts it).
      const budget = setTimeout(() => {
        log.error({ budgetMs: STOP_BUDGET_MS }, 'stop took longer than its budget; exiting now (the redirect stays; the next agent adopts it)');
        process.exit(1);
      }, STOP_BUDGET_MS);
      budget.unref();
      running.stop().then(
        () => {
          clearTimeout(budget);
          resolve(0);
        },
        (e: Error) => {
          clearTimeout(budget);
          log.error({ err: e.message }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}

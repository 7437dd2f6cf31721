// `shunt-lab demo`: the testbed demo with the real agent: for each backend this node can run, the
// agent process enrolls the demo pods from a pods file, and the demo shows the path taken.
import { probeNode, profileByName, selectBackend, type BackendName, type ProfileName, type RedirectMode } from '@shunt/core';
import { ambientDirectMode, directMode, runDemo } from '@shunt/testbed';
import { createBackends, DEFAULT_STATE_DIR, type Io } from '@shunt/agent';
import { agentMode } from '../demo/agent-mode';

export interface DemoCommandOptions {
  redirectMode?: RedirectMode;
  /** istio-sidecar (default): sidecar pods; istio-ambient: ambient pods with the ztunnel stand-in (tc, iptables). */
  profile?: ProfileName;
  requests: number;
  json?: boolean;
}

export async function demoCommand(o: DemoCommandOptions, io: Io): Promise<number> {
  const caps = await probeNode({ iptablesScratch: true });
  // Only support() is asked here; each agent the demo runs gets its own state dir.
  const profile = o.profile ?? 'istio-sidecar';
  const ambient = profile === 'istio-ambient';
  const backends = createBackends({ profile, stateDir: DEFAULT_STATE_DIR });
  const rows = backends.map((b) => {
    if (!profileByName(profile).backendOrder.includes(b.name)) return { name: `backend ${b.name}`, available: false, detail: `does not serve profile ${profile}` };
    const s = b.support(caps);
    return { name: `backend ${b.name}`, available: s.ok, detail: s.ok ? 'support() holds' : s.reasons.join('; ') };
  });
  let names: BackendName[];
  if (o.redirectMode && o.redirectMode !== 'auto') {
    names = [o.redirectMode];
  } else {
    // Every backend the profile can use here, in selection order.
    const order = profileByName(profile).backendOrder;
    names = order.filter((n) => backends.find((b) => b.name === n)?.support(caps).ok);
    if (o.redirectMode === 'auto') names = [selectBackend('auto', caps, backends, { profile }).chosen.name];
  }
  const results = await runDemo({
    modes: [ambient ? ambientDirectMode() : directMode, ...names.map((n) => agentMode(n, ambient ? { profile } : {}))],
    ...(ambient ? { mesh: 'ambient' as const } : {}),
    requests: o.requests,
    capabilities: { source: 'core probeNode + each backend support()', rows },
    out: o.json ? () => undefined : (l) => io.out(l + '\n'),
  });
  if (o.json) io.out(JSON.stringify(results, null, 2) + '\n');
  const broken = results.filter((r) => r.mode !== 'direct' && (!r.viaProxy || r.failed > 0));
  return broken.length ? 1 : 0;
}

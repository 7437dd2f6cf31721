// The iptables RedirectBackend: Istio's sidecar capture rules in each pod's netns. No node-wide
// state; each enroll is a read (iptables-save) and, only when something differs, one restore
// transaction per table. The backend remembers which netns each enrolled pod lives in, so
// observe/unenroll/stop can find it again.

import { existsSync } from 'node:fs';
import type { InstalledPod, InstalledState, MeshPod, NodeCapabilities, NodeContext, PodRef, RedirectBackend, Support } from '@shunt/core';
import type { Family } from './addr';
import { podName } from './errors';
import { planFingerprint } from './fingerprint';
import { type IptablesBackendOptions, type IptablesVariant, type RenderOptions, renderOptionsFrom } from './options';
import { FAMILIES, familyRules, isEmptyFamily, type RulePlan, emptyRouting } from './plan';
import { type ApplyResult, PodNetns } from './pod-netns';
import { podFamilies, renderRules } from './render';
import type { SavedFamily } from './save';
import { chooseVariant, iptablesSupport, tproxyUnavailableReason } from './support';

interface Enrolled {
  ref: PodRef;
  netnsPath: string;
  families: Family[];
  /** The last applied plan had TPROXY policy routing (so observe reads it back). */
  policy: boolean;
}

const OBSERVE_CONCURRENCY = 4;

function emptyPlan(): RulePlan {
  return { v4: {}, v6: {}, routing: emptyRouting() };
}

function refOf(pod: PodRef): PodRef {
  return { uid: pod.uid, namespace: pod.namespace, name: pod.name };
}

function union(a: Family[], b: Family[]): Family[] {
  return FAMILIES.filter((f) => a.includes(f) || b.includes(f));
}

/** Connections counted by the first-packet rules (nat sees only a connection's first packet). */
function addCounters(into: Record<string, number>, saved: SavedFamily | undefined): void {
  if (!saved) return;
  for (const table of Object.values(saved)) {
    for (const { line, counter } of table?.counters ?? []) {
      let key: string | undefined;
      if (line.startsWith('-A SHUNT_REDIRECT ')) key = 'outbound_redirected';
      else if (line.startsWith('-A SHUNT_IN_REDIRECT ')) key = 'inbound_redirected';
      else if (line.startsWith('-A SHUNT_TPROXY ')) key = 'inbound_tproxied';
      else if (line.startsWith('-A SHUNT_OUTPUT_DNS ') && line.includes('-j REDIRECT')) key = 'dns_redirected';
      if (key) into[key] = (into[key] ?? 0) + counter.packets;
    }
  }
}

export class IptablesBackend implements RedirectBackend {
  readonly name = 'iptables' as const;
  private readonly renderOpts: RenderOptions;
  private caps: NodeCapabilities | undefined;
  private variant: IptablesVariant | undefined;
  private readonly pods = new Map<string, Enrolled>();

  constructor(private readonly options: IptablesBackendOptions = {}) {
    this.renderOpts = renderOptionsFrom(options);
  }

  support(caps: NodeCapabilities): Support {
    return iptablesSupport(caps, this.options.variant);
  }

  async start(node: NodeContext): Promise<void> {
    const s = this.support(node.caps);
    if (!s.ok) throw new Error(`iptables backend cannot run on node ${node.nodeName}: ${s.reasons.join('; ')}`);
    this.caps = node.caps;
    this.variant = chooseVariant(node.caps, this.options.variant)!;
  }

  /** The variant in use (after start). */
  get iptablesVariant(): IptablesVariant | undefined {
    return this.variant;
  }

  /** The rules enroll(pod) installs. Throws PodRulesError for settings that cannot become rules. */
  render(pod: MeshPod): RulePlan {
    return renderRules(pod, this.renderOpts);
  }

  fingerprint(pod: MeshPod): string {
    try {
      return planFingerprint(this.render(pod));
    } catch (e) {
      // Never equal to an observed fingerprint, so the reconciler retries enroll and reports its error.
      return `ipt1:invalid:${(e as Error).message}`;
    }
  }

  private netns(netnsPath: string): PodNetns {
    if (!this.variant) throw new Error('iptables backend used before start()');
    return new PodNetns(
      netnsPath,
      { variant: this.variant, lockWaitSeconds: this.options.lockWaitSeconds ?? 10, timeoutMs: this.options.commandTimeoutMs ?? 15_000 },
      this.renderOpts,
    );
  }

  async enroll(pod: MeshPod): Promise<void> {
    await this.enrollWithResult(pod);
  }

  /** enroll() that also says whether the kernel was touched (tests and the bench use it). */
  async enrollWithResult(pod: MeshPod): Promise<ApplyResult> {
    const desired = this.render(pod);
    const nothingWanted = FAMILIES.every((f) => isEmptyFamily(familyRules(desired, f)));
    if (pod.interceptionMode === 'TPROXY' && !nothingWanted && this.caps) {
      const why = tproxyUnavailableReason(this.caps);
      if (why) throw new Error(`pod ${podName(pod)}: interceptionMode TPROXY: ${why}`);
    }
    let known = this.pods.get(pod.uid);
    if (known && known.netnsPath !== pod.netnsPath) known = undefined; // a new sandbox: the old netns is gone
    if (!pod.netnsPath) {
      if (nothingWanted && !known) return { changed: false, transactions: 0 };
      throw new Error(`pod ${podName(pod)}: netnsPath is not set, cannot install iptables rules`);
    }
    if (!existsSync(pod.netnsPath)) throw new Error(`pod ${podName(pod)}: netns ${pod.netnsPath} does not exist`);

    const families = union(podFamilies(pod), known?.families ?? []);
    // Reading the policy routing costs two `ip` runs per family; skip it unless this pod has or had
    // TPROXY. (A REDIRECT pod that had TPROXY under a previous agent keeps a harmless, unused
    // mark rule until its netns goes away.)
    const policy = desired.routing.policyRules.length > 0 || (known?.policy ?? false);
    const result = await this.netns(pod.netnsPath).apply(pod, desired, families, { families, policy });
    if (nothingWanted) this.pods.delete(pod.uid);
    else this.pods.set(pod.uid, { ref: refOf(pod), netnsPath: pod.netnsPath, families: podFamilies(pod), policy: desired.routing.policyRules.length > 0 });
    return result;
  }

  async unenroll(ref: PodRef): Promise<void> {
    const known = this.pods.get(ref.uid);
    if (!known) return;
    if (existsSync(known.netnsPath)) {
      // What this backend installed, and nothing else: the families and routing it applied.
      await this.netns(known.netnsPath).apply(ref, emptyPlan(), known.families, { families: known.families, policy: known.policy });
    }
    this.pods.delete(ref.uid);
  }

  async observe(): Promise<InstalledState> {
    const counters: Record<string, number> = {};
    const pods: InstalledPod[] = [];
    const entries = [...this.pods.values()];
    let next = 0;
    const worker = async () => {
      while (next < entries.length) {
        const e = entries[next++]!;
        if (!existsSync(e.netnsPath)) {
          this.pods.delete(e.ref.uid); // the pod's netns is gone, and with it our rules
          continue;
        }
        try {
          const got = await this.netns(e.netnsPath).readInstalled(e.families, { families: e.families, policy: e.policy });
          const podCounters: Record<string, number> = {};
          for (const f of e.families) addCounters(podCounters, got.saved[f]);
          for (const [k, v] of Object.entries(podCounters)) counters[k] = (counters[k] ?? 0) + v;
          pods.push({ ...e.ref, fingerprint: planFingerprint(got.plan), detail: { netnsPath: e.netnsPath, families: e.families, counters: podCounters } });
        } catch (err) {
          // One unreadable pod must not hide the others; its fingerprint never matches, so it is retried.
          pods.push({ ...e.ref, fingerprint: 'ipt1:unreadable', detail: { netnsPath: e.netnsPath, error: (err as Error).message } });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(OBSERVE_CONCURRENCY, entries.length) }, worker));
    pods.sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
    return {
      backend: 'iptables',
      nodeReady: this.variant !== undefined,
      nodeDetail: { variant: this.variant ?? null, pods: this.pods.size, tproxyMark: this.renderOpts.tproxyMark, tproxyTable: this.renderOpts.tproxyTable },
      pods,
      counters,
    };
  }

  async stop(opts: { cleanup: boolean }): Promise<void> {
    if (!opts.cleanup) return; // rules live in the pod netns and keep working without us
    const failures: string[] = [];
    for (const e of [...this.pods.values()]) {
      try {
        await this.unenroll(e.ref);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
    if (failures.length) throw new Error(`iptables backend cleanup failed for ${failures.length} pod(s): ${failures.join('\n')}`);
  }
}

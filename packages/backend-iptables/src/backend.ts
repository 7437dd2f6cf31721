// The iptables RedirectBackend: Istio's sidecar capture rules in each pod's netns. No node-wide
// kernel state; each enroll is a read (iptables-save) and, only when something differs, one
// iptables-restore run per family (a transaction per changed table inside it). What was installed
// where is kept in a record per pod (see state-store.ts), so a restarted agent, `shunt status` and
// `shunt cleanup` find the pods again from a fresh process.

import type { InstalledPod, InstalledState, Logger, MeshPod, NodeCapabilities, NodeContext, PodRef, RedirectBackend, Support } from '@shunt/core';
import type { Family } from './addr';
import { podName } from './errors';
import { planFingerprint } from './fingerprint';
import { identifyNetns, type NetnsIdentity, sameNetns } from './netns-identity';
import { type IptablesBackendOptions, type IptablesVariant, type RenderOptions, renderOptionsFrom } from './options';
import { FAMILIES, familyRules, isEmptyFamily, type RulePlan, emptyRouting } from './plan';
import { type ApplyResult, PodNetns } from './pod-netns';
import { AMBIENT, isInpodRule } from './render-ambient';
import type { RoutingRead } from './routing';
import { podFamilies, renderRules } from './render';
import type { SavedFamily } from './save';
import { DEFAULT_STATE_DIR, type InvalidRecord, type PodRecord, RECORD_FORMAT, StateStore } from './state-store';
import { chooseVariant, iptablesSupport, tproxyUnavailableReason } from './support';
import { sweepNetns, type SweepReport } from './sweep';

const OBSERVE_CONCURRENCY = 4;
const QUIET: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function emptyPlan(): RulePlan {
  return { v4: {}, v6: {}, routing: emptyRouting() };
}

function refOf(pod: PodRef): PodRef {
  return { uid: pod.uid, namespace: pod.namespace, name: pod.name };
}

function union(a: Family[], b: Family[]): Family[] {
  return FAMILIES.filter((f) => a.includes(f) || b.includes(f));
}

/** The part of a record that says what may be installed where (a change of it must reach the disk first). */
function scopeOf(r: PodRecord): string {
  return JSON.stringify([r.netnsPath, r.netns, r.variant, r.families, r.policyRouting, r.tproxyMark, r.tproxyTable, r.inpodRouting ?? false]);
}

/** What routing to read back for a record: the TPROXY rule/route and/or ambient's in-pod ones. */
function routingOf(r: Pick<PodRecord, 'families' | 'policyRouting' | 'inpodRouting'>): RoutingRead {
  // An ambient pod's record has the in-pod rule; ::6 on lo is no part of its rules.
  return { families: r.families, policy: r.policyRouting, inpod: r.inpodRouting ?? false, passthrough: !(r.inpodRouting ?? false) };
}

function sameRecord(a: PodRecord | undefined, b: PodRecord): boolean {
  if (!a) return false;
  return scopeOf(a) === scopeOf(b) && a.pending === b.pending && a.fingerprint === b.fingerprint && JSON.stringify(a.pod) === JSON.stringify(b.pod);
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
  private log: Logger = QUIET;
  /** What is (or may be) installed, by pod uid: the same records the state directory holds. */
  private readonly pods = new Map<string, PodRecord>();
  private readonly store: StateStore | null;
  private invalidRecords: InvalidRecord[] = [];
  /** Started for `shunt status`: read the kernel and the records, change neither. */
  private readOnly = false;

  constructor(private readonly options: IptablesBackendOptions = {}) {
    this.renderOpts = renderOptionsFrom(options);
    const dir = options.stateDir === undefined ? DEFAULT_STATE_DIR : options.stateDir;
    this.store = dir === null ? null : new StateStore(dir);
  }

  support(caps: NodeCapabilities): Support {
    return iptablesSupport(caps, this.options.variant, this.options.profile);
  }

  /** Chooses the variant and adopts the records of pods enrolled by earlier processes. Idempotent. */
  async start(node: NodeContext): Promise<void> {
    const s = iptablesSupport(node.caps, this.options.variant, this.options.profile ?? node.profile);
    if (!s.ok) throw new Error(`iptables backend cannot run on node ${node.nodeName}: ${s.reasons.join('; ')}`);
    this.caps = node.caps;
    this.variant = chooseVariant(node.caps, this.options.variant)!;
    this.log = node.log;
    // Field of NodeContext being added to the core; read structurally until it lands.
    this.readOnly = (node as NodeContext & { readOnly?: boolean }).readOnly === true;
    await this.adoptRecords();
  }

  private async adoptRecords(): Promise<void> {
    if (!this.store) return;
    const { records, invalid } = await this.store.list();
    this.invalidRecords = invalid;
    for (const bad of invalid) this.log.warn({ file: bad.file, error: bad.error }, 'iptables state record unreadable; ignored (`sweep` removes what it described)');
    for (const rec of records) {
      if (this.pods.has(rec.pod.uid)) continue; // ours already, and newer in memory
      if (!sameNetns(rec.netns, this.identify(rec.netnsPath))) {
        // Our rules lived in that netns and went away with it.
        this.log.info({ pod: podName(rec.pod), netnsPath: rec.netnsPath }, 'iptables state record of a gone netns dropped');
        if (!this.readOnly) await this.store.remove(rec.pod.uid);
        continue;
      }
      this.pods.set(rec.pod.uid, rec);
    }
  }

  /** The variant in use (after start). */
  get iptablesVariant(): IptablesVariant | undefined {
    return this.variant;
  }

  /** Where the per-pod records are kept (null: memory only). */
  get stateDir(): string | null {
    return this.store?.dir ?? null;
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

  private identify(netnsPath: string, knownCookie?: string): NetnsIdentity | null {
    return identifyNetns(netnsPath, this.options.netnsCookie, knownCookie);
  }

  private netnsOf(rec: Pick<PodRecord, 'netnsPath' | 'variant' | 'tproxyMark' | 'tproxyTable'>): PodNetns {
    return new PodNetns(
      rec.netnsPath,
      { variant: rec.variant, lockWaitSeconds: this.options.lockWaitSeconds ?? 10, timeoutMs: this.options.commandTimeoutMs ?? 15_000 },
      // Routing is read and removed with the mark/table it was installed with, even if the options changed since.
      { ...this.renderOpts, tproxyMark: rec.tproxyMark, tproxyTable: rec.tproxyTable },
    );
  }

  private requireVariant(): IptablesVariant {
    if (!this.variant) throw new Error('iptables backend used before start()');
    return this.variant;
  }

  private requireWritable(what: string): void {
    if (this.readOnly) throw new Error(`iptables backend started read-only: ${what} is not allowed`);
  }

  private async saveRecord(rec: PodRecord): Promise<void> {
    const known = this.pods.get(rec.pod.uid);
    if (sameRecord(known, rec)) return;
    if (this.store) await this.store.write(rec);
    this.pods.set(rec.pod.uid, rec);
  }

  private async forget(uid: string): Promise<void> {
    this.pods.delete(uid);
    if (this.store) await this.store.remove(uid);
  }

  async enroll(pod: MeshPod): Promise<void> {
    await this.enrollWithResult(pod);
  }

  /** enroll() that also says whether the kernel was touched (tests and the bench use it). */
  async enrollWithResult(pod: MeshPod): Promise<ApplyResult> {
    const variant = this.requireVariant();
    this.requireWritable(`enroll of pod ${podName(pod)}`);
    const desired = this.render(pod);
    const nothingWanted = FAMILIES.every((f) => isEmptyFamily(familyRules(desired, f)));
    if (pod.interceptionMode === 'TPROXY' && !nothingWanted && this.caps) {
      const why = tproxyUnavailableReason(this.caps);
      if (why) throw new Error(`pod ${podName(pod)}: interceptionMode TPROXY: ${why}`);
    }
    let known = this.pods.get(pod.uid);
    // A new sandbox: the old netns is gone, and our rules with it.
    if (known && known.netnsPath !== pod.netnsPath) known = undefined;
    if (!pod.netnsPath) {
      if (nothingWanted && !known) return { changed: false, transactions: 0 };
      throw new Error(`pod ${podName(pod)}: netnsPath is not set, cannot install iptables rules`);
    }
    const netns = this.identify(pod.netnsPath, pod.netnsCookie);
    if (!netns) throw new Error(`pod ${podName(pod)}: netns ${pod.netnsPath} does not exist`);
    if (known && !sameNetns(known.netns, netns)) known = undefined; // same path, another netns
    if (known && (known.variant !== variant || known.tproxyMark !== this.renderOpts.tproxyMark || known.tproxyTable !== this.renderOpts.tproxyTable)) {
      // Installed by an agent with other settings: take that down with its own settings first
      // (a short capture gap for this pod, once, on such a config change).
      this.log.info({ pod: podName(pod), from: { variant: known.variant, mark: known.tproxyMark, table: known.tproxyTable } }, 'iptables settings changed; reinstalling pod rules');
      await this.netnsOf(known).apply(pod, emptyPlan(), known.families, routingOf(known));
      known = undefined;
    }

    const families = union(podFamilies(pod), known?.families ?? []);
    const wantPolicy = desired.routing.policyRules.some((r) => !isInpodRule(r));
    const wantInpod = desired.routing.policyRules.some(isInpodRule);
    // Reading the policy routing costs two `ip` runs per family; skip it unless this pod has or had TPROXY (or ambient's rule).
    const policy = wantPolicy || (known?.policyRouting ?? false);
    const inpod = wantInpod || (known?.inpodRouting ?? false);
    const base = {
      format: RECORD_FORMAT,
      pod: refOf(pod),
      netnsPath: pod.netnsPath,
      netns,
      variant,
      tproxyMark: this.renderOpts.tproxyMark,
      tproxyTable: this.renderOpts.tproxyTable,
    } as const;
    if (!nothingWanted) {
      // Recorded before the kernel changes, covering old and new, so a crash mid-apply leaves nothing unrecorded.
      const intent: PodRecord = { ...base, families, policyRouting: policy, inpodRouting: inpod, pending: true, fingerprint: known?.fingerprint ?? '', updatedAt: new Date().toISOString() };
      if (!known || scopeOf(known) !== scopeOf(intent)) await this.saveRecord(intent);
    }
    const netnsOps = this.netnsOf(base);
    // No record: nothing of ours should be there, so one guarded restore (no save first) usually does it.
    const result =
      (!known && !nothingWanted ? await netnsOps.installFresh(desired, families) : undefined) ??
      (await netnsOps.apply(pod, desired, families, { families, policy, inpod, passthrough: desired.routing.loopbackAddresses.length > 0 }));
    if (nothingWanted) {
      await this.forget(pod.uid);
    } else {
      const done: PodRecord = {
        ...base,
        families: podFamilies(pod),
        policyRouting: wantPolicy,
        inpodRouting: wantInpod,
        pending: false,
        fingerprint: planFingerprint(desired),
        updatedAt: new Date().toISOString(),
      };
      await this.saveRecord(done);
    }
    return result;
  }

  async unenroll(ref: PodRef): Promise<void> {
    this.requireVariant();
    this.requireWritable(`unenroll of pod ${podName(ref)}`);
    const known = this.pods.get(ref.uid);
    if (!known) return;
    if (sameNetns(known.netns, this.identify(known.netnsPath))) {
      // What this backend installed, and nothing else: the families and routing it recorded.
      await this.netnsOf(known).apply(ref, emptyPlan(), known.families, routingOf(known));
    }
    await this.forget(ref.uid);
  }

  async observe(): Promise<InstalledState> {
    this.requireVariant();
    const counters: Record<string, number> = {};
    const pods: InstalledPod[] = [];
    const entries = [...this.pods.values()];
    let next = 0;
    const worker = async () => {
      while (next < entries.length) {
        const e = entries[next++]!;
        if (!sameNetns(e.netns, this.identify(e.netnsPath))) {
          // The pod's netns is gone, and with it our rules.
          if (this.readOnly) this.pods.delete(e.pod.uid);
          else await this.forget(e.pod.uid);
          continue;
        }
        const detail = { netnsPath: e.netnsPath, variant: e.variant, families: e.families, ...(e.pending ? { pending: true } : {}) };
        try {
          const got = await this.netnsOf(e).readInstalled(e.families, routingOf(e));
          const podCounters: Record<string, number> = {};
          for (const f of e.families) addCounters(podCounters, got.saved[f]);
          for (const [k, v] of Object.entries(podCounters)) counters[k] = (counters[k] ?? 0) + v;
          pods.push({ ...e.pod, fingerprint: planFingerprint(got.plan), detail: { ...detail, counters: podCounters } });
        } catch (err) {
          // One unreadable pod must not hide the others; its fingerprint never matches, so it is retried.
          pods.push({ ...e.pod, fingerprint: 'ipt1:unreadable', detail: { ...detail, error: (err as Error).message } });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(OBSERVE_CONCURRENCY, entries.length) }, worker));
    pods.sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
    return {
      backend: 'iptables',
      nodeReady: this.variant !== undefined,
      nodeDetail: {
        variant: this.variant ?? null,
        pods: this.pods.size,
        tproxyMark: this.renderOpts.tproxyMark,
        tproxyTable: this.renderOpts.tproxyTable,
        stateDir: this.stateDir,
        ...(this.invalidRecords.length ? { invalidRecords: this.invalidRecords } : {}),
      },
      pods,
      counters,
    };
  }

  /** cleanup=true removes the rules and policy routing of every recorded pod, then the records. */
  async stop(opts: { cleanup: boolean }): Promise<void> {
    if (!opts.cleanup) return; // rules live in the pod netns and keep working without us
    this.requireWritable('stop({cleanup: true})');
    const failures: string[] = [];
    for (const e of [...this.pods.values()]) {
      try {
        await this.unenroll(e.pod);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
    if (this.store) {
      await this.store.removeStaleTemps();
      await this.store.removeIfEmpty();
    }
    if (failures.length) throw new Error(`iptables backend cleanup failed for ${failures.length} pod(s): ${failures.join('\n')}`);
  }

  /**
   * Last resort for uninstall, after start() + stop({cleanup: true}): scans network namespaces
   * (named ones under /run/netns and, without `netnsPrefix`, every process's) for SHUNT_* chains
   * with both iptables variants and for our TPROXY mark rule and route, and removes them, records
   * or not; then drops the records of the namespaces it scanned. Never touches the host netns.
   * Needs no start(). Slow (several commands per netns) and blind to what records know, so it is
   * not how an agent cleans up normally.
   */
  async sweep(opts: { netnsPrefix?: string; procRoot?: string; runDir?: string } = {}): Promise<SweepReport> {
    const recorded = this.store ? (await this.store.list()).records : [];
    const all = [...new Map([...recorded, ...this.pods.values()].map((r) => [r.pod.uid, r])).values()];
    const routing = [
      { tproxyMark: this.renderOpts.tproxyMark, tproxyTable: this.renderOpts.tproxyTable },
      // Ambient's local route (table 100); its connmark rule is matched by mark/mask/priority in sweepRouting.
      { tproxyMark: AMBIENT.connMark, tproxyTable: AMBIENT.routeTable },
      ...all.map((r) => ({ tproxyMark: r.tproxyMark, tproxyTable: r.tproxyTable })),
    ];
    const report = await sweepNetns({
      ...opts,
      routing,
      recorded: all.map((r) => r.netns),
      run: { lockWaitSeconds: this.options.lockWaitSeconds ?? 10, timeoutMs: this.options.commandTimeoutMs ?? 15_000 },
    });
    const scanned = new Set(report.scannedIds);
    for (const r of all) {
      const now = this.identify(r.netnsPath);
      // Drop the record when its netns is gone or was just swept clean.
      if (!sameNetns(r.netns, now) || (now && scanned.has(`${now.dev}:${now.inode}`))) {
        await this.forget(r.pod.uid);
        report.recordsRemoved.push(r.pod.uid);
      }
    }
    if (this.store && !opts.netnsPrefix) {
      await this.store.removeStaleTemps();
      await this.store.removeIfEmpty();
    }
    return report;
  }
}

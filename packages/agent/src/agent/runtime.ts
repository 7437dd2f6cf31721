// The node agent: probe → select → start backend → pod source → netns discovery → profile →
// reconciler, with /metrics, /healthz, /readyz and one log line per pod state change.
import type { Observable } from 'rxjs';
import { tap } from 'rxjs';
import {
  BackendUnsupportedError,
  DEFAULT_MESH_CAPTURE,
  type MeshCaptureDefaults,
  interpret,
  kubernetesSource,
  podsFileSource,
  probeNode,
  Reconciler,
  rejectPodsBackendCannotServe,
  selectBackend,
  type NodeCapabilities,
  type ProfileName,
  type RawPodEvent,
  type ReconcilerInput,
  type Selection,
  type RedirectBackend,
  type RedirectMode,
  type PodSourceConfig,
  type RestartMemoEntry,
} from '@shunt/core';
import { netnsCookie } from '@shunt/libbpf';
import type { ZdsServer } from '@shunt/zds';
import type { SpliceSetting } from '@shunt/backend-sockops';
import { createBackends } from '../backends';
import { NetnsDiscovery } from '../netns/discovery';
import { withDiscoveredNetns } from '../netns/enrich';
import { listNetnsIps } from '../netns/ips';
import { NetnsPreparer, isPodAddress, isPreparingBackend } from '../netns/preparer';
import { nodeContext, nodePaths, type NodeStateOptions } from '../node-state/context';
import { startHttpServer, type AgentHttpServer } from '../observability/http';
import type { AgentLogger } from '../observability/log';
import { createAgentMetrics, type AgentMetrics } from '../observability/metrics';
import { PodStateTracker } from '../observability/pod-states';
import { ObservationCache } from '../observability/observation';
import { reportPodsWithoutBackend } from './without-backend';
import { MemoryReclaimer } from './memory';

import { registerZdsMetrics } from '../zds/metrics';
import { zdsStatePath, zdsStatusPath } from '../zds/paths';
import { firstSyncSettled, podCounts, readinessAnswer } from './readiness';
import { loadRestartMemo, removeRestartMemo, restartMemoPath, saveRestartMemo, type RestartMemoScope } from './restart-memo';
import { VERSION } from '../program';

/** How often the restart memo is rewritten while pods change (at most; also at ready and at stop). */
const MEMO_WRITE_MS = 5000;

/** Pods-file entries read per unit of activity for the memory reclaimer (a 10,000-entry reading is a burst). */
const READ_ENTRIES_PER_NOTE = 200;
/** Activity a full observe counts for (enough for one compaction after it). */
const RESYNC_NOTE = 50;

/** How long stop() waits for backend calls already running (queued ones are dropped). */
export const STOP_DRAIN_MS = 3000;

export interface AgentSettings extends NodeStateOptions {
  nodeName: string;
  mode: RedirectMode;
  profile: ProfileName;
  source: PodSourceConfig;
  metricsAddress: string;
  resyncIntervalMs?: number;
  cleanupOnExit: boolean;
  /** sockops: which connections to splice, by original destination port (default auto: guarded, every captured connection where the guard loads). */
  splice?: SpliceSetting;
  /** sockops: pods the maps hold (every map size derives from it); default DEFAULT_MAX_PODS. */
  maxPods?: number;
  /** Find pod netns only among named netns starting with this (tests sharing a machine). */
  netnsPrefix?: string;
  /** istio-ambient: serve ZDS for ztunnel on this unix socket (every ambient pod is announced after its redirect). */
  zdsSocket?: string;
  /** ZDS Ack timeout (default 5 s, as istio-cni). */
  zdsAckTimeoutMs?: number;
  /** Mesh-wide capture defaults (config meshCapture); Istio's defaults when absent. */
  meshCapture?: MeshCaptureDefaults;
  /** tc backend: prepare new pod netns ahead of enroll (netns/preparer.ts); graceMs 0 turns it off. */
  netnsPrepare?: { graceMs?: number; maxPrepared?: number };
}

export interface AgentDeps {
  log: AgentLogger;
  /** Backends to choose from (default: every backend of this build). */
  backends?: RedirectBackend[];
  /** Replaces the node probe (tests of the wiring only). */
  probe?: () => Promise<NodeCapabilities>;
}

export interface RunningAgent {
  /** null when no backend can serve the profile here (pods are reported rejected, never ready). */
  backend: RedirectBackend | null;
  caps: NodeCapabilities;
  http: AgentHttpServer;
  metrics: AgentMetrics;
  tracker: PodStateTracker;
  reconciler: Reconciler | null;
  /** The ZDS server (profile istio-ambient with a backend), else null. */
  zds: ZdsServer | null;
  /** Resolves once ready (backend started, first full sync done). */
  ready: Promise<void>;
  isReady(): boolean;
  /** Stops; `cleanup` removes what the backend installed (defaults to the setting). */
  stop(opts?: { cleanup?: boolean }): Promise<void>;
}

/** Pods of this node from the configured source, with their netns found, through the profile. */
function podEvents(settings: AgentSettings, log: AgentLogger, restartMemo?: RestartMemoEntry[], onRead?: (entries: number) => void): Observable<ReconcilerInput> {
  const src = settings.source;
  const raw: Observable<RawPodEvent> =
    src.kind === 'podsFile'
      ? podsFileSource(src.path, {
          nodeName: settings.nodeName,
          onError: (e) => log.warn({ err: e.message }, 'pods file problem'),
          ...(restartMemo && restartMemo.length > 0 ? { restartMemo } : {}),
          ...(onRead ? { onRead } : {}),
        })
      : kubernetesSource({
          nodeName: settings.nodeName,
          ...(src.kubeconfig ? { kubeconfig: src.kubeconfig } : { inCluster: src.inCluster }),
          onError: (e) => log.warn({ err: e.message }, 'kubernetes source problem'),
        });
  const discovery = new NetnsDiscovery({
    listIps: listNetnsIps,
    readCookie: netnsCookie,
    ...(settings.netnsPrefix ? { namePrefix: settings.netnsPrefix } : {}),
  });
  return raw.pipe(withDiscoveredNetns(discovery, log, netnsCookie), interpret(settings.profile, settings.meshCapture ?? DEFAULT_MESH_CAPTURE));
}

export async function startAgent(settings: AgentSettings, deps: AgentDeps): Promise<RunningAgent> {
  const { log } = deps;
  const metrics = createAgentMetrics();
  let state: 'starting' | 'running' | 'stopping' = 'starting';
  let ready = false;
  let markReady!: () => void;
  const readyPromise = new Promise<void>((r) => (markReady = r));
  let reconciler: Reconciler | undefined;
  let observations: ObservationCache | undefined;
  /** Why no backend runs, when none can. */
  let unavailable: string | undefined;

  // Up first so the kubelet sees a live (not yet ready) agent while the node is probed.
  const http = await startHttpServer(settings.metricsAddress, metrics.registry, {
    healthy: () => ({ ok: state !== 'stopping', detail: state }),
    ready: () => {
      if (unavailable) return { ok: false, detail: `no backend can run: ${unavailable}` };
      return readinessAnswer(ready, reconciler?.snapshot());
    },
  });
  log.info({ address: http.address }, 'serving /metrics, /healthz, /readyz');

  let zdsStarted: ZdsServer | null = null;
  let preparer: NetnsPreparer | null = null;
  try {
    const paths = nodePaths(settings);
    const caps = await (deps.probe ?? (() => probeNode({ iptablesScratch: true })))();
    const backends =
      deps.backends ??
      createBackends({
        profile: settings.profile,
        stateDir: paths.stateDir,
        ...(settings.splice ? { splice: settings.splice } : {}),
        ...(settings.maxPods ? { maxPods: settings.maxPods } : {}),
      });
    let selection: Selection<RedirectBackend> | null = null;
    try {
      selection = selectBackend(settings.mode, caps, backends, { profile: settings.profile });
    } catch (e) {
      // A forced mode that cannot run is a configuration error: exit with the reason (the pod
      // crash-loops, retrying). With auto, no backend serving the profile here is a fact about
      // the node: keep running and account for every pod that needed one.
      if (!(e instanceof BackendUnsupportedError) || settings.mode !== 'auto') throw e;
      unavailable = e.message;
      log.error({ mode: settings.mode, profile: settings.profile, kernel: caps.kernelRelease, rejected: e.rejected, reason: e.message }, 'no backend can run: pods that need a redirect are reported rejected');
    }
    const chosen = selection?.chosen ?? null;
    // Ambient: ztunnel must learn each pod after its redirect is in place (istio-cni's order).
    // @shunt/zds (and protobufjs) only for an agent that serves ztunnel: a sidecar node never loads it.
    const ambientZds = chosen && settings.profile === 'istio-ambient' && settings.zdsSocket;
    const zdsModule = ambientZds ? await import('@shunt/zds') : null;
    const zds =
      zdsModule && settings.zdsSocket
        ? zdsModule.ZdsServer.start({
            socketPath: settings.zdsSocket,
            statePath: zdsStatePath(paths.stateDir),
            statusPath: zdsStatusPath(paths.stateDir),
            ...(settings.zdsAckTimeoutMs ? { ackTimeoutMs: settings.zdsAckTimeoutMs } : {}),
            log: log.child({ component: 'zds' }),
          })
        : null;
    zdsStarted = zds;
    if (zds) registerZdsMetrics(metrics.registry, zds);
    // tc splicing pairs only with a ztunnel under the node cgroup: re-decided on every (re)connect,
    // before its snapshot goes out ('connected' is emitted first); one that came before this line counts too.
    if (zds && chosen && hasZtunnelHook(chosen)) {
      zds.on('connected', (_id: number, peer?: { pid: number }) => chosen.ztunnelConnected(peer?.pid));
      if (zds.connected) chosen.ztunnelConnected(zds.ztunnelPeer()?.pid);
    }
    const backend = chosen && zds ? new (await import('../zds/announcing-backend')).ZdsAnnouncingBackend(chosen, zds) : chosen;
    if (selection && backend) {
      log.info(
        {
          backend: backend.name,
          mode: settings.mode,
          profile: settings.profile,
          kernel: caps.kernelRelease,
          rejected: selection.rejected,
          ...(backend.name === 'sockops' ? { splice: settings.splice ?? 'auto' } : {}),
        },
        'backend selected',
      );
      await backend.start(nodeContext(paths, caps, settings.nodeName, settings.profile, log));
      // Ambient with tc: links attached when a pod netns appears, so its enroll attaches none.
      if (settings.profile === 'istio-ambient' && isPreparingBackend(chosen) && settings.netnsPrepare?.graceMs !== 0) {
        preparer = new NetnsPreparer({
          backend: chosen,
          log: log.child({ component: 'netns-prepare' }),
          registry: metrics.registry,
          ...(settings.netnsPrefix ? { namePrefix: settings.netnsPrefix } : {}),
          ready: async (p) => (await listNetnsIps(p)).some(isPodAddress),
          ...settings.netnsPrepare,
        });
        await preparer.start();
      }
      // Scrapes read counts only where the backend can (the ZDS wrapper changes no count: the inner one's).
      const inner = chosen!; // set whenever backend is
      observations = new ObservationCache(() => backend.observe(), inner.summarize ? { summarize: () => inner.summarize!() } : {});
      metrics.setObserver(observations);
    }
    metrics.setBackend(backend?.name ?? 'none', caps.kernelRelease);

    const tracker = new PodStateTracker(log, metrics);
    // Pods-file agents with a backend: the previous agent's memo lets unchanged pods skip validation
    // and interpretation before ready (see restart-memo.ts; the kernel still has the last word).
    const src = settings.source;
    const memoFile = backend && src.kind === 'podsFile' ? restartMemoPath(paths.stateDir) : undefined;
    const memoScope: RestartMemoScope | undefined =
      backend && src.kind === 'podsFile'
        ? { version: VERSION, backend: backend.name, profile: settings.profile, nodeName: settings.nodeName, podsFile: src.path, meshCapture: settings.meshCapture ?? null }
        : undefined;
    let restartMemo: RestartMemoEntry[] | undefined;
    if (memoFile && memoScope) {
      const m = loadRestartMemo(memoFile, memoScope);
      restartMemo = m.entries;
      log.info({ file: memoFile, pods: m.entries.length, ...(m.ignored ? { ignored: m.ignored } : {}) }, 'restart memo');
    }
    // After a burst (a pods-file reading, many pod changes, a resync), the heap is compacted once
    // the agent is quiet (memory.ts). A reading costs in proportion to the whole file.
    let rec: Reconciler | undefined;
    const reclaimer = new MemoryReclaimer({
      busy: () => rec?.busy ?? false,
      onReclaim: (ms, why) => log.debug({ ms: Math.round(ms * 10) / 10, why, heapUsedMiB: Math.round(process.memoryUsage().heapUsed / 1048576) }, 'heap compacted'),
    });
    const events = podEvents(settings, log, restartMemo, (entries) => reclaimer.note(Math.ceil(entries / READ_ENTRIES_PER_NOTE)));
    restartMemo = undefined; // the source holds what it needs
    if (!backend) {
      const watcher = reportPodsWithoutBackend(events, tracker, unavailable!);
      void watcher.synced.then(() => log.info({ reason: unavailable }, 'first full sync done; not ready: no backend'));
      state = 'running';
      return {
        backend: null,
        caps,
        http,
        metrics,
        tracker,
        reconciler: null,
        zds: null,
        ready: new Promise<void>(() => undefined),
        isReady: () => false,
        async stop() {
          state = 'stopping';
          watcher.stop();
          log.info({}, 'stopped; nothing was installed');
          await http.close();
        },
      };
    }
    const observedEvents = events.pipe(
      // A pod the chosen backend cannot capture as asked (sockops: excludeInterfaces, …) is rejected, not retried.
      rejectPodsBackendCannotServe(backend),
      tap((ev) => {
        // Bookkeeping only: whatever it throws must not end the event stream (tap would error it).
        try {
          if (ev.type !== 'synced') tracker.onEvent(ev);
        } catch (err) {
          log.error({ err: (err as Error).message }, 'pod state tracking failed');
        }
      }),
    );
    // Resyncs and scrapes share one reading of the kernel (see ObservationCache).
    const observed = observations!.wrap(backend);
    // A full observe (the resync's) reads every pod: a burst of its own.
    const reconciled: RedirectBackend = { ...observed, observe: () => observed.observe().finally(() => reclaimer.note(RESYNC_NOTE)) };
    reconciler = new Reconciler({ backend: reconciled, events: observedEvents, log, ...(settings.resyncIntervalMs ? { resyncIntervalMs: settings.resyncIntervalMs } : {}) });
    rec = reconciler;
    const checkReady = (): void => {
      if (ready) return;
      const snap = rec.snapshot();
      if (firstSyncSettled(snap)) {
        ready = true;
        // The first sync is the biggest burst of all: its garbage goes back now (see memory.ts).
        const compacted = reclaimer.reclaimNow();
        log.info(
          { pods: snap.pods.length, ...podCounts(snap), adoptedUnchanged: tracker.adoptedUnchanged(), ...(compacted && reclaimer.lastMs !== undefined ? { compactMs: Math.round(reclaimer.lastMs) } : {}) },
          'ready: first full sync done',
        );
        markReady();
        // Workloads saved by a previous agent that no pod of this node wants any more: tell ztunnel.
        if (zds) {
          const wanted = new Set(snap.pods.filter((p) => p.desiredFingerprint !== undefined).map((p) => p.pod.uid));
          void zds.retainOnly(wanted).then((gone) => {
            if (gone.length > 0) log.info({ uids: gone }, 'ZDS: dropped workloads no pod wants any more');
          });
        }
      }
    };
    // A snapshot costs O(pods): checked at most once per 20 ms however many statuses arrive,
    // not once per status (which made a start with N pods O(N²)).
    let checkTimer: NodeJS.Timeout | undefined;
    let memoDirty = true;
    let memoTimer: NodeJS.Timeout | undefined;
    const writeMemo = (): void => {
      if (!memoFile || !memoScope || !memoDirty) return;
      memoDirty = false;
      try {
        saveRestartMemo(memoFile, memoScope, rec.restartMemo());
      } catch (err) {
        log.warn({ file: memoFile, err: (err as Error).message }, 'cannot write the restart memo (the next start reads every pod)');
      }
    };
    if (memoFile)
      void readyPromise.then(() => {
        if (state === 'stopping') return;
        writeMemo();
        memoTimer = setInterval(writeMemo, MEMO_WRITE_MS);
        memoTimer.unref();
      });
    rec.status$.subscribe((st) => {
      memoDirty = true;
      reclaimer.note();
      // rxjs rethrows a subscriber's exception asynchronously, which would end the process.
      try {
        tracker.onStatus(st);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'pod status handling failed');
      }
      if (!ready && !checkTimer)
        checkTimer = setTimeout(() => {
          checkTimer = undefined;
          try {
            checkReady();
          } catch (err) {
            log.error({ err: (err as Error).message }, 'readiness check failed');
          }
        }, 20);
    });
    await rec.start();
    // A node with no pods is synced without any status to trigger the check.
    const poll = setInterval(checkReady, 100);
    poll.unref();
    void readyPromise.then(() => clearInterval(poll));
    state = 'running';

    return {
      backend,
      caps,
      http,
      metrics,
      tracker,
      reconciler: rec,
      zds,
      ready: readyPromise,
      isReady: () => ready,
      async stop(opts = {}) {
        const cleanup = opts.cleanup ?? settings.cleanupOnExit;
        state = 'stopping';
        clearInterval(poll);
        clearTimeout(checkTimer);
        clearInterval(memoTimer);
        reclaimer.stop();
        // Queued work and retries are dropped; calls in flight get a short drain (each is one pod's
        // worth of work), so stopping costs the same with 10 or 10,000 pods.
        await rec.stop({ drainTimeoutMs: STOP_DRAIN_MS });
        await preparer?.stop();
        try {
          // Uninstall: ztunnel drops the pods before their redirect goes. Otherwise the workloads
          // stay in ztunnel (and in the saved state) for the next agent to re-announce.
          if (zds && cleanup) await zds.retainOnly(new Set());
          await zds?.close();
          if (memoFile) {
            // Uninstalled: nothing is left to vouch for. Otherwise the next agent starts from this one.
            try {
              if (cleanup) removeRestartMemo(memoFile);
              else if (ready) writeMemo();
            } catch (err) {
              log.warn({ file: memoFile, err: (err as Error).message }, 'cannot remove the restart memo');
            }
          }
          await backend.stop({ cleanup });
          log.info({ backend: backend.name, cleanup }, cleanup ? 'stopped; removed what this agent installed' : 'stopped; redirect left in place');
        } finally {
          await http.close();
        }
      },
    };
  } catch (err) {
    await preparer?.stop();
    await zdsStarted?.close();
    await http.close();
    throw err;
  }
}

/** A backend that wants to know where ztunnel runs (tc: splicing pairs only with a ztunnel under its cgroup). */
function hasZtunnelHook(b: RedirectBackend): b is RedirectBackend & { ztunnelConnected(pid: number | undefined): unknown } {
  return typeof (b as { ztunnelConnected?: unknown }).ztunnelConnected === 'function';
}

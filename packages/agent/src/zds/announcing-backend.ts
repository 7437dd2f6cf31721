// Ambient enrollment = the redirect plus ztunnel knowing the pod. This decorator puts the ZDS
// announcement around any RedirectBackend, in istio-cni's order:
//   enroll:   backend.enroll (redirect installed)  →  AddWorkload with the netns fd, wait for the Ack
//   unenroll: DelWorkload                           →  backend.unenroll
// A NACK, no ztunnel, a timeout: enroll rejects with ZDS's reason, so the reconciler marks the pod
// `failed` with it and retries with backoff; the other pods are not affected.
//
// Restart: the reconciler adopts what observe() reports and calls no enroll for pods whose
// fingerprint matches. A pod ztunnel has not acked (yet) must still be announced, so observe()
// reports such pods with a fingerprint that matches nothing; the reconciler then calls enroll,
// and enroll skips backend.enroll when the kernel already holds exactly this pod's redirect
// (installed fingerprint = desired): the redirect is never torn down or rewritten for a
// re-announcement.
import type { BackendName, InstalledState, MeshPod, NodeCapabilities, NodeContext, PodRef, RedirectBackend, Support } from '@shunt/core';
import { ZdsError, type ZdsServer, type ZdsWorkload } from '@shunt/zds';

/**
 * How long an enroll waits for ztunnel when none is connected. ztunnel (re)connects moments after
 * the agent starts or restarts; failing the pod into the reconciler's backoff at once would leave
 * it `failed` for seconds after ztunnel has in fact acked it in the snapshot.
 */
export const ZTUNNEL_CONNECT_WAIT_MS = 5_000;

export class ZdsAnnouncingBackend implements RedirectBackend {
  readonly name: BackendName;
  /** Fingerprints the inner backend reported installed at its last observe(), by uid. */
  private installed = new Map<string, string>();

  constructor(
    private readonly inner: RedirectBackend,
    private readonly zds: ZdsServer,
    private readonly connectWaitMs: number = ZTUNNEL_CONNECT_WAIT_MS,
  ) {
    this.name = inner.name;
  }

  support(caps: NodeCapabilities): Support {
    return this.inner.support(caps);
  }
  start(node: NodeContext): Promise<void> {
    return this.inner.start(node);
  }
  fingerprint(pod: MeshPod): string {
    return this.inner.fingerprint(pod);
  }
  stop(opts: { cleanup: boolean }): Promise<void> {
    return this.inner.stop(opts);
  }

  async enroll(pod: MeshPod): Promise<void> {
    const fp = this.inner.fingerprint(pod);
    if (this.installed.get(pod.uid) !== fp) {
      await this.inner.enroll(pod);
      this.installed.set(pod.uid, fp);
    }
    if (pod.membership !== 'ambient') return;
    if (!pod.netnsPath) throw new Error(`pod ${pod.namespace}/${pod.name}: no netns path, cannot hand ztunnel its network namespace`);
    const w: ZdsWorkload = {
      uid: pod.uid,
      info: { name: pod.name, namespace: pod.namespace, serviceAccount: pod.serviceAccount ?? 'default' },
      netnsPath: pod.netnsPath,
      ...(pod.netnsCookie ? { netnsCookie: pod.netnsCookie } : {}),
    };
    try {
      await this.zds.add(w);
    } catch (err) {
      if (!(err instanceof ZdsError) || err.code !== 'NOT_CONNECTED' || !(await this.ztunnelSnapshot())) throw err;
      // The workload was kept and went out in the new connection's snapshot: this confirms its Ack.
      await this.zds.add(w);
    }
  }

  /** Resolves true once a ztunnel connects and has been sent the snapshot, false after the wait. */
  private ztunnelSnapshot(): Promise<boolean> {
    if (this.connectWaitMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.zds.off('snapshot', onSnapshot);
        resolve(ok);
      };
      const onSnapshot = (): void => done(true);
      const timer = setTimeout(() => done(false), this.connectWaitMs);
      timer.unref();
      this.zds.on('snapshot', onSnapshot);
    });
  }

  async unenroll(ref: PodRef): Promise<void> {
    // ztunnel first: it must stop using the pod's sockets before the redirect to them goes.
    await this.zds.del(ref.uid);
    await this.inner.unenroll(ref);
    this.installed.delete(ref.uid);
  }

  async observe(): Promise<InstalledState> {
    const st = await this.inner.observe();
    this.installed = new Map(st.pods.map((p) => [p.uid, p.fingerprint]));
    return {
      ...st,
      // A redirect ztunnel does not serve (not acked on the current connection) is not a finished
      // ambient enrollment: a fingerprint that matches nothing makes the reconciler enroll it
      // again (which only announces it, see enroll), or unenroll it if nobody wants it any more.
      pods: st.pods.map((p) => (this.zds.isAcked(p.uid) ? p : { ...p, fingerprint: `${p.fingerprint}+zds-unacked`, detail: { ...p.detail, zds: 'not acked by ztunnel' } })),
      nodeDetail: { ...st.nodeDetail, zds: { socket: this.zds.socketPath, connected: this.zds.connected } },
    };
  }
}

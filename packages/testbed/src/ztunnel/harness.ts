// For runs without the agent (the bench's direct / hand-written modes, stand-in tests): an
// in-process ZdsServer that plays the agent's ZDS part, plus the stand-in process connected to it.
import type * as ZdsNs from '@shunt/zds';
import { startZtunnel, type ZtunnelStandIn, type ZtunnelStartOptions } from './index';

export interface ZtunnelHarness {
  zt: ZtunnelStandIn;
  server: ZdsNs.ZdsServer;
  /** AddWorkload for the pod (its netns fd in SCM_RIGHTS), resolved on the stand-in's Ack. */
  add(pod: { uid: string; name: string; namespace: string; netnsPath: string; serviceAccount?: string }): Promise<void>;
  remove(uid: string): Promise<void>;
  stop(): Promise<void>;
}

export async function ztunnelHarness(opts: ZtunnelStartOptions & { ackTimeoutMs?: number }): Promise<ZtunnelHarness> {
  // Loaded on use: importing the testbed must not need the addon.
  const zds = (await import('@shunt/zds')) as typeof ZdsNs;
  const server = zds.ZdsServer.start({ socketPath: opts.socketPath, ackTimeoutMs: opts.ackTimeoutMs ?? 5000 });
  let zt: ZtunnelStandIn;
  try {
    zt = await startZtunnel(opts);
    const deadline = Date.now() + 10_000;
    while (!server.connected) {
      if (Date.now() > deadline) throw new Error(`ztunnel stand-in did not connect to ${opts.socketPath}: ${zt.stderr()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } catch (err) {
    await server.close();
    throw err;
  }
  return {
    zt,
    server,
    add: (p) => server.add({ uid: p.uid, info: { name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount ?? 'default' }, netnsPath: p.netnsPath }),
    remove: (uid) => server.del(uid),
    async stop() {
      await zt.stop();
      await server.close();
    },
  };
}

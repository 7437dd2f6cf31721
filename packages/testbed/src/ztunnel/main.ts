// The ztunnel stand-in process (one per node): a ZDS client of the agent's socket. It knows
// nothing about the node: every pod it serves comes from an AddWorkload and the netns fd in it.
// Config: one JSON argument (ZtunnelProcessConfig). Logs JSON lines to config.logPath.
// Behaviour as ztunnel's in-pod workload manager (src/inpod/statemanager.rs): Add opens the pod's
// sockets (Ack, or NACK with the error), an Add for a uid it already serves in the same netns
// keeps them, Del closes them; after a reconnect, SnapshotSent drops what was not re-announced.
import * as fs from 'node:fs';
import type * as LibNs from '@shunt/libbpf';
import type * as ZdsNs from '@shunt/zds';
import type { ZtunnelLogEntry, ZtunnelLogInput } from './log';
import { WorkloadProxy } from './workload';

export interface ZtunnelProcessConfig {
  name: string;
  socketPath: string;
  logPath: string;
  /** Reconnect delay after the agent's socket is missing or closed (ztunnel backs off too). */
  retryMs: number;
  /** Pod name → error text: answer its AddWorkload with this NACK (tests of the agent's handling). */
  nack?: Record<string, string>;
}

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as ZtunnelProcessConfig;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lib = require('@shunt/libbpf') as typeof LibNs;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const zds = require('@shunt/zds') as typeof ZdsNs;
  // Appended through one stream (ordered, off the connection path); ended before a clean exit.
  const out = fs.createWriteStream(cfg.logPath, { flags: 'a' });
  const log = (e: ZtunnelLogInput): void => void out.write(JSON.stringify({ ...e, at: Date.now(), zt: cfg.name } as ZtunnelLogEntry) + '\n');
  const workloads = new Map<string, WorkloadProxy>();
  let seen = new Set<string>();
  let client: ZdsNs.ZdsClient | undefined;
  let stopping = false;

  const handler = async (req: ZdsNs.WorkloadRequest, fd?: number): Promise<string> => {
    switch (req.type) {
      case 'add': {
        const pod = req.workloadInfo?.name ?? req.uid;
        const namespace = req.workloadInfo?.namespace ?? '';
        const ino = fs.fstatSync(fd!).ino;
        seen.add(req.uid);
        const cur = workloads.get(req.uid);
        if (cur && cur.netnsIno === ino) {
          fs.closeSync(fd!);
          log({ event: 'add', uid: req.uid, pod, namespace, netnsIno: ino, reused: true });
          return '';
        }
        cur?.close();
        workloads.delete(req.uid);
        const injected = cfg.nack?.[pod];
        if (injected !== undefined) {
          fs.closeSync(fd!);
          log({ event: 'add', uid: req.uid, pod, namespace, netnsIno: ino, reused: false, error: injected });
          return injected;
        }
        const w = new WorkloadProxy(lib, req.uid, pod, fd!, log, cfg.logPath, cfg.name);
        try {
          await w.start();
        } catch (err) {
          const msg = `failed to start workload proxy for ${namespace}/${pod}: ${(err as Error).message}`;
          log({ event: 'add', uid: req.uid, pod, namespace, netnsIno: ino, reused: false, error: msg });
          return msg;
        }
        workloads.set(req.uid, w);
        log({ event: 'add', uid: req.uid, pod, namespace, netnsIno: ino, reused: false });
        return '';
      }
      case 'keep':
        seen.add(req.uid);
        log({ event: 'keep', uid: req.uid, ...(workloads.get(req.uid) ? { pod: workloads.get(req.uid)!.pod } : {}) });
        return '';
      case 'del': {
        const w = workloads.get(req.uid);
        w?.close();
        workloads.delete(req.uid);
        log({ event: 'del', uid: req.uid, ...(w ? { pod: w.pod } : {}) });
        return '';
      }
      case 'snapshotSent': {
        const removed: string[] = [];
        for (const [uid, w] of workloads) {
          if (seen.has(uid)) continue;
          w.close();
          workloads.delete(uid);
          removed.push(uid);
        }
        log({ event: 'snapshot', kept: [...seen], removed });
        return '';
      }
    }
  };

  const connect = (): void => {
    if (stopping) return;
    try {
      client = zds.ZdsClient.connect(cfg.socketPath, handler);
    } catch {
      setTimeout(connect, cfg.retryMs);
      return;
    }
    seen = new Set();
    log({ event: 'connected' });
    client.on('close', (reason: string) => {
      log({ event: 'disconnected', reason });
      // Like ztunnel: keep serving the pods we have while the agent is away.
      setTimeout(connect, cfg.retryMs);
    });
  };

  const stop = (): void => {
    stopping = true;
    client?.close();
    for (const w of workloads.values()) w.close();
    out.end(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  connect();
}

if (require.main === module) main();

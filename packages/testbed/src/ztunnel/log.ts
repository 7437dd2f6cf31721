// The stand-in's log: one JSON object per line, appended by the process, read by tests.
import * as fs from 'node:fs';

export interface ZtEndpoint {
  address: string;
  port: number;
}

export type ZtunnelLeg = 'outbound' | 'inbound' | 'hbone' | 'dns';

/** How the stand-in learnt the original destination (ztunnel: SO_ORIGINAL_DST, else the local address). */
export type OrigDstHow = 'SO_ORIGINAL_DST' | 'local-address' | 'hbone-authority';

export type ZtunnelLogEntry =
  | {
      event: 'conn';
      at: number;
      /** ztunnel instance name. */
      zt: string;
      leg: ZtunnelLeg;
      /** Workload (pod name from WorkloadInfo) whose netns accepted the connection. */
      pod: string;
      uid: string;
      client: ZtEndpoint;
      /** The accepted socket's own address. */
      local: ZtEndpoint;
      origDst: ZtEndpoint;
      how: OrigDstHow;
      /** Where it was forwarded: 'hbone' (HTTP/2 CONNECT to dst:15008), 'passthrough' (direct), 'app' (to the local app, spoofed source). */
      via?: 'hbone' | 'passthrough' | 'app' | 'dns-reply';
      /** The upstream socket's source (for spoofed legs: the client's address). */
      upstreamSource?: ZtEndpoint;
      error?: string;
    }
  | { event: 'connected' | 'disconnected'; at: number; zt: string; reason?: string }
  | { event: 'add'; at: number; zt: string; uid: string; pod: string; namespace: string; netnsIno: number; reused: boolean; error?: string }
  | { event: 'keep' | 'del'; at: number; zt: string; uid: string; pod?: string }
  | { event: 'snapshot'; at: number; zt: string; kept: string[]; removed: string[] }
  | { event: 'listening'; at: number; zt: string; uid: string; pod: string; sockets: { leg: ZtunnelLeg; address: string; port: number; mark: number; reusePort: boolean; transparent: boolean }[] };

export function readZtunnelLog(file: string): ZtunnelLogEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: ZtunnelLogEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    // A line being written while we read is incomplete: only the last line can be.
    try {
      out.push(JSON.parse(line) as ZtunnelLogEntry);
    } catch {
      /* partial last line */
    }
  }
  return out;
}

export function appendZtunnelLog(file: string, entry: ZtunnelLogEntry): void {
  fs.appendFileSync(file, JSON.stringify(entry) + '\n');
}

/** An entry before the writer stamps it with `at` and `zt`. */
export type ZtunnelLogInput = ZtunnelLogEntry extends infer E ? (E extends unknown ? Omit<E, 'at' | 'zt'> : never) : never;

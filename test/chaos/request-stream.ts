// The chaos suite's request stream: sequential HTTP GETs client → server through the sidecars,
// each judged by the client sidecar's log: failed (no reply) or bypassed (a reply the sidecar
// never saw). Bounded in count; stop() ends it after the request in flight.
import type { Testbed } from '@shunt/testbed';

export interface StreamStats {
  sent: number;
  failed: number;
  bypassed: number;
}

export function requestStream(tb: Testbed, opts: { port: number; maxRequests: number }): { stats: StreamStats; stop: () => Promise<void> } {
  let running = true;
  const stats: StreamStats = { sent: 0, failed: 0, bypassed: 0 };
  const done = (async () => {
    for (let i = 0; i < opts.maxRequests && running; i++) {
      const since = Date.now();
      stats.sent++;
      const res = await tb.httpGet('client', `http://${tb.pod('server').ipv4}:${opts.port}/`, { count: 1 }).catch(() => [{ ok: false }]);
      if (res[0]?.ok !== true) {
        stats.failed++;
        continue;
      }
      const seen = await tb.waitProxyLog('client', (r) => r.at >= since - 1 && r.originalDst.port === opts.port, { count: 1, timeoutMs: 3000 });
      if (seen.length === 0) stats.bypassed++;
      tb.clearProxyLog('client');
    }
  })();
  return {
    stats,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

import type { Testbed } from '../testbed';

/**
 * iperf3's server closes its listener after each test and opens a new one for the next
 * (cleanup_server, then iperf_server_listen). A client that starts inside that gap is refused;
 * through a sidecar it sees "control socket has closed unexpectedly". So each test waits for a
 * listener that is not the one the previous test used.
 */
export function iperfTurns(tb: Testbed, pod: string, port: number) {
  let used: string | null = null;
  return async function nextListener(): Promise<void> {
    const start = Date.now();
    let seen: string[] = [];
    for (let i = 0; i < 500 && Date.now() < start + 10_000; i++) {
      seen = await tb.listenerInodes(pod, port);
      // After 2 s the old listener is taken as it is: the previous attempt may never have reached
      // the server (then it never re-listens).
      const fresh = seen.find((ino) => ino !== used) ?? (Date.now() > start + 2000 ? seen[0] : undefined);
      if (fresh) {
        used = fresh;
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`pod ${pod}: iperf3 server has no new listener on :${port} after 10 s (listeners: ${seen.join(', ') || 'none'})`);
  };
}

// /metrics, /healthz and /readyz on one small HTTP server (the DaemonSet's probes and
// Prometheus scrape the same port).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HealthSource {
  /** Liveness: false only when the agent is wedged and a restart would help. */
  healthy(): { ok: boolean; detail: string };
  /** Readiness: backend started and the first full sync done. */
  ready(): { ok: boolean; detail: string };
}

export interface AgentHttpServer {
  /** host:port actually bound (port 0 picks a free one). */
  address: string;
  close(): Promise<void>;
}

/** Parses "host:port", "[v6]:port" or ":port". */
export function parseListenAddress(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`metrics address ${JSON.stringify(addr)} is not host:port (e.g. 0.0.0.0:9464)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export async function startHttpServer(listen: string, registry: Registry, health: HealthSource): Promise<AgentHttpServer> {
  const { host, port } = parseListenAddress(listen);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      registry
        .metrics()
        .then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body))
        .catch((e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${e.message}\n`));
      return;
    }
    const check = url === '/healthz' ? health.healthy() : url === '/readyz' ? health.ready() : null;
    if (!check) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz, /readyz\n');
      return;
    }
    res.writeHead(check.ok ? 200 : 503, { 'content-type': 'text/plain' }).end(`${check.ok ? 'ok' : 'not ok'}: ${check.detail}\n`);
  });
  // The scrape path must never keep the process alive during shutdown.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  return {
    address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

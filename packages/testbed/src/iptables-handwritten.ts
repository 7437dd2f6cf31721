// Hand-written, istio-iptables-like nat REDIRECT rules for a sidecar pod. They exist so tests and
// the benchmark can drive the sidecar stand-in before (and independently of) any backend; they are
// not the iptables backend. Chains are prefixed TB_ISTIO_ so they never look like the backend's.

export interface HandwrittenRedirectOptions {
  proxyUid?: number;
  proxyGid?: number;
  outboundPort?: number;
  inboundPort?: number;
  /** Inbound ports never captured (Istio's own ports). */
  excludeInboundPorts?: number[];
}

const CHAINS = ['TB_ISTIO_INBOUND', 'TB_ISTIO_IN_REDIRECT', 'TB_ISTIO_OUTPUT', 'TB_ISTIO_REDIRECT'] as const;

/** iptables-restore input (use with --noflush) for one family. */
export function handwrittenRedirectRules(family: 4 | 6, o: HandwrittenRedirectOptions = {}): string {
  const uid = o.proxyUid ?? 1337;
  const gid = o.proxyGid ?? 1337;
  const out = o.outboundPort ?? 15001;
  const inb = o.inboundPort ?? 15006;
  const exclude = o.excludeInboundPorts ?? [15008, 15020, 15021, 15090];
  const lo = family === 4 ? '127.0.0.1/32' : '::1/128';
  const inboundPassthroughSrc = family === 4 ? '127.0.0.6/32' : '::6/128';
  return [
    '*nat',
    ...CHAINS.map((c) => `:${c} - [0:0]`),
    '-A PREROUTING -p tcp -j TB_ISTIO_INBOUND',
    '-A OUTPUT -p tcp -j TB_ISTIO_OUTPUT',
    ...exclude.map((p) => `-A TB_ISTIO_INBOUND -p tcp --dport ${p} -j RETURN`),
    '-A TB_ISTIO_INBOUND -p tcp -j TB_ISTIO_IN_REDIRECT',
    `-A TB_ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports ${inb}`,
    `-A TB_ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports ${out}`,
    // The proxy's inbound upstream connections come from the passthrough source: leave them alone.
    `-A TB_ISTIO_OUTPUT -s ${inboundPassthroughSrc} -o lo -j RETURN`,
    // The proxy calling its own pod through lo is inbound traffic.
    `-A TB_ISTIO_OUTPUT ! -d ${lo} -o lo -p tcp ! --dport 15008 -m owner --uid-owner ${uid} -j TB_ISTIO_IN_REDIRECT`,
    `-A TB_ISTIO_OUTPUT -o lo -m owner ! --uid-owner ${uid} -j RETURN`,
    `-A TB_ISTIO_OUTPUT -m owner --uid-owner ${uid} -j RETURN`,
    `-A TB_ISTIO_OUTPUT ! -d ${lo} -o lo -p tcp ! --dport 15008 -m owner --gid-owner ${gid} -j TB_ISTIO_IN_REDIRECT`,
    `-A TB_ISTIO_OUTPUT -o lo -m owner ! --gid-owner ${gid} -j RETURN`,
    `-A TB_ISTIO_OUTPUT -m owner --gid-owner ${gid} -j RETURN`,
    `-A TB_ISTIO_OUTPUT -d ${lo} -j RETURN`,
    '-A TB_ISTIO_OUTPUT -j TB_ISTIO_REDIRECT',
    'COMMIT',
    '',
  ].join('\n');
}

/** iptables-restore input (with --noflush) that removes what handwrittenRedirectRules added. */
export function handwrittenRedirectRemoval(): string {
  return [
    '*nat',
    '-D PREROUTING -p tcp -j TB_ISTIO_INBOUND',
    '-D OUTPUT -p tcp -j TB_ISTIO_OUTPUT',
    ...CHAINS.map((c) => `-F ${c}`),
    ...CHAINS.map((c) => `-X ${c}`),
    'COMMIT',
    '',
  ].join('\n');
}

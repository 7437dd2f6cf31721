/**
 * Which of a pod's Istio capture options the sockops backend cannot honour. Its programs decide at
 * connect() (cgroup sock_addr hooks) and at the pod's sk_lookup, from the calling task and the
 * address asked for; they never see a packet's interface or its conntrack state:
 *  - excludeInterfaces: the egress interface is chosen by routing after connect() returns, and
 *    inbound steering happens per listening socket, not per NIC;
 *  - reroute-virtual-interfaces / kubevirtInterfaces: the traffic is forwarded (VM guest → pod),
 *    so no socket of the pod ever connects;
 *  - INVALID_DROP: conntrack-INVALID packets exist only in netfilter.
 * Such a pod is refused (enroll throws, supportPod says why) instead of being captured differently
 * from what its annotations ask for. `redirectMode=auto` chooses per node, so a node that runs such
 * pods should run `redirectMode=iptables` (README: "Istio capture options").
 */
import { CAPTURE_ANNOTATIONS, CAPTURE_ENV, captureOptionsOf, type MeshPod, type Support } from '@shunt/core';

export interface SocketLayerGap {
  /** The annotation or proxy env that asked for it. */
  setting: string;
  value: unknown;
  reason: string;
}

const ADVICE = 'run this node with redirectMode=iptables';

export function socketLayerGaps(pod: Pick<MeshPod, 'capture'>): SocketLayerGap[] {
  const cap = captureOptionsOf(pod);
  const gaps: SocketLayerGap[] = [];
  if (cap.excludeInterfaces.length > 0) {
    gaps.push({
      setting: CAPTURE_ANNOTATIONS.excludeInterfaces,
      value: cap.excludeInterfaces.join(','),
      reason: `the sockops backend cannot exclude interfaces: a connect() is steered before routing picks the interface, and inbound steering is per listener, not per NIC; ${ADVICE}`,
    });
  }
  if (cap.rerouteInterfaces.length > 0) {
    gaps.push({
      setting: `${CAPTURE_ANNOTATIONS.rerouteVirtualInterfaces} (or ${CAPTURE_ANNOTATIONS.kubevirtInterfaces})`,
      value: cap.rerouteInterfaces.join(','),
      reason: `the sockops backend cannot reroute virtual interfaces: a VM guest's traffic is forwarded through the pod and never passes a socket hook; ${ADVICE}`,
    });
  }
  if (cap.dropInvalid) {
    gaps.push({
      setting: `istio-proxy env ${CAPTURE_ENV.invalidDrop}`,
      value: true,
      reason: `the sockops backend cannot drop conntrack-INVALID packets: socket hooks never see packets or conntrack state; ${ADVICE}`,
    });
  }
  return gaps;
}

/** Per-pod support: ok, or every option the socket layer cannot do, each naming its annotation. */
export function sockopsPodSupport(pod: Pick<MeshPod, 'capture'>): Support {
  const gaps = socketLayerGaps(pod);
  if (gaps.length === 0) return { ok: true };
  return { ok: false, reasons: gaps.map((g) => `${g.setting}=${JSON.stringify(g.value)}: ${g.reason}`) };
}

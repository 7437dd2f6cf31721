// @shunt/testbed: a simulated Kubernetes node on one machine (netns pods, veths, bridges, cgroups,
// HAProxy sidecars, workloads), the demo and the benchmark harness.
export { Testbed, PROXY_UID, APP_UID, SIDECAR_PORTS } from './testbed';
export type { TestbedOptions, PodSpec, PodInfo, NodeInfo, MeshMode, SidecarStatus, PodCounters, LinkPacketCounters } from './testbed';
export type { ExecOptions, ProcessHandle, ExitStatus, RunResult } from './exec';
export { ExecError } from './exec';
export type { ProxyLogRecord, Endpoint, Listener } from './proxy-log';
export { parseProxyLogLine } from './proxy-log';
export type { KubePod, KubeContainer, PodsFileShunt } from './kube';
export { apiPodOf } from './kube';
export { cgroup2Mount } from './cgroup';
export { handwrittenRedirectRules, handwrittenRedirectRemoval } from './iptables-handwritten';
export type { HandwrittenRedirectOptions } from './iptables-handwritten';
export { TESTBED_PREFIX } from './names';
export type { HttpProbeResult, SockperfResult, IperfResult, WrkResult } from './workloads';
export { collectGarbage } from './collect-garbage';
export type { GcReport } from './collect-garbage';
export { runDemo, probeCapabilities } from './run-demo';
export type { DemoOptions, DemoCapabilities, DemoPathResult } from './run-demo';
export { runBench } from './benchmark/run-bench';
export type { BenchOptions, BenchResult, BenchZtunnel } from './benchmark/run-bench';
export { InpodZtunnelLite, createBenchZtunnel, ZTUNNEL_MARK, ZTUNNEL_PORTS } from './benchmark/inpod-ztunnel';
export type { ZtunnelLogRecord } from './benchmark/inpod-ztunnel';
export type { BenchReport, ModeResult } from './benchmark/report';
export { markdownTable, svgChart } from './benchmark/report';
export { directMode, iptablesHandwrittenMode, BUILTIN_MODES } from './modes';
export type { PathMode, ModePods } from './modes';

// @shunt/testbed: A simulated Kubernetes node on one machine: netns pods, veths, bridges, cgroups, HAProxy sidecars and workloads; used by tests, the demo and the benchmark.
export {};

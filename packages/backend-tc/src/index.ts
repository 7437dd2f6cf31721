// @shunt/backend-tc: Ambient-style redirect: TC programs on the pod host-side veths that steer pod traffic to the node ztunnel.
export {};

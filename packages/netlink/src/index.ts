// @shunt/netlink: One typed module for links, addresses, routes, rules and network namespaces (a wrapper over iproute2 `ip -json`), used by the testbed and the backends.
export {};

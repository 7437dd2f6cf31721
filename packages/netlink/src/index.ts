// @shunt/netlink: one typed module for links, addresses, routes, rules, sysctls and network
// namespaces, over iproute2 `ip -json` run without a shell, netns-aware via nsenter.
export { Netlink } from './netlink';
export { NetlinkError } from './errors';
export { createNetns, deleteNetns, listNetns, netnsPath, NETNS_RUN_DIR } from './netns';
export { runCommand, runIp, runIpJson } from './run';
export { processAlive } from './process-alive';
export { CommandPool, closeSharedPool, runPooled, shellQuote, type CommandPoolOptions } from './command-pool';
export type { RunOptions } from './run';
export type { Address, Family, Link, LinkCounters, LinkStats, Route, RouteSpec, Rule, RuleSpec } from './types';

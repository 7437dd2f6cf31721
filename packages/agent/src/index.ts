// @shunt/agent: the `shunt` daemon and CLI: wiring, metrics/health HTTP, `doctor`, `status`, `cleanup`.
// What @shunt/lab (demo, bench) builds on: the agent run as a child process, and this build's backends.
export { createBackends, type BackendSettings } from './backends';
export { spawnAgent, cliCommand, builtCliCommand, type AgentProcess, type SpawnAgentOptions } from './agent/process';
export { DEFAULT_STATE_DIR } from './node-state/context';
export { freePort } from './demo/free-port';
export { type Io, processIo } from './program';

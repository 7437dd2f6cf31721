// @shunt/lab: shunt's demo and benchmark on the testbed, with the real agent process.
export { buildLabProgram } from './program';
export { agentMode, type AgentModeOptions } from './demo/agent-mode';

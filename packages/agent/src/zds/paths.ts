// Where the agent keeps its ZDS files under <state-dir>/zds (`shunt cleanup` removes the directory).
import * as path from 'node:path';

/** The announced workloads, re-announced by a restarted agent (ZdsServerOptions.statePath). */
export const zdsStatePath = (stateDir: string): string => path.join(stateDir, 'zds', 'workloads.json');
/** The live ZDS state for `shunt status` (ZdsServerOptions.statusPath). */
export const zdsStatusPath = (stateDir: string): string => path.join(stateDir, 'zds', 'status.json');

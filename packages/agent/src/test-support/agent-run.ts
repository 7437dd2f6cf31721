// The set-up and teardown every agent end-to-end file (src/e2e/agent-*.test.ts) had written out
// for itself: a testbed with the file's pods (and the HTTP server the requests go to), a temp
// directory, a bpffs directory of this run when the backend pins (sockops, tc: never the machine's
// /sys/fs/bpf/shunt), and every agent the file started. useAgentRun() registers the beforeAll and
// the afterAll itself; what each test starts, sends and checks stays in the test file.
//
// The afterAll runs also when a test or the beforeAll failed, and undoes only what was made, in
// the order that works: agents first (they hold links and watch the pods file), then the file's
// own extra teardown (onTeardown, newest first), the pins under the run's bpffs directory (a
// failing test may leave links: detach them before the cgroups go), the testbed (its netns take any
// rules a failing test left with them), the temp directory.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Testbed, type PodSpec } from '@shunt/testbed';
import type { AgentProcess } from '../agent/process';
import { podNetnsPrefix, startBuiltAgent } from '../e2e/support';
import { removePins } from '../node-state/pins';

/** The pods most agent runs need: a client and a server, each with its HAProxy sidecar. */
export const CLIENT_SERVER_SIDECARS: readonly PodSpec[] = [
  { name: 'client', mesh: 'sidecar' },
  { name: 'server', mesh: 'sidecar' },
];

export interface AgentRunOptions {
  /** Names the temp directory (shunt-e2e-<tag>-…) and the run's bpffs directory. */
  tag: string;
  pods: readonly PodSpec[];
  /** An HTTP server answering 'hello' in this pod on this port, started before any test. */
  httpServer?: { pod: string; port: number };
  /**
   * `run`: a bpffs directory of this run in the machine's bpffs (/sys/fs/bpf/shunt-e2e-<tag>-<hex>),
   * for backends that pin. `temp` (default): <dir>/bpffs, for runs whose backend pins nothing.
   */
  bpffs?: 'run' | 'temp';
}

/** A bpffs directory of this run in the machine's bpffs; removeRunBpffs() undoes it. */
export function makeRunBpffs(tag: string): string {
  const dir = `/sys/fs/bpf/shunt-e2e-${tag}-${randomBytes(4).toString('hex')}`;
  mkdirSync(dir);
  return dir;
}

/** Detaches and unpins whatever shunt left under a run bpffs directory, then removes it. */
export async function removeRunBpffs(dir: string): Promise<void> {
  await removePins(path.join(dir, 'shunt')).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}

export class AgentRun {
  private tbValue: Testbed | undefined;
  private dirValue: string | undefined;
  private bpffsValue: string | undefined;
  private readonly agents: AgentProcess[] = [];
  private readonly teardowns: (() => Promise<void> | void)[] = [];

  constructor(private readonly opts: AgentRunOptions) {}

  get tb(): Testbed {
    if (!this.tbValue) throw new Error('agent run: no testbed (beforeAll did not run or failed)');
    return this.tbValue;
  }

  /** This file's temp directory (pods files, state directories, kubeconfig, sockets). */
  get dir(): string {
    if (!this.dirValue) throw new Error('agent run: no temp directory (beforeAll did not run or failed)');
    return this.dirValue;
  }

  /** <dir>/pods.json: where a run's --pods-file goes (written by the tests). */
  get podsFile(): string {
    return path.join(this.dir, 'pods.json');
  }

  /** The agents' --bpffs-path; shunt pins under <bpffs>/shunt. */
  get bpffs(): string {
    if (!this.bpffsValue) throw new Error('agent run: no bpffs directory (beforeAll did not run or failed)');
    return this.bpffsValue;
  }

  /** --bpffs-path, --cgroup-path, --state-dir <dir>/<stateDir>, --netns-prefix: what scopes an agent or a CLI run to this testbed. */
  nodeArgs(stateDir = 'state'): string[] {
    return ['--bpffs-path', this.bpffs, '--cgroup-path', this.tb.cgroupRoot, '--state-dir', path.join(this.dir, stateDir), '--netns-prefix', podNetnsPrefix(this.tb)];
  }

  /** startBuiltAgent(); the agent is stopped at the end of the file, whatever happened. */
  async startAgent(args: string[], opts: Parameters<typeof startBuiltAgent>[1] = {}): Promise<AgentProcess> {
    const a = await startBuiltAgent(args, opts);
    this.agents.push(a);
    return a;
  }

  /** An agent the file started by other means (spawnAgent), stopped at the end like the others. */
  track(agent: AgentProcess): AgentProcess {
    this.agents.push(agent);
    return agent;
  }

  /** Extra teardown of the file (after the agents stopped, before pins, testbed and temp directory go). */
  onTeardown(fn: () => Promise<void> | void): void {
    this.teardowns.push(fn);
  }

  async setUp(): Promise<void> {
    const o = this.opts;
    this.tbValue = await Testbed.create({ pods: [...o.pods] });
    if (o.httpServer) await this.tbValue.startHttpServer(o.httpServer.pod, { port: o.httpServer.port, body: 'hello' });
    this.dirValue = mkdtempSync(path.join(tmpdir(), `shunt-e2e-${o.tag}-`));
    this.bpffsValue = o.bpffs === 'run' ? makeRunBpffs(o.tag) : path.join(this.dirValue, 'bpffs');
  }

  async tearDown(): Promise<void> {
    for (const a of this.agents.splice(0)) await a.stop().catch(() => undefined);
    for (const fn of this.teardowns.splice(0).reverse()) await Promise.resolve().then(fn).catch(() => undefined);
    if (this.opts.bpffs === 'run' && this.bpffsValue) await removeRunBpffs(this.bpffsValue);
    await this.tbValue?.dispose();
    if (this.dirValue) rmSync(this.dirValue, { recursive: true, force: true });
  }
}

/** An AgentRun whose setUp/tearDown are this file's (or describe block's) beforeAll/afterAll. */
export function useAgentRun(opts: AgentRunOptions): AgentRun {
  const run = new AgentRun(opts);
  beforeAll(() => run.setUp(), 120_000);
  afterAll(() => run.tearDown(), 60_000);
  return run;
}

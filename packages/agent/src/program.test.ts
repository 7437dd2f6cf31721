// The command line: help everywhere, and the exact arguments the Helm chart passes are accepted.
import { Command } from 'commander';
import { buildProgram, type Io } from './program';
import { agentSettings } from './commands/agent';

function capture(): Io & { text: () => string } {
  let buf = '';
  return { out: (t) => (buf += t), err: (t) => (buf += t), text: () => buf };
}

function parseOnly(program: Command, argv: string[]): Record<string, unknown> {
  // Replace every action with one that records the options, so nothing runs.
  let seen: Record<string, unknown> = {};
  for (const c of program.commands) c.action((opts: Record<string, unknown>) => void (seen = opts));
  program.exitOverride();
  for (const c of program.commands) c.exitOverride();
  program.parse(argv, { from: 'user' });
  return seen;
}

it.each(['agent', 'doctor', 'status', 'cleanup'])('`shunt %s --help` describes the command', (cmd) => {
  const io = capture();
  const program = buildProgram(io);
  program.exitOverride();
  for (const c of program.commands) c.exitOverride();
  expect(() => program.parse([cmd, '--help'], { from: 'user' })).toThrow(/help/i);
  expect(io.text()).toContain(`Usage: shunt ${cmd}`);
});

it('accepts the arguments the chart renders and turns them into agent settings', () => {
  const argv = ['agent', '--redirect-mode=iptables', '--profile=istio-ambient', '--log-level=info', '--metrics-address=0.0.0.0:9464', '--bpffs-path=/sys/fs/bpf', '--state-dir=/run/shunt', '--cgroup-search=/host/sys/fs/cgroup', '--zds-socket=/var/run/ztunnel/ztunnel.sock', '--cleanup-on-exit'];
  const opts = parseOnly(buildProgram(capture()), argv);
  const { settings, logLevel } = agentSettings(opts, { NODE_NAME: 'node-a', KUBERNETES_SERVICE_HOST: '10.96.0.1' });
  expect(settings).toMatchObject({
    nodeName: 'node-a',
    mode: 'iptables',
    profile: 'istio-ambient',
    source: { kind: 'kubernetes', inCluster: true },
    metricsAddress: '0.0.0.0:9464',
    bpffsPath: '/sys/fs/bpf',
    cgroupSearch: '/host/sys/fs/cgroup',
    stateDir: '/run/shunt',
    zdsSocket: '/var/run/ztunnel/ztunnel.sock',
    cleanupOnExit: true,
  });
  expect(logLevel).toBe('info');
});

it('serves ZDS only for the ambient profile: --zds-socket / SHUNT_ZDS_SOCKET, istio-cni\'s path by default', () => {
  const env = { NODE_NAME: 'node-a', KUBERNETES_SERVICE_HOST: '10.96.0.1' };
  const parse = (argv: string[], e: Record<string, string> = env) => agentSettings(parseOnly(buildProgram(capture()), ['agent', ...argv]), e).settings.zdsSocket;
  expect(parse(['--profile=istio-ambient'])).toBe('/var/run/ztunnel/ztunnel.sock');
  expect(parse(['--profile=istio-ambient', '--zds-socket', '/run/zt/zds.sock'])).toBe('/run/zt/zds.sock');
  expect(parse(['--profile=istio-ambient'], { ...env, SHUNT_ZDS_SOCKET: '/run/zt/env.sock' })).toBe('/run/zt/env.sock');
  expect(parse([])).toBeUndefined(); // sidecar profile: no ZDS server
  expect(() => parse(['--profile=istio-ambient', '--zds-socket', 'rel.sock'])).toThrow(/zdsSocket \(from flag --zds-socket\): "rel.sock" must be an absolute path/);
});

it('turns --splice-ports into the sockops splice setting; auto by default; a bad port is named', () => {
  const env = { NODE_NAME: 'node-a', KUBERNETES_SERVICE_HOST: '10.96.0.1' };
  const parse = (argv: string[]) => agentSettings(parseOnly(buildProgram(capture()), ['agent', ...argv]), env).settings.splice;
  expect(parse([])).toBe('auto');
  expect(parse(['--splice-ports', 'auto'])).toBe('auto');
  expect(parse(['--splice-ports', 'none'])).toBe('none');
  expect(parse(['--splice-ports=9090,8080'])).toEqual([8080, 9090]);
  expect(parse(['--splice-ports', 'all'])).toBe('all');
  expect(agentSettings({}, { ...env, SHUNT_SPLICE_PORTS: '11111' }).settings.splice).toEqual([11111]);
  expect(() => parse(['--splice-ports=8080,http'])).toThrow(/splicePorts \(from flag --splice-ports\): "http" is not a port/);
});

it('rejects a redirect mode that does not exist, naming the choices', () => {
  const io = capture();
  expect(() => parseOnly(buildProgram(io), ['agent', '--redirect-mode', 'ebpf'])).toThrow();
  expect(io.text()).toContain('Allowed choices are auto, sockops, tc, iptables');
});

it('says which setting is missing when the node name is not given', () => {
  expect(() => agentSettings({ podsFile: '/tmp/pods.yaml' }, {})).toThrow(/nodeName.*NODE_NAME/);
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from './errors';
import { loadConfig, parseListenAddress, pinRoot } from './config';

const dir = mkdtempSync(join(tmpdir(), `shunt-config-${process.pid}-`));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const kubeconfig = join(dir, 'kubeconfig');
writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\n');
const pods = join(dir, 'pods.yaml');

function file(name: string, content: string): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('defaults, with a pods file', () => {
    const { config, origins } = loadConfig({ flags: { nodeName: 'node-1', podsFile: pods } });
    expect(config).toEqual({
      mode: 'auto',
      profile: 'istio-sidecar',
      nodeName: 'node-1',
      source: { kind: 'podsFile', path: pods },
      cgroupPath: null,
      bpffsPath: '/sys/fs/bpf',
      metricsAddress: '0.0.0.0:9464',
      logLevel: 'info',
    });
    expect(origins).toMatchObject({ nodeName: 'flag', podsFile: 'flag', mode: 'default' });
    expect(pinRoot(config)).toBe('/sys/fs/bpf/shunt');
  });

  it('flags beat env, env beats file, file beats defaults', () => {
    const f = file('c1.yaml', ['mode: iptables', 'profile: istio-ambient', 'logLevel: warn', `kubeconfig: ${kubeconfig}`, 'metricsAddress: "127.0.0.1:9000"'].join('\n'));
    const { config, origins } = loadConfig({
      flags: { mode: 'sockops' },
      env: { NODE_NAME: 'n1.example', SHUNT_LOG_LEVEL: 'debug', SHUNT_CGROUP_PATH: '/sys/fs/cgroup/unified' },
      file: f,
    });
    expect(config).toMatchObject({
      mode: 'sockops',
      profile: 'istio-ambient',
      logLevel: 'debug',
      nodeName: 'n1.example',
      cgroupPath: '/sys/fs/cgroup/unified',
      metricsAddress: '127.0.0.1:9000',
      source: { kind: 'kubernetes', kubeconfig, inCluster: false },
    });
    expect(origins).toMatchObject({ mode: 'flag', profile: 'file', logLevel: 'env', nodeName: 'env', kubeconfig: 'file' });
  });

  it('SHUNT_CONFIG names the file; a JSON file works too', () => {
    const f = file('c2.json', JSON.stringify({ nodeName: 'x', podsFile: pods, mode: 'tc' }));
    expect(loadConfig({ env: { SHUNT_CONFIG: f } }).config.mode).toBe('tc');
  });

  it('in a pod with a service account the Kubernetes API is the default source', () => {
    expect(loadConfig({ env: { NODE_NAME: 'n', KUBERNETES_SERVICE_HOST: '10.96.0.1' } }).config.source).toEqual({ kind: 'kubernetes', inCluster: true });
    expect(loadConfig({ flags: { nodeName: 'n', inCluster: true } }).config.source).toEqual({ kind: 'kubernetes', inCluster: true });
    expect(loadConfig({ env: { NODE_NAME: 'n', SHUNT_IN_CLUSTER: 'true' } }).config.source).toEqual({ kind: 'kubernetes', inCluster: true });
  });

  it.each<[string, Parameters<typeof loadConfig>[0], RegExp]>([
    ['bad mode', { flags: { nodeName: 'n', podsFile: pods, mode: 'ebpf' } }, /config mode \(from flag --mode\): "ebpf" is not one of auto, sockops, tc, iptables/],
    ['bad profile from env', { env: { NODE_NAME: 'n', SHUNT_PODS_FILE: pods, SHUNT_PROFILE: 'linkerd' } }, /config profile \(from env SHUNT_PROFILE\): "linkerd"/],
    ['missing node name', { flags: { podsFile: pods } }, /nodeName.*required.*NODE_NAME/],
    ['bad node name', { flags: { nodeName: 'Node_1', podsFile: pods } }, /nodeName.*"Node_1" is not a valid Kubernetes node name/],
    ['no source', { flags: { nodeName: 'n' } }, /no pod source: pass --pods-file/],
    ['two sources', { flags: { nodeName: 'n', podsFile: pods, kubeconfig } }, /choose one pod source.*flag --kubeconfig/],
    ['kubeconfig and in-cluster', { flags: { nodeName: 'n', kubeconfig, inCluster: true } }, /inCluster.*conflicts with kubeconfig/],
    ['missing kubeconfig', { flags: { nodeName: 'n', kubeconfig: join(dir, 'nope') } }, /kubeconfig \(from flag --kubeconfig\): ".*nope" is not a readable file/],
    ['relative pods file', { flags: { nodeName: 'n', podsFile: 'pods.yaml' } }, /podsFile.*must be an absolute path/],
    ['pods file in a missing dir', { flags: { nodeName: 'n', podsFile: '/nonexistent-shunt/pods.yaml' } }, /directory \/nonexistent-shunt does not exist/],
    ['relative cgroup path', { flags: { nodeName: 'n', podsFile: pods, cgroupPath: 'sys/fs/cgroup' } }, /cgroupPath.*absolute/],
    ['bad bool', { env: { NODE_NAME: 'n', SHUNT_IN_CLUSTER: 'yes please' } }, /inCluster \(from env SHUNT_IN_CLUSTER\): expected true or false/],
    ['bad metrics port', { flags: { nodeName: 'n', podsFile: pods, metricsAddress: ':70000' } }, /metricsAddress.*port 70000 out of range/],
    ['bad metrics address', { flags: { nodeName: 'n', podsFile: pods, metricsAddress: '9464' } }, /metricsAddress.*expected host:port/],
    ['bad log level', { flags: { nodeName: 'n', podsFile: pods, logLevel: 'loud' } }, /logLevel.*"loud" is not one of trace, debug/],
  ])('%s → clear error', (_what, inputs, message) => {
    expect(configError(() => loadConfig(inputs)).message).toMatch(message);
  });

  it('file problems name the file', () => {
    expect(configError(() => loadConfig({ file: join(dir, 'missing.yaml') })).message).toMatch(/missing\.yaml.*cannot read/);
    expect(configError(() => loadConfig({ file: file('bad.yaml', 'mode: [') })).message).toMatch(/bad\.yaml.*not valid YAML/);
    expect(configError(() => loadConfig({ file: file('list.yaml', '- a') })).message).toMatch(/must be a mapping/);
    expect(configError(() => loadConfig({ file: file('typo.yaml', 'nodename: x') })).message).toMatch(/config nodename \(from file .*typo\.yaml\): unknown setting/);
  });
});

describe('parseListenAddress', () => {
  it.each([
    ['0.0.0.0:9464', { host: '0.0.0.0', port: 9464 }],
    [':9464', { host: '', port: 9464 }],
    ['[::1]:9464', { host: '::1', port: 9464 }],
    ['localhost:80', { host: 'localhost', port: 80 }],
  ])('%s', (t, v) => expect(parseListenAddress(t)).toEqual(v));
  it.each(['9464', '::1:9464', '[10.0.0.1]:80', 'host:0', 'a b:80'])('rejects %s', (t) => expect(typeof parseListenAddress(t)).toBe('string'));
});

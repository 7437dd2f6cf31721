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
      // Splicing is opt-in: readers that stop on a short read + EPOLLRDHUP can lose data (see SpliceMode).
      spliceMode: 'auto',
      splicePorts: [],
      // istio-cni's path: where ztunnel connects by default.
      zdsSocket: '/var/run/ztunnel/ztunnel.sock',
      maxPods: 1024,
      meshCapture: { ownerGroups: { include: '*', exclude: [] }, dropInvalid: false, hostLoopbackCidr: { family: 4, address: '127.0.0.1', prefix: 32 }, clusterDnsServers: [] },
    });
    expect(origins).toMatchObject({ nodeName: 'flag', podsFile: 'flag', mode: 'default', splicePorts: 'default', zdsSocket: 'default', maxPods: 'default' });
    expect(pinRoot(config)).toBe('/sys/fs/bpf/shunt');
  });

  it('maxPods from flag, env or file', () => {
    expect(loadConfig({ flags: { nodeName: 'n', podsFile: pods, maxPods: '4096' } }).config.maxPods).toBe(4096);
    expect(loadConfig({ env: { NODE_NAME: 'n', SHUNT_PODS_FILE: pods, SHUNT_MAX_PODS: '300' } }).config.maxPods).toBe(300);
    expect(loadConfig({ flags: { nodeName: 'n', podsFile: pods }, file: file('mp.yaml', 'maxPods: 2048') }).config.maxPods).toBe(2048);
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
    ['bad splice port', { flags: { nodeName: 'n', podsFile: pods, splicePorts: '80,http' } }, /config splicePorts \(from flag --splice-ports\): "http" is not a port \(1-65535\) in "80,http"/],
    ['splice port out of range', { env: { NODE_NAME: 'n', SHUNT_PODS_FILE: pods, SHUNT_SPLICE_PORTS: '70000' } }, /splicePorts \(from env SHUNT_SPLICE_PORTS\): "70000" is not a port/],
    ['splice port zero', { flags: { nodeName: 'n', podsFile: pods, splicePorts: '0' } }, /"0" is not a port/],
    ['maxPods not a number', { flags: { nodeName: 'n', podsFile: pods, maxPods: 'lots' } }, /config maxPods \(from flag --max-pods\): "lots" is not a pod count \(1-65536\)/],
    ['maxPods zero', { env: { NODE_NAME: 'n', SHUNT_PODS_FILE: pods, SHUNT_MAX_PODS: '0' } }, /maxPods \(from env SHUNT_MAX_PODS\): "0" is not a pod count/],
    ['maxPods too large', { flags: { nodeName: 'n', podsFile: pods, maxPods: '100000' } }, /maxPods.*"100000" is not a pod count \(1-65536\)/],
    ['all mixed with ports', { flags: { nodeName: 'n', podsFile: pods, splicePorts: 'all,8080' } }, /splicePorts.*"all" cannot be combined with ports/],
    ['relative zds socket', { env: { NODE_NAME: 'n', SHUNT_PODS_FILE: pods, SHUNT_ZDS_SOCKET: 'ztunnel.sock' } }, /zdsSocket \(from env SHUNT_ZDS_SOCKET\): "ztunnel.sock" must be an absolute path/],
    ['zds socket path too long', { flags: { nodeName: 'n', podsFile: pods, zdsSocket: '/' + 'x'.repeat(120) } }, /zdsSocket \(from flag --zds-socket\): .* longer than a unix socket path can be/],
  ])('%s → clear error', (_what, inputs, message) => {
    expect(configError(() => loadConfig(inputs)).message).toMatch(message);
  });

  describe('splicePorts', () => {
    const splice = (inputs: Parameters<typeof loadConfig>[0]) => {
      const { config, origins } = loadConfig(inputs);
      return { mode: config.spliceMode, ports: config.splicePorts, origin: origins.splicePorts };
    };
    const base = { nodeName: 'n', podsFile: pods };

    it('a flag list: sorted, unique, spaces allowed', () => {
      expect(splice({ flags: { ...base, splicePorts: '9080, 8080,9080 15010' } })).toEqual({ mode: 'listed', ports: [8080, 9080, 15010], origin: 'flag' });
    });

    it('all and none, any case; empty means none', () => {
      expect(splice({ flags: { ...base, splicePorts: 'ALL' } })).toMatchObject({ mode: 'all', ports: [] });
      expect(splice({ flags: { ...base, splicePorts: 'none' } })).toMatchObject({ mode: 'none', ports: [] });
      expect(splice({ flags: { ...base, splicePorts: 'auto' } })).toMatchObject({ mode: 'auto', ports: [] });
      expect(splice({ flags: base })).toMatchObject({ mode: 'auto', ports: [], origin: 'default' });
      expect(splice({ flags: { ...base, splicePorts: '' } })).toMatchObject({ mode: 'none', ports: [] });
    });

    it('env SHUNT_SPLICE_PORTS, and the file as a YAML list, a number or text; flag beats env beats file', () => {
      expect(splice({ flags: base, env: { SHUNT_SPLICE_PORTS: '8080' } })).toEqual({ mode: 'listed', ports: [8080], origin: 'env' });
      expect(splice({ flags: base, file: file('s1.yaml', 'splicePorts: [9090, 8080]') })).toEqual({ mode: 'listed', ports: [8080, 9090], origin: 'file' });
      expect(splice({ flags: base, file: file('s2.yaml', 'splicePorts: 8080') })).toMatchObject({ mode: 'listed', ports: [8080] });
      expect(splice({ flags: base, file: file('s3.yaml', 'splicePorts: all') })).toMatchObject({ mode: 'all' });
      const f = file('s4.yaml', 'splicePorts: all');
      expect(splice({ flags: { ...base, splicePorts: '80' }, env: { SHUNT_SPLICE_PORTS: 'all' }, file: f })).toMatchObject({ mode: 'listed', ports: [80] });
      expect(splice({ flags: base, env: { SHUNT_SPLICE_PORTS: 'none' }, file: f })).toMatchObject({ mode: 'none', origin: 'env' });
    });

    it('bad file values name the file and the value', () => {
      expect(configError(() => loadConfig({ flags: base, file: file('s5.yaml', 'splicePorts: [8080, 1.5]') })).message).toMatch(
        /config splicePorts \(from file .*s5\.yaml\): "1\.5" is not a port/,
      );
      expect(configError(() => loadConfig({ flags: base, file: file('s6.yaml', 'splicePorts: true') })).message).toMatch(
        /splicePorts.*expected "auto", "none", "all" or a list of ports, got true/,
      );
    });

    it('at most MAX_SPLICE_PORTS ports (the BPF map size)', () => {
      const many = Array.from({ length: 1025 }, (_, i) => 1000 + i).join(',');
      expect(configError(() => loadConfig({ flags: { ...base, splicePorts: many } })).message).toMatch(/1025 ports, at most 1024/);
    });
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

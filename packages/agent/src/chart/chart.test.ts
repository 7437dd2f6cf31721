// The Helm chart, rendered without a helm binary by deploy/render (Go text/template + sprig,
// the engine Helm uses), for every redirectMode and profile, with each object checked against
// the Kubernetes API schema compiled into @kubernetes/client-node (tools/k8s-validate.mjs).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const repo = path.resolve(__dirname, '../../../..');
const chartDir = path.join(repo, 'deploy/helm/shunt');
const validator = path.join(repo, 'packages/agent/tools/k8s-validate.mjs');

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

let workDir: string;
let renderer: string;

beforeAll(() => {
  workDir = mkdtempSync(path.join(tmpdir(), 'shunt-chart-'));
  renderer = path.join(workDir, 'render');
  const built = spawnSync(path.join(repo, 'deploy/render/build.sh'), [renderer], { encoding: 'utf8' });
  if (built.status !== 0) {
    throw new Error(
      `building deploy/render failed (needs apt packages golang-go golang-github-masterminds-sprig-dev, installed by scripts/setup.sh):\n${built.stderr}`,
    );
  }
}, 120_000);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

function renderRaw(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(renderer, ['--chart', chartDir, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function render(args: string[] = []): K8sObject[] {
  const r = renderRaw(['--json', ...args]);
  if (r.status !== 0) throw new Error(`render ${args.join(' ')} failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { source: string; object: K8sObject }[]).map((e) => e.object);
}

function k8sProblems(objects: K8sObject[]): { object: string; problems: string[]; unchecked?: boolean }[] {
  const out = execFileSync(process.execPath, [validator], { input: JSON.stringify(objects), encoding: 'utf8', cwd: repo });
  return JSON.parse(out);
}

function find(objects: K8sObject[], kind: string): Any {
  const o = objects.find((x) => x.kind === kind);
  if (!o) throw new Error(`no ${kind} rendered; got ${objects.map((x) => x.kind).join(', ')}`);
  return o;
}

const MODES = ['auto', 'sockops', 'tc', 'iptables'] as const;
const PROFILES = ['istio-sidecar', 'istio-ambient'] as const;

describe.each(MODES)('redirectMode=%s', (mode) => {
  it.each(PROFILES)('profile=%s renders valid Kubernetes objects with the agent set up for it', (profile) => {
    const objects = render(['--set', `redirectMode=${mode}`, '--set', `profile=${profile}`]);
    expect(objects.map((o) => o.kind)).toEqual(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'DaemonSet']);
    for (const r of k8sProblems(objects)) {
      expect(r).toEqual({ object: r.object, problems: [] });
    }
    const ds = find(objects, 'DaemonSet');
    const pod = ds.spec.template.spec;
    const agent = pod.containers.find((c: Any) => c.name === 'agent');
    expect(agent.args).toEqual(expect.arrayContaining(['agent', `--redirect-mode=${mode}`, `--profile=${profile}`]));
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID).toBe(true);
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(agent.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    expect(agent.livenessProbe.httpGet.path).toBe('/healthz');
    expect(agent.readinessProbe.httpGet.path).toBe('/readyz');
    expect(agent.ports).toContainEqual({ name: 'metrics', containerPort: 9464, protocol: 'TCP' });
    expect(ds.spec.updateStrategy.type).toBe('RollingUpdate');
  });
});

describe('security', () => {
  it('runs the agent unprivileged with only the capabilities the docs justify', () => {
    const pod = find(render(), 'DaemonSet').spec.template.spec;
    expect(pod.initContainers).toBeUndefined();
    const sc = pod.containers[0].securityContext;
    expect(sc.privileged).toBe(false);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect([...sc.capabilities.add].sort()).toEqual(
      ['BPF', 'DAC_READ_SEARCH', 'NET_ADMIN', 'NET_RAW', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE', 'SYS_RESOURCE'].sort(),
    );
    // Every capability the chart adds is explained in the README.
    const guide = readFileSync(path.join(repo, 'README.md'), 'utf8');
    for (const cap of sc.capabilities.add) expect(guide).toContain(`CAP_${cap}`);
  });

  it('mounts the host bpffs, cgroup, netns and state directories the agent needs', () => {
    const pod = find(render(), 'DaemonSet').spec.template.spec;
    const mounts = Object.fromEntries(pod.containers[0].volumeMounts.map((m: Any) => [m.name, m]));
    const volumes = Object.fromEntries(pod.volumes.map((v: Any) => [v.name, v]));
    expect(volumes.bpffs.hostPath.path).toBe('/sys/fs/bpf');
    expect(mounts.bpffs.mountPath).toBe('/sys/fs/bpf');
    expect(volumes.cgroup.hostPath.path).toBe('/sys/fs/cgroup');
    expect(volumes.netns.hostPath.path).toBe('/var/run/netns');
    expect(mounts.netns.mountPropagation).toBe('HostToContainer');
    // iptables records outlive the pod, so the next agent adopts the pods they describe.
    expect(volumes.state.hostPath.path).toBe('/run/shunt');
    expect(mounts.state.mountPath).toBe('/run/shunt');
    expect(pod.containers[0].args).toContain('--state-dir=/run/shunt');
    // Bidirectional propagation needs a privileged container: the agent never uses it.
    for (const m of pod.containers[0].volumeMounts) expect(m.mountPropagation).not.toBe('Bidirectional');
  });

  it('bpffs.mountOnHost adds the only privileged container, an init container that mounts bpffs', () => {
    const objects = render(['--set', 'bpffs.mountOnHost=true']);
    expect(k8sProblems(objects).flatMap((r) => r.problems)).toEqual([]);
    const pod = find(objects, 'DaemonSet').spec.template.spec;
    expect(pod.initContainers).toHaveLength(1);
    expect(pod.initContainers[0].securityContext.privileged).toBe(true);
    expect(pod.initContainers[0].volumeMounts[0].mountPropagation).toBe('Bidirectional');
    expect(pod.containers[0].securityContext.privileged).toBe(false);
  });

  it('grants read-only access to pods and namespaces, nothing else', () => {
    const role = find(render(), 'ClusterRole');
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['pods', 'namespaces'], verbs: ['get', 'list', 'watch'] }]);
  });

  it('uses the appArmor annotation on Kubernetes < 1.30 and the field from 1.30 on', () => {
    const old = render(['--kube-version', 'v1.28.4']);
    expect(k8sProblems(old).flatMap((r) => r.problems)).toEqual([]);
    const oldDs = find(old, 'DaemonSet');
    expect(oldDs.spec.template.metadata.annotations['container.apparmor.security.beta.kubernetes.io/agent']).toBe('unconfined');
    expect(oldDs.spec.template.spec.containers[0].securityContext.appArmorProfile).toBeUndefined();
    const cur = find(render(['--kube-version', 'v1.31.0']), 'DaemonSet');
    expect(cur.spec.template.spec.containers[0].securityContext.appArmorProfile).toEqual({ type: 'Unconfined' });
    expect(Object.keys(cur.spec.template.metadata.annotations)).toEqual(['checksum/args']);
  });
});

describe('values', () => {
  it('passes cgroupPath, cleanupOnExit and extraArgs to the agent, and rolls pods when they change', () => {
    const base = find(render(), 'DaemonSet');
    expect(base.spec.template.spec.containers[0].args).toContain('--cgroup-search=/host/sys/fs/cgroup');
    const ds = find(
      render(['--set', 'cgroupPath=/host/sys/fs/cgroup/unified', '--set', 'cleanupOnExit=true', '--set-string', 'extraArgs[0]=--resync-interval=30s']),
      'DaemonSet',
    );
    const args = ds.spec.template.spec.containers[0].args;
    expect(args).toEqual(expect.arrayContaining(['--cgroup-path=/host/sys/fs/cgroup/unified', '--cleanup-on-exit', '--resync-interval=30s']));
    expect(args.some((a: string) => a.startsWith('--cgroup-search'))).toBe(false);
    expect(ds.spec.template.metadata.annotations['checksum/args']).not.toBe(base.spec.template.metadata.annotations['checksum/args']);
  });

  it('maxPods: 1024 by default, passed as --max-pods', () => {
    const args = (extra: string[]) => find(render(extra), 'DaemonSet').spec.template.spec.containers[0].args as string[];
    expect(args([])).toContain('--max-pods=1024');
    expect(args(['--set', 'maxPods=10000'])).toContain('--max-pods=10000');
  });

  it('sockops.splicePorts: "auto" by default (guarded), a list, [] or "none", or "all" becomes --splice-ports', () => {
    const args = (extra: string[]) => find(render(extra), 'DaemonSet').spec.template.spec.containers[0].args as string[];
    expect(args([]).filter((a) => a.startsWith('--splice-ports'))).toEqual(['--splice-ports=auto']);
    expect(args(['--set', 'sockops.splicePorts={}'])).toContain('--splice-ports=none');
    expect(args(['--set', 'sockops.splicePorts={8080,9090}'])).toContain('--splice-ports=8080,9090');
    expect(args(['--set', 'sockops.splicePorts=8080'])).toContain('--splice-ports=8080');
    expect(args(['--set', 'sockops.splicePorts=all'])).toContain('--splice-ports=all');
    expect(args(['--set', 'sockops.splicePorts=auto'])).toContain('--splice-ports=auto');
    expect(args(['--set', 'sockops.splicePorts=none'])).toContain('--splice-ports=none');
    const file = path.join(workDir, 'splice.yaml');
    writeFileSync(file, 'sockops:\n  splicePorts: [15010, 8080]\n');
    expect(args(['-f', file])).toContain('--splice-ports=15010,8080');
    // The flag the chart renders is one the agent accepts (program.test.ts checks the parsing).
    expect(k8sProblems(render(['--set', 'sockops.splicePorts={8080,9090}'])).flatMap((r) => r.problems)).toEqual([]);
  });

  it('sockops.splicePorts none / [] with profile=istio-ambient: --splice-ports=none, which the agent turns into tc splice none; the schema and values say so', async () => {
    const args = (extra: string[]) => find(render(extra), 'DaemonSet').spec.template.spec.containers[0].args as string[];
    for (const v of [['--set', 'sockops.splicePorts=none'], ['--set', 'sockops.splicePorts={}']]) expect(args(['--set', 'profile=istio-ambient', ...v])).toContain('--splice-ports=none');
    expect(args(['--set', 'profile=istio-ambient']).filter((a) => a.startsWith('--splice-ports'))).toEqual(['--splice-ports=auto']);
    // What the agent makes of it (backends.ts): the tc backend's own setting.
    const { createBackends } = await import('../backends');
    const tcSetting = async (splice: 'none' | 'auto' | 'all') => {
      const tc = createBackends({ profile: 'istio-ambient', stateDir: workDir, splice }).find((b) => b.name === 'tc')!;
      return ((await tc.observe()).nodeDetail['splice'] as { setting: string }).setting;
    };
    expect(await tcSetting('none')).toBe('none');
    expect(await tcSetting('auto')).toBe('auto');
    expect(await tcSetting('all')).toBe('auto');
    const schema = JSON.parse(readFileSync(path.join(chartDir, 'values.schema.json'), 'utf8')) as { properties: { sockops: { properties: { splicePorts: { description: string } } } } };
    expect(schema.properties.sockops.properties.splicePorts.description).toMatch(/istio-ambient \(tc backend\), \[\] or "none" also turns off splicing/);
    expect(readFileSync(path.join(chartDir, 'values.yaml'), 'utf8')).toMatch(/splicePorts "none" \(or \[\]\) also turns ambient \(tc backend\) splicing off/);
  });

  it('profile=istio-ambient serves ZDS: --zds-socket and its host directory mounted at the same path; sidecar profile neither', () => {
    const pod = (extra: string[]) => find(render(extra), 'DaemonSet').spec.template.spec;
    const amb = pod(['--set', 'profile=istio-ambient']);
    expect(amb.containers[0].args).toContain('--zds-socket=/var/run/ztunnel/ztunnel.sock');
    expect(amb.volumes).toContainEqual({ name: 'ztunnel', hostPath: { path: '/var/run/ztunnel', type: 'DirectoryOrCreate' } });
    expect(amb.containers[0].volumeMounts).toContainEqual({ name: 'ztunnel', mountPath: '/var/run/ztunnel' });
    const custom = pod(['--set', 'profile=istio-ambient', '--set', 'ambient.zdsSocket=/run/zt/zds.sock']);
    expect(custom.containers[0].args).toContain('--zds-socket=/run/zt/zds.sock');
    expect(custom.volumes).toContainEqual({ name: 'ztunnel', hostPath: { path: '/run/zt', type: 'DirectoryOrCreate' } });
    const side = pod([]);
    expect(side.containers[0].args.some((a: string) => a.startsWith('--zds-socket'))).toBe(false);
    expect(side.volumes.some((v: Any) => v.name === 'ztunnel')).toBe(false);
    // The schema refuses a relative path and a socket directly under / (that would mount the host root).
    for (const bad of ['ztunnel.sock', '/ztunnel.sock']) {
      const r = renderRaw(['--set', 'profile=istio-ambient', '--set', `ambient.zdsSocket=${bad}`]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/zdsSocket/);
    }
  });

  it('serviceMonitor.enabled adds a headless Service and a ServiceMonitor scraping the metrics port', () => {
    const objects = render(['--set', 'serviceMonitor.enabled=true', '--set', 'serviceMonitor.labels.release=prom']);
    expect(objects.map((o) => o.kind)).toEqual(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Service', 'DaemonSet', 'ServiceMonitor']);
    const results = k8sProblems(objects);
    expect(results.flatMap((r) => r.problems)).toEqual([]);
    // ServiceMonitor is a CRD, not in client-node: check the fields prometheus-operator needs.
    expect(results.filter((r) => r.unchecked).map((r) => r.object)).toEqual(['monitoring.coreos.com/v1/ServiceMonitor']);
    const sm = find(objects, 'ServiceMonitor');
    const svc = find(objects, 'Service');
    const podLabels = find(objects, 'DaemonSet').spec.template.metadata.labels;
    expect(sm.metadata.labels.release).toBe('prom');
    expect(sm.spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics', interval: '30s', scrapeTimeout: '10s' }]);
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svc.metadata.labels[k]).toBe(v);
    expect(svc.spec.clusterIP).toBe('None');
    for (const [k, v] of Object.entries(svc.spec.selector)) expect(podLabels[k]).toBe(v);
    expect(svc.spec.ports[0]).toMatchObject({ name: 'metrics', targetPort: 'metrics' });
  });

  it.each([
    [['--set', 'redirectMode=ebpf'], 'redirectMode: must be one of the following: "auto", "sockops", "tc", "iptables"'],
    [['--set', 'profile=linkerd'], 'profile: must be one of the following'],
    [['--set', 'metrics.port=70000'], 'metrics.port: Must be less than or equal to 65535'],
    [['--set', 'hostPaths.bpffs=sys/fs/bpf'], "hostPaths.bpffs: Does not match pattern '^/'"],
    [['--set', 'redirectmode=tc'], 'Additional property redirectmode is not allowed'],
    [['--set', 'sockops.splicePorts={8080,70000}'], 'sockops.splicePorts.1: Must be less than or equal to 65535'],
    [['--set', 'sockops.splicePorts=0'], 'sockops.splicePorts: Must be greater than or equal to 1'],
    [['--set', 'maxPods=0'], 'maxPods: Must be greater than or equal to 1'],
    [['--set', 'sockops.splicePorts=http'], "sockops.splicePorts: Does not match pattern"],
    [['--set', 'sockops.splicePorts=true'], 'sockops.splicePorts must be a list of ports, one port, "auto", "all" or "none", got true'],
    [['--set', 'serviceAccount.create=false'], 'serviceAccount.name is required when serviceAccount.create=false'],
    [['--set', 'securityContext.appArmorProfile.type=Localhost', '--kube-version', '1.29.0'], 'localhostProfile is required'],
  ])('rejects bad values %j with a message naming the value', (args, message) => {
    const r = renderRaw(args);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(message);
  });

  it('a values file overrides defaults deeply and null removes a default', () => {
    const file = path.join(workDir, 'values.json');
    writeFileSync(file, JSON.stringify({ resources: { limits: { memory: '512Mi' } }, nodeSelector: null, logLevel: 'debug' }));
    const ds = find(render(['-f', file]), 'DaemonSet');
    const spec = ds.spec.template.spec;
    expect(spec.containers[0].resources).toEqual({ limits: { memory: '512Mi' }, requests: { cpu: '50m', memory: '96Mi' } });
    expect(spec.nodeSelector).toBeUndefined();
    expect(spec.containers[0].args).toContain('--log-level=debug');
  });
});

describe('deploy/all-in-one.yaml', () => {
  it('is exactly the chart rendered with default values (regenerate: deploy/render/all-in-one.sh)', () => {
    const committed = readFileSync(path.join(repo, 'deploy/all-in-one.yaml'), 'utf8');
    const body = committed.slice(committed.indexOf('---\n'));
    const r = renderRaw(['--name', 'shunt', '--namespace', 'kube-system']);
    expect(r.status).toBe(0);
    expect(body).toBe(r.stdout);
  });
});

describe('NOTES.txt', () => {
  it('tells the user how to see the chosen backend and how to uninstall', () => {
    const r = renderRaw(['--notes', '--namespace', 'mesh-system']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('kubectl -n mesh-system rollout status daemonset/shunt');
    expect(r.stdout).toContain('shunt doctor');
    expect(r.stdout).toContain('shunt cleanup');
  });
});

// A template mistake the values schema cannot see (a hard-coded value, a typo in a template): the
// rendered objects are checked against the Kubernetes schema's enums, formats and ranges, and against
// the selector rule the API server enforces. One test per mistake class.
describe('the Kubernetes validator catches real mistakes in rendered objects', () => {
  const broken = (edit: (ds: Any) => void): string[] => {
    const objects = render();
    edit(find(objects, 'DaemonSet'));
    return k8sProblems(objects).flatMap((r) => r.problems);
  };
  const agentOf = (ds: Any) => ds.spec.template.spec.containers.find((c: Any) => c.name === 'agent');

  it('positive control: the default rendering has no problem at all', () => {
    expect(broken(() => undefined)).toEqual([]);
  });

  it('an enum value outside the schema (imagePullPolicy: Sometimes)', () => {
    expect(broken((ds) => (agentOf(ds).imagePullPolicy = 'Sometimes'))).toEqual([
      expect.stringMatching(/^DaemonSet\/shunt: spec\.template\.spec\.containers\.0\.imagePullPolicy must be equal to one of the allowed values \(got "Sometimes"\)$/),
    ]);
  });

  it('a malformed format (memory: lots is not a resource quantity)', () => {
    expect(broken((ds) => (agentOf(ds).resources.limits.memory = 'lots'))).toEqual([
      expect.stringMatching(/resources\.limits\.memory must match format "quantity" \(got "lots"\)$/),
    ]);
  });

  it('a number out of range (containerPort 99999)', () => {
    expect(broken((ds) => (agentOf(ds).ports[0].containerPort = 99999))).toEqual([expect.stringMatching(/ports\[0\]\.containerPort: 99999 is not a port \(1\.\.65535\)$/)]);
  });

  it('a selector that does not match the template labels', () => {
    expect(broken((ds) => (ds.spec.template.metadata.labels['app.kubernetes.io/name'] = 'other'))).toEqual([
      expect.stringMatching(/spec\.selector\.matchLabels app\.kubernetes\.io\/name=shunt does not match the template's labels \(app\.kubernetes\.io\/name=other\)/),
    ]);
  });
});

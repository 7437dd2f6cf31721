// The `shunt` command line: one commander program, each command's work in src/commands/.
// Commands load their modules lazily so `--help` never touches the kernel or the addon.
import { Command, InvalidArgumentError, Option } from 'commander';

export const VERSION = '0.1.0';
const MODES = ['auto', 'sockops', 'tc', 'iptables'];
const PROFILES = ['istio-sidecar', 'istio-ambient'];
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** Where command output goes; tests pass their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
}
function nonNegativeInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
}

/** Options shared by commands that look at this node's kernel state. */
function nodeStateOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--bpffs-path <dir>', 'bpffs mount; shunt pins under <dir>/shunt').env('SHUNT_BPFFS_PATH'))
    .addOption(new Option('--cgroup-path <dir>', 'cgroup v2 directory the cgroup programs attach to (default: the cgroup v2 mount)').env('SHUNT_CGROUP_PATH'))
    .addOption(new Option('--cgroup-search <dir>', 'find the cgroup v2 mount under this directory (the chart mounts the host cgroup root there)').env('SHUNT_CGROUP_SEARCH'))
    .addOption(new Option('--state-dir <dir>', 'node-local records of what shunt installed (iptables pods), kept across agent restarts (default /run/shunt)').env('SHUNT_STATE_DIR'))
    .addOption(new Option('--netns-prefix <prefix>', 'look only at named netns (/var/run/netns) starting with this; for tests sharing a machine').hideHelp());
}

export function buildProgram(io: Io = processIo): Command {
  const program = new Command('shunt')
    .description('Node agent that steers service-mesh pod traffic to the proxy through eBPF (sockops, tc) or iptables')
    .version(VERSION)
    .showHelpAfterError()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  nodeStateOptions(
    program
      .command('agent')
      .description('run the node agent: probe the node, pick the backend, watch pods, keep their redirect right')
      // Environment variables and the config file are read by @shunt/core's loadConfig
      // (SHUNT_MODE, SHUNT_PROFILE, NODE_NAME, SHUNT_PODS_FILE, KUBECONFIG, …), so no .env() here.
      .option('--config <file>', 'config file (YAML or JSON, same keys as the flags in camelCase); flags and env win over it')
      .option('--node-name <name>', 'this node (env NODE_NAME; the chart sets it from the downward API)')
      .addOption(new Option('--redirect-mode <mode>', 'backend, or auto (env SHUNT_MODE; default auto)').choices(MODES))
      .addOption(new Option('--profile <profile>', 'mesh profile (env SHUNT_PROFILE; default istio-sidecar)').choices(PROFILES))
      .option('--pods-file <file>', 'standalone mode: watch pods from this YAML/JSON file instead of the Kubernetes API')
      .option('--kubeconfig <file>', 'watch the Kubernetes API with this kubeconfig')
      .option('--in-cluster', 'watch the Kubernetes API with the pod\'s service account (default inside a pod)')
      .option('--metrics-address <host:port>', 'address of /metrics, /healthz, /readyz (default 0.0.0.0:9464)')
      .addOption(new Option('--log-level <level>', 'log level (default info)').choices(LEVELS))
      .addOption(new Option('--resync-seconds <n>', 'compare the kernel with the desired state this often and repair drift (default 60)').argParser(positiveInt('--resync-seconds')))
      .option(
        '--splice-ports <auto|none|all|list>',
        'sockops: which connections are spliced (sk_msg straight to the peer socket, behind a guard that bounds the peer\'s queue and falls back to TCP, one receive queue per socket): ' +
          '"auto" (default; env SHUNT_SPLICE_PORTS) every captured connection where the guard can load (CAP_PERFMON, BTF), none elsewhere (shunt doctor says which); ' +
          '"all" the same but refuses to start without the guard; a port list, e.g. 8080,9090, only those original destination ports; "none" nothing',
      )
      .option('--zds-socket <path>', 'profile istio-ambient: the ZDS unix socket served for ztunnel (env SHUNT_ZDS_SOCKET; default /var/run/ztunnel/ztunnel.sock)')
      .option(
        '--max-pods <n>',
        'pods the node\'s sockops maps hold; every map size derives from it (env SHUNT_MAX_PODS; default 1024). ' +
          'A pod beyond it fails with a reason naming this setting. Pinned maps keep their size until a cleanup',
      )
      .option('--cleanup-on-exit', 'remove everything this agent installed when it stops (uninstall); default: leave redirect in place', false)
      // tc (ambient): pod netns are prepared (links attached idle) when they appear; released after this if no ambient pod claims them. 0: off.
      .addOption(new Option('--netns-prepare-grace-ms <ms>', 'tc backend: release a netns prepared ahead of enroll after this if no ambient pod claimed it (default 30000; 0 turns preparing off)').argParser(nonNegativeInt('--netns-prepare-grace-ms'))),
  ).action(async (opts) => {
    const { agentCommand } = await import('./commands/agent');
    process.exitCode = await agentCommand(opts, io);
  });

  nodeStateOptions(
    program
      .command('doctor')
      .description("print this node's capabilities, the backend redirectMode=auto would choose, and why the others were not chosen")
      .addOption(new Option('--profile <profile>', 'mesh profile').choices(PROFILES).default('istio-sidecar').env('SHUNT_PROFILE'))
      .addOption(new Option('--redirect-mode <mode>', 'check this mode instead of auto').choices(MODES).default('auto'))
      .option('--json', 'print the report as JSON', false),
  ).action(async (opts) => {
    const { doctorCommand } = await import('./commands/doctor');
    process.exitCode = await doctorCommand(opts, io);
  });

  nodeStateOptions(
    program
      .command('status')
      .description('enrolled pods and kernel counters, read back from the kernel (not from a running agent)')
      .addOption(new Option('--backend <name>', 'only this backend').choices(['sockops', 'tc', 'iptables']))
      .option('--json', 'print as JSON', false),
  ).action(async (opts) => {
    const { statusCommand } = await import('./commands/status');
    process.exitCode = await statusCommand(opts, io);
  });

  nodeStateOptions(
    program
      .command('cleanup')
      .description('remove everything shunt installed on this node: every backend\'s programs, maps, links and rules, and the pins under <bpffs>/shunt')
      .option('--json', 'print what was removed as JSON', false),
  ).action(async (opts) => {
    const { cleanupCommand } = await import('./commands/cleanup');
    process.exitCode = await cleanupCommand(opts, io);
  });

  return program;
}

// The `shunt-lab` command line: shunt's demo and benchmark on a simulated node (the testbed).
// Its own package so the agent (and its image) never carries the test harness; commands load
// lazily so `--help` never touches the kernel.
import { Command, InvalidArgumentError, Option } from 'commander';
import { processIo, type Io } from '@shunt/agent';

const MODES = ['auto', 'sockops', 'tc', 'iptables'];
const PROFILES = ['istio-sidecar', 'istio-ambient'];

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
}

export function buildLabProgram(io: Io = processIo): Command {
  const program = new Command('shunt-lab')
    .description("shunt's demo and benchmark: the real agent on a simulated node (network namespaces, HAProxy sidecars)")
    .showHelpAfterError()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  program
    .command('demo')
    .description('run the real agent with a pods file on a simulated node (network namespaces, HAProxy sidecars) and show the path traffic takes')
    .addOption(new Option('--redirect-mode <mode>', 'backend the agent runs (default: every backend this node can run)').choices(MODES))
    .addOption(new Option('--requests <n>', 'requests per path').argParser(positiveInt('--requests')).default(20))
    .addOption(new Option('--profile <name>', 'istio-sidecar: sidecar pods; istio-ambient: ambient pods with the ztunnel stand-in (tc, iptables)').choices(PROFILES).default('istio-sidecar'))
    .option('--json', 'print the results as JSON', false)
    .action(async (opts) => {
      const { demoCommand } = await import('./commands/demo');
      process.exitCode = await demoCommand(opts, io);
    });

  program
    .command('bench')
    .description('benchmark every available path (direct, iptables, sockops…) on the simulated node: latency, throughput, connection rate')
    .option('--modes <list>', 'comma-separated modes (default: every available one)')
    .addOption(new Option('--profile <name>', 'istio-sidecar: sidecar pods; istio-ambient: ambient pods with a ztunnel stand-in (direct / tc / iptables)').choices(PROFILES).default('istio-sidecar'))
    .addOption(new Option('--rounds <n>', 'A-B-A-B rounds').argParser(positiveInt('--rounds')))
    .addOption(new Option('--seconds <n>', 'seconds per measurement').argParser(positiveInt('--seconds')))
    .option('--out-dir <dir>', 'where JSON, markdown and SVG results go')
    .option('--json', 'print the report as JSON', false)
    .addOption(new Option('--only <what>', 'conns: only the connection-rate measurement (wrk, CPU/conn), for quick A/B runs').choices(['conns']))
    .option('--proxy-access-log', "sidecar profile: HAProxy logs every connection (default off, as in Istio's default profile)", false)
    .option('--perf-dir <dir>', 'perf record -a -g (whole machine, with cgroups) over each wrk window, files <mode>-r<round>.data in this directory')
    .action(async (opts) => {
      const { benchCommand } = await import('./commands/bench');
      process.exitCode = await benchCommand(opts, io);
    });

  return program;
}

#!/usr/bin/env node
// Enroll time per pod: creates N throwaway netns (shunt-ipt-bench-<run>-<i>), enrolls a sidecar
// pod in each with the built backend, and prints median/p90/p99/max of enroll, re-enroll (no-op)
// and unenroll. Not a test: numbers go in the issue note. Needs `npm run build` in this package.
//
//   node packages/backend-iptables/scripts/enroll-time.js [--pods 200] [--mode REDIRECT|TPROXY]
//        [--variant legacy|nft] [--dual-stack] [--no-records]
// Records go to a throwaway /run/shunt-ipt-bench-<run> (tmpfs, like the default /run/shunt/iptables),
// never to the node's own state directory.
'use strict';
const { randomBytes } = require('node:crypto');
const { mkdtempSync, readFileSync, rmSync } = require('node:fs');
const childProcess = require('node:child_process');

// Load-independent cost, next to wall time (the node may be busy): commands spawned (every
// nsenter+iptables/ip run goes through execFile) and CPU time of this process plus its children.
let spawns = 0;
const execFile = childProcess.execFile;
childProcess.execFile = function countedExecFile(...args) {
  spawns++;
  return execFile.apply(this, args);
};
const TICK_MS = 1000 / 100; // USER_HZ
function cpuMs() {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  // utime stime cutime cstime are fields 14-17 (1-based), i.e. 11-14 after the "(comm) " split
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK_MS;
}
// SHUNT_IPT_DIST points at another build of this package (A/B comparisons of two versions).
const { IptablesBackend } = require(process.env.SHUNT_IPT_DIST || '../dist');
const { createNetns, deleteNetns, Netlink } = require('@shunt/netlink');
const { probeNode } = require('@shunt/core');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
}

const PODS = Number(arg('pods', 200));
const MODE = String(arg('mode', 'REDIRECT'));
const VARIANT = String(arg('variant', 'nft'));
const DUAL = arg('dual-stack', false) === true;
const RECORDS = arg('no-records', false) !== true;
const LOAD0 = require('node:os').loadavg()[0];
const RUN = randomBytes(3).toString('hex');
if (!Number.isInteger(PODS) || PODS < 1 || PODS > 1000) throw new Error(`--pods ${PODS}: want 1..1000`);

const created = [];
const stateDir = RECORDS ? mkdtempSync(`/run/shunt-ipt-bench-${RUN}-`) : null;
let cleaning;
async function cleanup() {
  cleaning ??= (async () => {
    for (const n of created.splice(0)) await deleteNetns(n, { ignoreMissing: true }).catch((e) => console.error(e.message));
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  })();
  return cleaning;
}
process.on('SIGINT', () => cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => cleanup().then(() => process.exit(143)));

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
function summary(label, phase) {
  const s = [...phase.ms].sort((a, b) => a - b);
  const f = (x) => x.toFixed(1).padStart(7);
  const per = (x) => (x / s.length).toFixed(1).padStart(5);
  console.log(
    `${label.padEnd(22)} n=${s.length}  median ${f(pct(s, 50))} ms  p90 ${f(pct(s, 90))} ms  p99 ${f(pct(s, 99))} ms  max ${f(s[s.length - 1])} ms` +
      `  | per pod: ${per(phase.spawns)} commands, ${per(phase.cpu)} ms CPU`,
  );
}

/** Runs fn for every pod, timing each, and counts commands and CPU over the whole phase. */
async function phase(pods, fn) {
  const out = { ms: [], spawns: spawns, cpu: cpuMs() };
  for (const p of pods) out.ms.push(await time(() => fn(p)));
  out.spawns = spawns - out.spawns;
  out.cpu = cpuMs() - out.cpu;
  return out;
}

function pod(i, netnsPath) {
  return {
    uid: `bench-${RUN}-${i}`,
    namespace: 'bench',
    name: `pod-${i}`,
    profile: 'istio-sidecar',
    membership: 'sidecar',
    hostNetwork: false,
    ips: { v4: [`198.18.${i >> 8}.${i & 255}`], v6: DUAL ? [`2001:db8:1::${i.toString(16)}`] : [] },
    netnsPath,
    interceptionMode: MODE,
    proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
    traffic: {
      inbound: { include: '*', exclude: [15008, 15020, 15021, 15090] },
      outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] },
    },
  };
}

async function time(fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function main() {
  // The core's real node probe decides what works; --variant only picks among working variants.
  const caps = await probeNode({ iptablesScratch: true });
  const backend = new IptablesBackend({ variant: VARIANT, stateDir });
  await backend.start({ nodeName: 'bench', profile: 'istio-sidecar', caps, cgroupRoot: '/', bpffsRoot: '/', log: console });

  const pods = [];
  for (let i = 0; i < PODS; i++) {
    const name = `shunt-ipt-bench-${RUN}-${i}`;
    const p = await createNetns(name);
    created.push(name);
    await Netlink.at(p).setUp('lo');
    pods.push(pod(i, p));
  }
  const enroll = await phase(pods, (p) => backend.enroll(p));
  const observeMs = await time(async () => {
    const st = await backend.observe();
    const drifted = st.pods.filter((x) => x.fingerprint !== backend.fingerprint(pods.find((p) => p.uid === x.uid))).length;
    if (st.pods.length !== PODS || drifted) throw new Error(`observe: ${st.pods.length} pods, ${drifted} drifted`);
  });
  const reenroll = await phase(pods, (p) => backend.enroll(p));
  const unenroll = await phase(pods, (p) => backend.unenroll(p));

  console.log(`iptables-${VARIANT}, ${MODE}${DUAL ? ', dual-stack' : ', IPv4'}, ${PODS} pods (one netns each), sequential, records ${RECORDS ? 'on' : 'off'}, kernel ${caps.kernelRelease}, loadavg ${LOAD0.toFixed(2)} → ${require('node:os').loadavg()[0].toFixed(2)}`);
  summary('enroll (fresh)', enroll);
  summary('enroll again (no-op)', reenroll);
  summary('unenroll', unenroll);
  console.log(`observe (all ${PODS} pods)  ${observeMs.toFixed(0)} ms`);
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(cleanup);

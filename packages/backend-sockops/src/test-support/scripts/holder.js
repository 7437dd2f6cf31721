// Stand-in for the agent process: holds a SockopsBackend (built dist, like the real agent),
// adopts whatever is pinned, enrolls the given pods, prints {"event":"ready"} and waits.
// SIGTERM: stop({cleanup:false}) and exit, as an agent upgrade would. SIGKILL: nothing at all.
// argv: config.json = {cgroupRoot, bpffsRoot, splice, pods: MeshPod[]}
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { SockopsBackend } = require(path.resolve(__dirname, '../../../dist/index.js'));

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = { debug() {}, info() {}, warn() {}, error: (o, m) => process.stderr.write(`${m} ${JSON.stringify(o)}\n`) };
const backend = new SockopsBackend({ splice: cfg.splice });
(async () => {
  await backend.start({ nodeName: 'holder', profile: 'istio-sidecar', caps: {}, cgroupRoot: cfg.cgroupRoot, bpffsRoot: cfg.bpffsRoot, log });
  for (const pod of cfg.pods) await backend.enroll(pod);
  const st = await backend.observe();
  process.stdout.write(JSON.stringify({ event: 'ready', pods: st.pods.length, nodeReady: st.nodeReady }) + '\n');
})().catch((e) => {
  process.stderr.write(`holder: ${e.stack || e}\n`);
  process.exit(1);
});
process.on('SIGTERM', () => {
  backend.stop({ cleanup: false }).finally(() => process.exit(0));
});
setInterval(() => undefined, 1 << 30);

// Manual measurement (not a test): connections/s and bulk throughput through the stand-in's
// outbound → HBONE → app path, with a minimal in-test REDIRECT + connmark return path.
// Run: cd packages/testbed && npx jest --testPathIgnorePatterns=/node_modules/ src/ztunnel/perf.manual.test.ts
import * as path from 'node:path';
import { Testbed } from '../testbed';
import { ztunnelHarness, type ZtunnelHarness } from './harness';

test('stand-in throughput', async () => {
  const tb = await Testbed.create({ pods: [{ name: 'a', mesh: 'ambient' }, { name: 'b', mesh: 'ambient' }] });
  let h: ZtunnelHarness | undefined;
  try {
    h = await ztunnelHarness({ socketPath: path.join(tb.stateDir, 'zt.sock'), logPath: path.join(tb.stateDir, 'zt.log') });
    for (const p of ['a', 'b']) await h.add({ uid: tb.pod(p).uid, name: p, namespace: 'default', netnsPath: tb.pod(p).netnsPath });
    await tb.startEchoServer('b', { port: 9000 });
    await tb.run('a', ['iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '9000', '-m', 'mark', '!', '--mark', '1337', '-j', 'REDIRECT', '--to-ports', '15001']);
    for (const argv of [
      ['iptables', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '-m', 'mark', '--mark', '1337', '-j', 'CONNMARK', '--set-mark', '0x111'],
      ['iptables', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '-m', 'connmark', '--mark', '0x111', '-m', 'mark', '!', '--mark', '1337', '-j', 'MARK', '--set-mark', '0x111'],
      ['ip', 'rule', 'add', 'fwmark', '0x111', 'lookup', '100'],
      ['ip', 'route', 'add', 'local', 'default', 'dev', 'lo', 'table', '100'],
    ])
      await tb.run('b', argv);
    const src = `const net=require('net');const host=process.argv[1];let n=0,errs=0,last='';const t0=Date.now();
      const one=()=>new Promise((res,rej)=>{const s=net.connect(9000,host,()=>s.end('x'));s.on('data',()=>{});s.on('end',res);s.on('error',rej);});
      (async()=>{const workers=[];for(let w=0;w<8;w++)workers.push((async()=>{while(Date.now()-t0<3000){try{await one();n++;}catch(e){errs++;last=e.message;}}})());await Promise.all(workers);
      console.log(JSON.stringify({conns:n,errs,last,perSec:Math.round(n/((Date.now()-t0)/1000))}));})();`;
    const r = await tb.run('a', [process.execPath, '-e', src, tb.pod('b').ipv4], { timeoutMs: 20000 });
    console.log('stand-in conns:', r.stdout.trim());
  } finally {
    await h?.stop();
    await tb.dispose();
  }
}, 120_000);

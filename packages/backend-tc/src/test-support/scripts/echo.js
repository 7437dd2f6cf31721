// Test helper run inside a pod (its netns and cgroup): `echo.js listen <address> <port> [mark]`
// echoes every connection (with mark: a listener with ztunnel's options, SO_MARK, SO_REUSEPORT,
// IP_TRANSPARENT, made by the addon); `echo.js client <address> <port> <bytes>` sends bytes,
// reads them back and prints {"echoed": n} (or {"error": ...}); `echo.js connect <address> <port>`
// only opens the connection and prints {"connected": true} (or {"error": ...}). Bounded by a 15 s timer.
'use strict';
const net = require('node:net');
const path = require('node:path');
const [mode, address, portText, extra] = process.argv.slice(2);
const port = Number(portText);
const isClient = mode === 'client' || mode === 'connect';
setTimeout(() => process.exit(isClient ? 3 : 0), isClient ? 15000 : 60000).unref();
if (mode === 'listen') {
  const server = net.createServer((s) => s.pipe(s));
  if (extra) {
    const { netnsListen } = require(path.join(__dirname, '..', '..', '..', '..', 'libbpf', 'dist', 'index.js'));
    const fd = netnsListen({ netns: '/proc/self/ns/net', family: net.isIPv6(address) ? 6 : 4, mark: Number(extra), reuseAddr: true, reusePort: true, transparent: true, bind: { address, port } });
    server.listen({ fd }, () => console.log('listening'));
  } else server.listen(port, address, () => console.log('listening'));
  setInterval(() => undefined, 1000);
} else if (mode === 'connect') {
  const s = net.connect(port, address);
  s.on('connect', () => {
    console.log(JSON.stringify({ connected: true }));
    s.destroy();
    process.exit(0);
  });
  s.on('error', (e) => {
    console.log(JSON.stringify({ error: e.message }));
    process.exit(2);
  });
} else {
  const bytes = Number(extra);
  const s = net.connect(port, address);
  let got = 0;
  s.on('connect', () => s.write(Buffer.alloc(bytes, 7)));
  s.on('data', (d) => {
    got += d.length;
    if (got >= bytes) {
      console.log(JSON.stringify({ echoed: got }));
      s.destroy();
      process.exit(0);
    }
  });
  s.on('error', (e) => {
    console.log(JSON.stringify({ error: e.message }));
    process.exit(2);
  });
}

// Child process for the cgroup test: exercises every hook the selftest programs count
// (TCP connect over v4 and v6, UDP send/receive over v4 and v6, binds, a getsockopt),
// then prints what it did as JSON.
const net = require('node:net');
const dgram = require('node:dgram');

function tcpRoundTrip(host) {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => s.end('pong'));
    server.on('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address();
      const c = net.connect(port, host);
      c.on('error', reject);
      let got = '';
      c.on('data', (d) => (got += d));
      c.on('end', () => server.close(() => resolve(got)));
    });
  });
}

function udpRoundTrip(type, host) {
  return new Promise((resolve, reject) => {
    const rx = dgram.createSocket(type);
    const tx = dgram.createSocket(type);
    rx.on('error', reject);
    rx.on('message', (msg) => {
      rx.close();
      tx.close();
      resolve(msg.toString());
    });
    rx.bind(0, host, () => {
      // getRecvBufferSize() is a getsockopt(SO_RCVBUF) on the socket.
      const rcvbuf = rx.getRecvBufferSize();
      if (!(rcvbuf > 0)) reject(new Error('getsockopt returned nothing'));
      tx.send('ping', rx.address().port, host, (err) => err && reject(err));
    });
  });
}

(async () => {
  const result = {
    tcp4: await tcpRoundTrip('127.0.0.1'),
    tcp6: await tcpRoundTrip('::1'),
    udp4: await udpRoundTrip('udp4', '127.0.0.1'),
    udp6: await udpRoundTrip('udp6', '::1'),
  };
  console.log(JSON.stringify(result));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});

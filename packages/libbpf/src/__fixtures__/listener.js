// Stand-in for the proxy's inbound listener, run in the pod netns as its own process (so
// the test has to borrow the socket with pidfd_getfd). Each connection is told the
// addresses the listener sees for it: getsockname() is the destination the client used.
// Prints one JSON line when listening; exits when stdin closes (the test went away).
const net = require('node:net');

const port = Number(process.argv[2]);
const server = net.createServer((sock) => {
  sock.on('error', () => {});
  sock.end(
    JSON.stringify({
      local: { address: sock.localAddress, port: sock.localPort },
      remote: { address: sock.remoteAddress, port: sock.remotePort },
    }),
  );
});
server.listen({ port, host: '0.0.0.0' }, () => {
  console.log(JSON.stringify({ pid: process.pid, fd: server._handle.fd, port: server.address().port }));
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

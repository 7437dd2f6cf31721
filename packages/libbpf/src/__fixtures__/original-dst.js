// Runs inside a test netns with listeners on port 15001 (v4 and v6). For each argument
// "<family>,<host>,<port>" it connects there and, on the accepting side, reads the
// original destination with originalDst(); the test's nat rules decide what that is.
const net = require('node:net');
const path = require('node:path');
const lib = require(path.join(__dirname, '..', 'index.ts'));

function accepted(server) {
  return new Promise((resolve) => server.once('connection', resolve));
}

async function probe(server, host, port, family) {
  const conn = accepted(server);
  const client = net.connect(port, host);
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const sock = await conn;
  let result;
  try {
    result = { ok: lib.originalDst(sock._handle.fd, family) };
  } catch (err) {
    result = { error: { code: err.code, op: err.op, name: err.name } };
  }
  client.destroy();
  sock.destroy();
  return result;
}

(async () => {
  const server4 = net.createServer();
  const server6 = net.createServer();
  await new Promise((r) => server4.listen(15001, '0.0.0.0', r));
  await new Promise((r) => server6.listen({ port: 15001, host: '::', ipv6Only: true }, r));
  const out = [];
  for (const arg of process.argv.slice(2)) {
    const [family, host, port] = arg.split(',');
    out.push(await probe(family === '6' ? server6 : server4, host, Number(port), Number(family)));
  }
  server4.close();
  server6.close();
  console.log(JSON.stringify(out));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});

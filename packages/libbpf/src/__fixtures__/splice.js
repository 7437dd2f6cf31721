// Child process for the sk_msg test, run inside a test netns and cgroup: opens a TCP
// connection over 127.0.0.1:<port>, streams data both ways once established, and reports
// loopback packet counters around the transfer (read with `ip -s -json`, which runs in
// this process's netns) plus what was received.
const net = require('node:net');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');

const port = Number(process.argv[2]);
const total = Number(process.argv[3] ?? 1 << 20);

function loStats() {
  const [lo] = JSON.parse(execFileSync('ip', ['-s', '-json', 'link', 'show', 'lo'], { encoding: 'utf8' }));
  return { rxPackets: lo.stats64.rx.packets, txPackets: lo.stats64.tx.packets };
}

function digest(chunks) {
  return crypto.createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
}

const payload = crypto.randomBytes(total);

// Echo as data arrives; the connection is only closed after the "after" sample, so the
// FIN/ACK exchange (which always crosses loopback) is not counted.
const server = net.createServer((conn) => {
  conn.on('data', (d) => conn.write(d));
  conn.on('error', () => {});
});

server.listen(port, '127.0.0.1', () => {
  const client = net.connect(port, '127.0.0.1', () => {
    // Give the handshake's last ACK time to be counted before the "before" sample.
    setTimeout(() => {
      const before = loStats();
      const echoed = [];
      let echoedBytes = 0;
      client.on('data', (d) => {
        echoed.push(d);
        echoedBytes += d.length;
        if (echoedBytes < total) return;
        const after = loStats();
        const result = {
          clientPort: client.localPort,
          serverPort: port,
          sent: digest([payload]),
          echoed: digest(echoed),
          echoedBytes,
          before,
          after,
        };
        client.destroy();
        server.close(() => console.log(JSON.stringify(result)));
      });
      client.write(payload);
    }, 100);
  });
  client.on('error', (err) => {
    console.error(err);
    process.exit(1);
  });
});

// Sends `count` UDP datagrams to host:port (run inside a test netns), then exits.
const dgram = require('node:dgram');

const [host, portText, countText] = process.argv.slice(2);
const count = Number(countText ?? 5);
const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
let sent = 0;
function next() {
  if (sent === count) {
    sock.close();
    console.log(JSON.stringify({ sent }));
    return;
  }
  sock.send(`probe ${sent}`, Number(portText), host, (err) => {
    if (err) {
      console.error(err);
      process.exit(1);
    }
    sent++;
    setTimeout(next, 10);
  });
}
next();

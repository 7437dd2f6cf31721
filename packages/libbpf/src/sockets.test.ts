import * as fs from 'node:fs';
import * as net from 'node:net';
import { netnsListen, netnsConnect, socketName, peerName, socketInfo, fdOf, closeFd, MessageSocket, BpfError, type ReceivedMessage } from './index';
import { makeNetns, removeNetns, runId, ipIn } from './__fixtures__/env';

describe('sockets made inside a netns with ztunnel options', () => {
  const name = runId('sk');
  let nsPath: string;
  beforeAll(() => {
    nsPath = makeNetns(name);
    // a veth pair whose far end nobody answers on: SYNs to neighbours vanish
    ipIn(nsPath, ['link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1']);
    ipIn(nsPath, ['link', 'set', 'd0', 'up']);
    ipIn(nsPath, ['link', 'set', 'd1', 'up']);
    ipIn(nsPath, ['addr', 'add', '198.18.5.1/24', 'dev', 'd0']);
    ipIn(nsPath, ['addr', 'add', '2001:db8:5::1/64', 'dev', 'd0', 'nodad']);
  });
  afterAll(() => removeNetns(name));

  test('a listener carries mark, reuseport, transparent, v6only as asked, lives in the netns, and Node serves it', async () => {
    const fd = netnsListen({ netns: nsPath, family: 6, mark: 1337, reusePort: true, transparent: true, v6Only: false, bind: { address: '::', port: 15008 } });
    expect(socketInfo(fd)).toEqual({ family: 6, type: 'stream', mark: 1337, reusePort: true, transparent: true, v6Only: false, listening: true });
    // SO_REUSEPORT lets a second listener share the port (ztunnel's INPOD_PORT_REUSE).
    const fd2 = netnsListen({ netns: nsPath, family: 6, mark: 1337, reusePort: true, bind: { address: '::', port: 15008 } });
    closeFd(fd2);
    const server = net.createServer((s) => {
      s.end(JSON.stringify({ local: socketName(fdOf(s)), peer: peerName(fdOf(s)) }));
    });
    await new Promise<void>((r) => server.listen({ fd }, r));
    try {
      // The netns by an open fd, as a ZDS client gets it.
      const nsFd = fs.openSync(nsPath, 'r');
      const cfd = await netnsConnect({ netns: nsFd, family: 4, mark: 1337, to: { address: '198.18.5.1', port: 15008 } });
      fs.closeSync(nsFd);
      expect(socketInfo(cfd).mark).toBe(1337);
      const sock = new net.Socket({ fd: cfd, readable: true, writable: true });
      let body = '';
      sock.on('data', (d) => (body += d.toString()));
      await new Promise((r) => sock.on('end', r));
      sock.destroy();
      const seen = JSON.parse(body);
      // dual-stack [::] listener: the v4 client shows up v4-mapped
      expect(seen.local).toEqual({ family: 6, address: '::ffff:198.18.5.1', port: 15008 });
      expect(seen.peer.address).toBe('::ffff:198.18.5.1');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test('a transparent socket binds a non-local address; without IP_TRANSPARENT the kernel refuses', async () => {
    const fd = netnsListen({ netns: nsPath, family: 4, transparent: true, bind: { address: '198.18.99.7', port: 0 } });
    expect(socketName(fd).address).toBe('198.18.99.7');
    closeFd(fd);
    expect(() => netnsListen({ netns: nsPath, family: 4, bind: { address: '198.18.99.7', port: 0 } })).toThrow(/EADDRNOTAVAIL/);
  });

  test('connect errors are BpfErrors: refused at once, silence times out', async () => {
    await expect(netnsConnect({ netns: nsPath, family: 6, to: { address: '2001:db8:5::1', port: 9 } })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    // nobody answers ARP for 198.18.5.50 on d0
    const t0 = Date.now();
    const err = await netnsConnect({ netns: nsPath, family: 4, to: { address: '198.18.5.50', port: 80 }, timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BpfError);
    expect((err as BpfError).code).toBe('ETIMEDOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    await expect(netnsConnect({ netns: '/var/run/netns/shunt-none', family: 4, to: { address: '198.18.5.1', port: 1 } })).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('UDP in the netns through MessageSocket: datagrams with their sender', async () => {
    const sfd = netnsListen({ netns: nsPath, family: 4, protocol: 'udp', mark: 1337, reusePort: true, bind: { address: '127.0.0.1', port: 15053 } });
    const cfd = netnsListen({ netns: nsPath, family: 4, protocol: 'udp', bind: { address: '127.0.0.1', port: 0 } });
    expect(socketInfo(sfd)).toMatchObject({ type: 'dgram', mark: 1337, reusePort: true });
    const server = MessageSocket.fromFd(sfd, 'datagram');
    const client = MessageSocket.fromFd(cfd, 'datagram');
    try {
      server.on('message', (m: ReceivedMessage) => server.send(Buffer.concat([Buffer.from('re:'), m.data]), [], m.from));
      const reply = new Promise<ReceivedMessage>((r) => client.once('message', r));
      client.send(Buffer.from('q'), [], { family: 4, address: '127.0.0.1', port: 15053 });
      const m = await reply;
      expect(m.data.toString()).toBe('re:q');
      expect(m.from).toEqual({ family: 4, address: '127.0.0.1', port: 15053 });
    } finally {
      server.close();
      client.close();
    }
  });
});

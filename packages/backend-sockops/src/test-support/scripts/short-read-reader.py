# Receiver of splice-short-read.e2e.test.ts: accepts one connection per policy (argv: port
# policy[,policy...]) and, per connection, first waits WITHOUT reading until the peer's FIN is
# queued (EPOLLRDHUP), so that every byte and the FIN are in the socket before the first read.
# Then reads with the policy:
#   'rdhup': one recv per readiness event, and a short read with EPOLLRDHUP set ends the stream
#            (HAProxy 2.6's heuristic: "the peer closed and this read did not fill the buffer").
#   'drain': recv until EAGAIN per event, end of stream only when recv returns 0 (Envoy, libuv, Go).
#   'late':  as 'drain', but accept() only 2 s after the connection is queued, so everything the
#            peer sends arrives before the socket is accepted (kernel: no sk_socket, TCP-path skbs
#            stay in sk_receive_queue until the first read).
# Prints one JSON line per connection: {policy, bytes, reads, bad, rdhupFirst, inq}; bad = offset of
# the first byte != offset % 251, or null; inq = FIONREAD when EPOLLRDHUP was first seen (before any
# read), or null if the ioctl failed. Bounded in time everywhere.
import array, fcntl, json, select, socket, sys, termios, time

port, policies = int(sys.argv[1]), sys.argv[2].split(',')
BUF = 256 * 1024
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
# Room in the TCP queue for the part the guard sends over TCP, so its FIN lands before we read.
ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
ls.bind(('0.0.0.0', port))
ls.listen(8)
print(json.dumps({'event': 'ready'}), flush=True)

def check(data, offset, bad):
    if bad is not None:
        return bad
    for i, b in enumerate(data):
        if b != (offset + i) % 251:
            return offset + i
    return None

for policy in policies:
    ls.settimeout(20)
    if policy == 'late':
        select.select([ls], [], [], 20)
        time.sleep(2)
    c, _ = ls.accept()
    c.setblocking(False)
    ep = select.epoll()
    ep.register(c.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
    rdhup_first = False
    inq = None
    deadline = time.time() + 15
    while time.time() < deadline:
        ev = ep.poll(0)
        if ev and ev[0][1] & select.EPOLLRDHUP:
            rdhup_first = True
            try:
                a = array.array('i', [0])
                fcntl.ioctl(c.fileno(), termios.FIONREAD, a, True)
                inq = a[0]
            except OSError:
                inq = None
            break
        time.sleep(0.02)
    total, reads, bad, done = 0, [], None, False
    deadline = time.time() + 15
    while not done and time.time() < deadline:
        ev = ep.poll(1.0)
        if not ev:
            continue
        events = ev[0][1]
        while True:
            try:
                d = c.recv(BUF)
            except BlockingIOError:
                break
            if not d:
                done = True
                break
            bad = check(d, total, bad)
            total += len(d)
            reads.append(len(d))
            if policy == 'rdhup':
                if len(d) < BUF and events & select.EPOLLRDHUP:
                    done = True
                break
    c.close()
    ep.close()
    print(json.dumps({'policy': policy, 'bytes': total, 'reads': reads, 'bad': bad, 'rdhupFirst': rdhup_first, 'inq': inq}), flush=True)

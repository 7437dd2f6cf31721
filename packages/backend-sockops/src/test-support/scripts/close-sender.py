# Sender of splice-close.kernel.test.ts (the app): connects to argv host:port (connect4 redirects it
# to its proxy) and sends a byte pattern without blocking:
#   mode "fill":   until the socket stays unwritable for 300 ms (the receiver's queue is full and,
#                  with the guard, the TCP window closed; bounded: 64 MiB, 20 s),
#   mode <n>:      exactly n bytes (n = a number), then stops.
# Prints {"event":"sent","bytes":n}, then waits for "watch <ms>" on stdin and watches the socket for
# that long without sending (poll on error, hang-up and input): when EOF was first seen (the peer's
# FIN), when the first error was (SO_ERROR or recv), and which. Then one send() of 1 byte, whose
# errno is reported too. Prints {"event":"result",...}.
import errno, json, select, socket, sys, time

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=10)
s.setblocking(False)
print(json.dumps({'event': 'ready'}), flush=True)
chunk = bytes(i % 251 for i in range(64 * 1024))
sent = 0
limit = 64 << 20 if mode == 'fill' else int(mode)
deadline = time.time() + 20
stuck_since = None
while sent < limit and time.time() < deadline:
    try:
        n = s.send(chunk[: min(len(chunk), limit - sent)])
        sent += n
        stuck_since = None
    except BlockingIOError:
        if mode != 'fill':
            select.select([], [s], [], 0.05)
            continue
        now = time.time()
        stuck_since = stuck_since or now
        if now - stuck_since > 0.3:
            break
        select.select([], [s], [], 0.05)
print(json.dumps({'event': 'sent', 'bytes': sent}), flush=True)
line = sys.stdin.readline().split()
window = int(line[1]) / 1000.0 if len(line) > 1 else 3.0
t0 = time.time()
fin_ms = err_ms = None
err = None
p = select.poll()
p.register(s, select.POLLIN | select.POLLERR | select.POLLHUP | select.POLLRDHUP)
while time.time() - t0 < window and err is None:
    p.poll(20)
    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if e:
        err, err_ms = errno.errorcode.get(e, str(e)), (time.time() - t0) * 1000
        break
    try:
        d = s.recv(65536)
        if not d and fin_ms is None:
            fin_ms = (time.time() - t0) * 1000
    except BlockingIOError:
        pass
    except OSError as x:
        err, err_ms = errno.errorcode.get(x.errno, str(x.errno)), (time.time() - t0) * 1000
try:
    s.send(b'x')
    send_err = None
except BlockingIOError:
    send_err = 'EAGAIN'
except OSError as x:
    send_err = errno.errorcode.get(x.errno, str(x.errno))
print(json.dumps({'event': 'result', 'sent': sent, 'finMs': fin_ms, 'errMs': err_ms, 'err': err, 'sendErr': send_err}), flush=True)

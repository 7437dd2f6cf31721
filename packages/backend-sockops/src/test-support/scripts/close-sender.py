# Sender of splice-close.kernel.test.ts (the app): connects to argv host:port (connect4 redirects it
# to its proxy), prints {"event":"ready"} and waits for "go" on stdin (bounded: 20 s; the test sends it
# once the receiver has accepted, see below), then sends a byte pattern (i % 251) without blocking:
#   mode "fill": until the socket stays unwritable for 300 ms (the receiver's queue is full and,
#                with the guard, the TCP window closed; bounded: 64 MiB, 20 s),
#   mode <n>:    exactly n bytes, then stops.
# Prints {"event":"sent","bytes":n}, then watches the socket without sending (poll on error, hang-up
# and input; bounded by argv window in ms): the CLOCK_MONOTONIC time it first saw EOF (the peer's
# FIN) and its first error (SO_ERROR or recv) and which. It stops at the first error, or 1.5 s after
# EOF with no error. Then one send() of 1 byte, whose errno is reported too. Prints
# {"event":"result",...}; times in ms of CLOCK_MONOTONIC (comparable with close-receiver.py's).
# Why "go": bytes the guard sends on the TCP path before the receiver's accept() never reach the
# sk_skb verdict (the kernel's sk_psock_verdict_data_ready does nothing while the socket has no
# struct socket), so they sit on its sk_receive_queue, and a close with them unread is reset by
# TCP itself (tcp_close), not by the agent: a different case from the one the test checks.
import errno, json, select, socket, sys, time

host, port, mode, window = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) / 1000.0
s = socket.create_connection((host, port), timeout=10)
s.setblocking(False)
print(json.dumps({'event': 'ready'}), flush=True)
if not select.select([sys.stdin], [], [], 20)[0] or sys.stdin.readline().strip() != 'go':
    sys.exit('no "go" on stdin within 20 s')
# 64 KiB writes of the pattern from any offset: a window into a buffer one period longer.
chunk = bytes(i % 251 for i in range(64 * 1024 + 251))
sent = 0
limit = 64 << 20 if mode == 'fill' else int(mode)
deadline = time.time() + 20
stuck_since = None
while sent < limit and time.time() < deadline:
    try:
        n = s.send(chunk[sent % 251 :][: min(64 * 1024, limit - sent)])
        sent += n
        stuck_since = None
    except BlockingIOError:
        now = time.time()
        stuck_since = stuck_since or now
        if mode == 'fill' and now - stuck_since > 0.3:
            break
        select.select([], [s], [], 0.05)
print(json.dumps({'event': 'sent', 'bytes': sent}), flush=True)
ms = lambda: time.monotonic() * 1000
t0 = time.monotonic()
fin_at = err_at = None
err = None
p = select.poll()
p.register(s, select.POLLIN | select.POLLERR | select.POLLHUP | select.POLLRDHUP)
while time.monotonic() - t0 < window and err is None:
    if fin_at is not None and ms() - fin_at > 1500:
        break
    p.poll(20)
    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if e:
        err, err_at = errno.errorcode.get(e, str(e)), ms()
        break
    try:
        d = s.recv(65536)
        if not d and fin_at is None:
            fin_at = ms()
    except BlockingIOError:
        pass
    except OSError as x:
        err, err_at = errno.errorcode.get(x.errno, str(x.errno)), ms()
try:
    s.send(b'x')
    send_err = None
except BlockingIOError:
    send_err = 'EAGAIN'
except OSError as x:
    send_err = errno.errorcode.get(x.errno, str(x.errno))
print(json.dumps({'event': 'result', 'sent': sent, 'finAt': fin_at, 'errAt': err_at, 'err': err, 'sendErr': send_err}), flush=True)
s.close()

# Receiver of splice-close.kernel.test.ts, run as the proxy uid so its sockets are the proxy's half
# of a spliced app<->proxy connection: listens on 127.0.0.1:<out> (where connect4 sends the app's
# connect) and 0.0.0.0:<in> (the inbound listener the backend's enroll looks up), accepts one
# connection on <out> (127.0.0.1 or ::1, whichever the app's family was redirected to; with a third
# argument "late" only after "accept" on stdin, bounded: 20 s) and reads nothing until told on stdin:
#   "close"      close it as it is (with whatever the peer sent still unread),
#   "drain <n>"  read exactly n bytes (bounded: 15 s) and check them (byte i == i % 251), then close.
# Prints {"event":"closed","read":n,"bad":offset of the first wrong byte or null,"inq":FIONREAD before
# close,"at":CLOCK_MONOTONIC ms of the close}. One connection per run.
import array, fcntl, json, select, socket, sys, termios, time

out_port, in_port = int(sys.argv[1]), int(sys.argv[2])
listeners = []
for fam, addr in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, out_port))
    ls.listen(8)
    listeners.append(ls)
inb = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
inb.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
inb.bind(('0.0.0.0', in_port))
inb.listen(8)
print(json.dumps({'event': 'ready'}), flush=True)
if len(sys.argv) > 3 and sys.argv[3] == 'late':
    if not select.select([sys.stdin], [], [], 20)[0] or sys.stdin.readline().strip() != 'accept':
        sys.exit('no "accept" on stdin within 20 s')
ready, _, _ = select.select(listeners, [], [], 20)
if not ready:
    sys.exit('no connection within 20 s')
c, _ = ready[0].accept()
print(json.dumps({'event': 'accepted'}), flush=True)
line = sys.stdin.readline().split()
read = 0
bad = None
if line and line[0] == 'drain':
    want = int(line[1])
    c.settimeout(0.5)
    deadline = time.time() + 15
    while read < want and time.time() < deadline:
        try:
            d = c.recv(min(1 << 20, want - read))
        except socket.timeout:
            continue
        if not d:
            break
        if bad is None:
            for i, b in enumerate(d):
                if b != (read + i) % 251:
                    bad = read + i
                    break
        read += len(d)
a = array.array('i', [0])
try:
    fcntl.ioctl(c.fileno(), termios.FIONREAD, a, True)
    inq = a[0]
except OSError:
    inq = None
c.close()
at = time.monotonic() * 1000
print(json.dumps({'event': 'closed', 'read': read, 'bad': bad, 'inq': inq, 'at': at}), flush=True)
time.sleep(30)
